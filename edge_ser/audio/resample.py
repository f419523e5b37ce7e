"""Mix any channel count to mono and resample any rate to the model rate (16 kHz), streaming."""

from __future__ import annotations

import numpy as np
import soxr

from . import MODEL_RATE

__all__ = ["MODEL_RATE", "MonoResampler", "to_mono"]


def to_mono(block: np.ndarray) -> np.ndarray:
    """[n, channels] or [n] -> float32 [n]; channels are averaged so a one-sided mic keeps half level."""
    block = np.asarray(block)
    if block.ndim == 2:
        block = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
    return np.ascontiguousarray(block, dtype=np.float32)


class MonoResampler:
    """Streaming mono mix + soxr resampler; keeps filter state across blocks (no clicks at block edges)."""

    def __init__(self, in_rate: int, out_rate: int = MODEL_RATE) -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream = (
            None
            if self.in_rate == self.out_rate
            else soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")
        )

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Mix one captured block down and return the 16 kHz samples it yields (may be empty)."""
        mono = to_mono(block)
        if self._stream is None:
            return mono
        return np.asarray(self._stream.resample_chunk(mono, last=last), dtype=np.float32)

    def flush(self) -> np.ndarray:
        """Samples still held in the filter at the end of a stream."""
        return self.process(np.zeros(0, dtype=np.float32), last=True)
