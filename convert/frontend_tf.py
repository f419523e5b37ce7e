"""The YAMNet/VGGish log-mel frontend as TFLite-friendly TensorFlow ops, with a numpy reference.

25 ms periodic-Hann frames every 10 ms, |DFT| with 512 points (257 bins), 64 HTK-mel bands
125-7500 Hz (edge_ser.logmel.mel_matrix), log(mel + offset): offset 0.001 for YAMNet, 0.01 for
VGGish. The spectrum is TFLite's RFFT2D (float, also in tflite-runtime 2.14); a DFT written as a
strided convolution measured slower and, under dynamic-range quantization, about 4x less accurate
(see "Whole models" in convert/README.md).
"""

from __future__ import annotations

import numpy as np

from edge_ser.logmel import BANDS, FFT, HOP, WINDOW, mel_matrix

YAMNET_LOG_OFFSET = 0.001
VGGISH_LOG_OFFSET = 0.01


def n_frames(samples: int) -> int:
    """Frames of a `samples`-long waveform (no padding)."""
    return 0 if samples < WINDOW else 1 + (samples - WINDOW) // HOP


def log_mel_np(waveform: np.ndarray, log_offset: float) -> np.ndarray:
    """Reference: float32 samples [n] -> [frames, 64] (numpy rfft)."""
    x = np.asarray(waveform, np.float64).reshape(-1)
    t = n_frames(len(x))
    idx = np.arange(WINDOW)[None, :] + HOP * np.arange(t)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)
    mag = np.abs(np.fft.rfft(x[idx] * window, n=FFT, axis=1))
    return np.log(mag @ mel_matrix().astype(np.float64) + log_offset).astype(np.float32)


def log_mel_tf(waveform, log_offset: float):
    """TF: waveform [1, samples] (static length) -> log-mel [frames, 64], as log_mel_np within ~1e-5.

    Frames are cut without a gather: with a 160-sample hop and a 400-sample window, frame i is
    blocks i, i+1 and half of i+2 of the waveform reshaped into 160-sample blocks.
    """
    import tensorflow as tf

    samples = int(waveform.shape[-1])
    t = n_frames(samples)
    if t == 0:
        raise ValueError(f"need at least {WINDOW} samples, got {samples}")
    per = -(-WINDOW // HOP)  # blocks touched by one frame (3)
    blocks = tf.reshape(
        waveform[0, : (t + per - 1) * HOP]
        if samples >= (t + per - 1) * HOP
        else tf.pad(waveform[0], [[0, (t + per - 1) * HOP - samples]]),
        [t + per - 1, HOP],
    )
    parts = [blocks[i : i + t] for i in range(per)]
    parts[-1] = parts[-1][:, : WINDOW - HOP * (per - 1)]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)
    frames = tf.concat(parts, axis=1) * window
    mag = tf.abs(tf.signal.rfft(frames, [FFT]))
    return tf.math.log(tf.matmul(mag, mel_matrix()) + log_offset)


def patches_tf(log_mel, patch: int, hop: int, count: int):
    """[frames, 64] -> [count, patch, 64]: `count` patches of `patch` frames every `hop` frames."""
    import tensorflow as tf

    if hop == patch:  # non-overlapping (VGGish): one reshape
        return tf.reshape(log_mel[: count * patch], [count, patch, BANDS])
    return tf.stack([log_mel[i * hop : i * hop + patch] for i in range(count)])
