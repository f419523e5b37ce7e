"""YAMNet rebuilt in torch: the published log-mel frontend + MobileNet-v1, loadable from yamnet.tflite.

Follows tensorflow/models research/audioset/yamnet (params.py, features.py, yamnet.py):
16 kHz waveform -> 25 ms periodic-Hann frames every 10 ms -> |rfft| with fft length 512 ->
64 mel bands 125-7500 Hz (tf.signal.linear_to_mel_weight_matrix, HTK mel) -> log(mel + 0.001) ->
96-frame patches every 48 frames (0.96 s patches, 0.48 s hop) -> MobileNet-v1 (TF "SAME" padding,
batch-norm folded, ReLU) -> global average pool = 1024-d embedding -> dense 521 -> sigmoid.
The waveform is zero-padded at the end exactly as the published `pad_waveform` (and the TFLite
graph) does, so a clip gives the same number of frames here as in yamnet.tflite.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
FFT_LENGTH = 512
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s
PATCH_HOP_FRAMES = 48  # 0.48 s
MIN_SAMPLES = 15600  # one patch: (96 - 1) * 160 + 400
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * HOP_SAMPLES  # 7680
EMBEDDING_DIM = 1024
NUM_CLASSES = 521

# (kind, stride, output channels) of layers 1..14, yamnet.py _YAMNET_LAYER_DEFS
LAYERS = [("conv", 2, 32), ("sep", 1, 64), ("sep", 2, 128), ("sep", 1, 128), ("sep", 2, 256),
          ("sep", 1, 256), ("sep", 2, 512), ("sep", 1, 512), ("sep", 1, 512), ("sep", 1, 512),
          ("sep", 1, 512), ("sep", 1, 512), ("sep", 2, 1024), ("sep", 1, 1024)]


def periodic_hann(length: int = WINDOW_SAMPLES) -> np.ndarray:
    """0.5 - 0.5 cos(2 pi n / N), n < N: the periodic window of the published frontend."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


