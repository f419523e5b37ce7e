"""Whether a decoded file sounds like a recording at all, or like data that only decodes as audio.

A WAV header over random bytes decodes to full-scale white noise, and a broken export to a constant
level; both pass the RMS gate as "speech" and get confident labels. Running statistics over every
block (constant memory) say so at the end of the file, so the result can carry a warning.
"""

from __future__ import annotations

import numpy as np

SEGMENT = 512
"""Samples per spectrum segment (Welch average of rfft power spectra)."""
SEGMENTS_PER_BLOCK = 16
"""Spectrum segments taken from each block, evenly spaced (bounds the cost for fast, long blocks)."""
FULL_SCALE = 0.999
"""A sample at least this loud is at full scale (clipped)."""

NOISE_RMS = 0.2
"""Louder than this on average, and spectrally flat (NOISE_FLATNESS), is white noise at full scale:
speech averages well below 0.1 even when loud, and no room sound is that flat and that loud."""
NOISE_FLATNESS = 0.7
"""Spectral flatness (geometric over arithmetic mean of the averaged spectrum): white noise ~1,
speech and music below 0.3."""
CLIPPED_FRACTION = 0.25
"""More than this share of samples at full scale is a clipped constant or a square-ish wave."""
DC_LEVEL = 0.01
"""A mean level above this (the RMS gate's threshold) whose variation around it is under DC_RATIO of
it is a constant level, not sound."""
DC_RATIO = 0.1
MAX_PEAK = 16.0
"""Float samples may pass full scale a little (headroom), but 24 dB over it is no recording."""


class SignalCheck:
    """Accumulates level, offset, clipping and spectral flatness of a mono stream."""

    def __init__(self) -> None:
        self.n = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._clipped = 0
        self._peak = 0.0
        self._power = np.zeros(SEGMENT // 2 + 1)
        self._segments = 0

    def update(self, mono: np.ndarray) -> None:
        x = np.asarray(mono, dtype=np.float64)
        if x.size == 0:
            return
        self.n += x.size
        self._sum += float(x.sum())
        self._sumsq += float(np.dot(x, x))
        magnitude = np.abs(x)
        # Exactly at full scale, where a clipped integer signal sits; float samples past it are headroom.
        self._clipped += int(np.count_nonzero((magnitude >= FULL_SCALE) & (magnitude <= 1.0)))
        self._peak = max(self._peak, float(magnitude.max()))
        starts = np.arange(0, x.size - SEGMENT + 1, SEGMENT)
        if len(starts) > SEGMENTS_PER_BLOCK:
            starts = starts[np.linspace(0, len(starts) - 1, SEGMENTS_PER_BLOCK).astype(int)]
        if len(starts):
            segments = x[starts[:, None] + np.arange(SEGMENT)]
            segments -= segments.mean(axis=1, keepdims=True)
            self._power += (np.abs(np.fft.rfft(segments * np.hanning(SEGMENT), axis=1)) ** 2).sum(axis=0)
            self._segments += len(starts)

    def flatness(self) -> float | None:
        """Spectral flatness of the average spectrum without its DC bin, or None before one segment."""
        if not self._segments:
            return None
        p = self._power[1:] / self._segments
        if p.mean() <= 0:
            return None
        return float(np.exp(np.mean(np.log(np.maximum(p, 1e-30)))) / p.mean())

    def verdict(self) -> str | None:
        """Why the stream does not look like a recording, or None when it does (or is too short)."""
        if self.n == 0:
            return None
        if self._peak > MAX_PEAK:
            return f"samples reach {self._peak:.3g}, far beyond full scale (1.0)"
        mean = self._sum / self.n
        rms = float(np.sqrt(self._sumsq / self.n))
        spread = float(np.sqrt(max(0.0, rms * rms - mean * mean)))
        if abs(mean) > DC_LEVEL and spread < DC_RATIO * abs(mean):
            return f"the signal is a constant level ({mean:+.3f}), not sound"
        if self._clipped > CLIPPED_FRACTION * self.n:
            return f"{100 * self._clipped / self.n:.0f} % of the samples are at full scale (clipped)"
        flat = self.flatness()
        if rms > NOISE_RMS and flat is not None and flat > NOISE_FLATNESS:
            return f"the signal is full-scale white noise (RMS {rms:.2f}, spectral flatness {flat:.2f})"
        return None
