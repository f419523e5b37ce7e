"""Whisper's log-mel frontend in numpy, the input of the Whisper encoder backbone.

Same maths as openai-whisper's `log_mel_spectrogram` and transformers' `WhisperFeatureExtractor`:
centred STFT (reflect padding, periodic Hann window of 400, hop 160), power spectrum, 80 Slaney mel
bands 0-8000 Hz, the last frame dropped, log10 floored at 1e-10, then at (max - 8), then (x + 4) / 4.
Training extracts its features through `whisper_log_mel` and the daemon serves through it, so a head
always sees the spectrogram it was trained on; tests compare it with WhisperFeatureExtractor.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .audio import MODEL_RATE as SAMPLE_RATE

N_FFT = 400
"""25 ms at 16 kHz."""
HOP = 160
"""10 ms at 16 kHz: 100 mel frames per second, 50 encoder frames per second."""
BANDS = 80
DYNAMIC_RANGE = 8.0
"""Bels kept below the loudest bin of the input; quieter bins are raised to that floor."""


_HZ_PER_MEL = 200.0 / 3
"""Slaney's mel scale is linear below 1 kHz (this many Hz per mel) and logarithmic above."""
_LOG_HZ = 1000.0
_LOG_MEL = _LOG_HZ / _HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _HZ_PER_MEL
    log = hz >= _LOG_HZ
    mel[log] = _LOG_MEL + np.log(hz[log] / _LOG_HZ) / _LOG_STEP
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * _HZ_PER_MEL
    log = mel >= _LOG_MEL
    hz[log] = _LOG_HZ * np.exp(_LOG_STEP * (mel[log] - _LOG_MEL))
    return hz


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """[BANDS, N_FFT//2+1] Slaney-normalised triangular filters (librosa.filters.mel(16000, 400, 80))."""
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0],
                                   BANDS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _filters_t() -> np.ndarray:
    """mel_filters() transposed and contiguous: [frames, bins] @ this is the fast BLAS layout."""
    return np.ascontiguousarray(mel_filters().T)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def n_frames(n_samples: int) -> int:
    """Mel frames `whisper_log_mel` returns for `n_samples` samples (one per hop, none for the tail)."""
    return n_samples // HOP


def whisper_log_mel(waveform: np.ndarray) -> np.ndarray:
    """float32 16 kHz samples [n] -> Whisper log-mel [80, n // 160] (float32).

    The floor at (max - 8) is relative to the loudest bin of this input, so a 2 s window is
    normalised on its own, as the daemon hears it.
    """
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    t = n_frames(len(x))
    if t == 0 or len(x) <= N_FFT // 2:
        raise ValueError(f"need more than {N_FFT // 2} samples for one Whisper mel frame, got {len(x)}")
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP][:t] * _window()
    spec = np.fft.rfft(frames, axis=1)  # numpy's own FFT: importing scipy costs a YAMNet model ~20 MB
    power = spec.real ** 2 + spec.imag ** 2
    log_spec = np.log10(np.maximum(power @ _filters_t(), 1e-10)).T
    log_spec = np.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
    return np.ascontiguousarray((log_spec + 4.0) / 4.0, dtype=np.float32)
