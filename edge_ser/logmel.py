"""YAMNet's log-mel frontend in numpy, for compact models that take a spectrogram instead of samples.

Same parameters and maths as YAMNet's TFLite-compatible frontend (25 ms periodic-Hann window, 10 ms
hop, 512-point FFT magnitude, 64 HTK-mel bands 125-7500 Hz as tf.signal.linear_to_mel_weight_matrix,
log(mel + 0.001)); tests compare it with the `Identity_2` output of yamnet.tflite. Training code
must compute its inputs with `log_mel` too, so serving sees exactly what the model was trained on.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .audio import MODEL_RATE as SAMPLE_RATE

WINDOW = 400
"""25 ms at 16 kHz."""
HOP = 160
"""10 ms at 16 kHz."""
FFT = 512
BANDS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.001


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """[FFT//2+1, BANDS] weights, equal to tf.signal.linear_to_mel_weight_matrix (DC bin zeroed)."""
    bins = FFT // 2 + 1
    freqs_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:])[:, None]
    edges = np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs_mel - lower) / (center - lower)
    down = (upper - freqs_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.vstack([np.zeros((1, BANDS)), weights]).astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)


def n_frames(n_samples: int) -> int:
    """Frames `log_mel` returns for `n_samples` samples (no padding at the end)."""
    return 0 if n_samples < WINDOW else 1 + (n_samples - WINDOW) // HOP


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """float32 16 kHz samples [n] -> log-mel spectrogram [n_frames, 64] (float32)."""
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    t = n_frames(len(x))
    if t == 0:
        raise ValueError(f"need at least {WINDOW} samples for one log-mel frame, got {len(x)}")
    idx = np.arange(WINDOW)[None, :] + HOP * np.arange(t)[:, None]
    frames = x[idx] * _window()
    mag = np.abs(np.fft.rfft(frames, n=FFT, axis=1)).astype(np.float32)
    return np.log(mag @ mel_matrix() + LOG_OFFSET).astype(np.float32)