def mel_matrix(num_bins: int = FFT_LENGTH // 2 + 1) -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500) as float32 [257, 64]."""

    def hz_to_mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    freqs = np.linspace(0.0, SAMPLE_RATE / 2.0, num_bins)[1:]  # the DC bin gets no weight
    bins_mel = hz_to_mel(freqs)[:, None]
    edges = np.linspace(hz_to_mel(MEL_MIN_HZ), hz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    lower_slope = (bins_mel - lower) / (center - lower)
    upper_slope = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)


def padded_length(num_samples: int) -> int:
    """Length after the published pad_waveform: at least one patch, then whole patch hops."""
    extra = max(num_samples, MIN_SAMPLES) - MIN_SAMPLES
    hops = math.ceil(extra / PATCH_HOP_SAMPLES)
    return MIN_SAMPLES + hops * PATCH_HOP_SAMPLES


def num_patches(num_samples: int) -> int:
    """How many 0.96 s patches (frames of YAMNet's output) a clip of this length gives."""
    return 1 + (padded_length(num_samples) - MIN_SAMPLES) // PATCH_HOP_SAMPLES


class LogMelFrontend(nn.Module):
    """Waveform [batch, samples] -> log-mel [batch, frames, 64] and patches [batch, n, 96, 64].

    `tflite_mel=True` reproduces what yamnet.tflite computes instead of the published float
    frontend: its mel product is a dynamic-range INT8 FULLY_CONNECTED, which quantizes each
    frame's magnitude spectrum to 8 bits (scale = frame max / 255) before the product, so bins
    more than ~54 dB below the frame's peak become exactly 0 and their log-mel hits log(0.001).
    The backbone is unaffected; this only matters for parity with (and training for) that file.
    """

    def __init__(self, tflite_mel: bool = False) -> None:
        super().__init__()
        self.tflite_mel = tflite_mel
        self.register_buffer("window", torch.from_numpy(periodic_hann()))
        self.register_buffer("mel", torch.from_numpy(mel_matrix()))
        self.register_buffer("mel_bias", torch.full((MEL_BANDS,), LOG_OFFSET))

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        length = padded_length(waveform.shape[-1])
        waveform = F.pad(waveform, (0, length - waveform.shape[-1]))
        frames = waveform.unfold(-1, WINDOW_SAMPLES, HOP_SAMPLES) * self.window
        magnitude = torch.fft.rfft(frames, n=FFT_LENGTH).abs()
        if self.tflite_mel:
            scale = magnitude.amax(dim=-1, keepdim=True).clamp_min(1e-30) / 255.0
            magnitude = torch.round(magnitude / scale) * scale
        return torch.log(magnitude @ self.mel + self.mel_bias)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        log_mel = self.log_mel(waveform)
        # [batch, frames, 64] -> [batch, n, 64, 96] -> [batch, n, 96, 64]
        return log_mel.unfold(-2, PATCH_FRAMES, PATCH_HOP_FRAMES).transpose(-1, -2)


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (stride 2 pads only after, as TF does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pad_h = max(k - s, 0) if x.shape[-2] % s == 0 else max(k - x.shape[-2] % s, 0)
        pad_w = max(k - s, 0) if x.shape[-1] % s == 0 else max(k - x.shape[-1] % s, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class _Layer(nn.Module):
    def __init__(self, kind: str, stride: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "conv":
            self.conv = _SameConv(in_ch, out_ch, 3, stride)
        else:
            self.dw = _SameConv(in_ch, in_ch, 3, stride, groups=in_ch)
            self.pw = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return F.relu(self.conv(x))
        return F.relu(self.pw(F.relu(self.dw(x))))


class MobileNetBackbone(nn.Module):
    """Patches [n, 96, 64] -> embeddings [n, 1024] (ReLU features, global average pool)."""

    def __init__(self) -> None:
        super().__init__()
        in_ch = 1
        for i, (kind, stride, out_ch) in enumerate(LAYERS, start=1):
            self.add_module(f"layer{i}", _Layer(kind, stride, in_ch, out_ch))
            in_ch = out_ch

    def layers(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i}") for i in range(1, len(LAYERS) + 1)]

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = patches.unsqueeze(1)
        for layer in self.layers():
            x = layer(x)
        return x.mean(dim=(2, 3))


class YAMNet(nn.Module):
    """The whole published model: waveform -> (scores [n, 521], embeddings [n, 1024], log-mel)."""

    def __init__(self) -> None:
        super().__init__()
        self.frontend = LogMelFrontend()
        self.backbone = MobileNetBackbone()
        self.logits = nn.Linear(EMBEDDING_DIM, NUM_CLASSES)

    @classmethod
    def from_tflite(cls, path: str | Path, tflite_mel: bool = False) -> YAMNet:
        """Load the weights of yamnet.tflite.

        tflite_mel=True also takes its INT8-stored mel matrix and emulates its INT8 mel product
        (see LogMelFrontend) to match the file's outputs; False keeps the published float frontend.
        """
        from training.tflite_weights import yamnet_arrays

        model = cls()
        model.frontend.tflite_mel = tflite_mel
        arrays = yamnet_arrays(path)
        if not tflite_mel:
            arrays.pop("frontend.mel")
        state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in arrays.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"frontend.mel"}:
            raise RuntimeError(f"weight mismatch: missing {missing}, unexpected {unexpected}")
        return model.eval()

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        return self.backbone(patches)

    def forward(self, waveform: torch.Tensor):
        """One clip [samples] as the TFLite model: scores, embeddings, log-mel (no batch axis)."""
        log_mel = self.frontend.log_mel(waveform)
        patches = log_mel.unfold(0, PATCH_FRAMES, PATCH_HOP_FRAMES).transpose(-1, -2)
        embeddings = self.backbone(patches)
        return torch.sigmoid(self.logits(embeddings)), embeddings, log_mel
