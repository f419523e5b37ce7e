"""Non-finite samples (NaN/Inf) from a source: zeroed, and the windows over them remembered for gating.

NaN or Inf is no sound but a fault of the source (a broken driver or float stream): passed on, it
would stick in the resampler's filter state and give NaN levels and invented labels.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

FAULT_MARGIN_S = 0.05
"""A window within this distance of non-finite source samples is gated too: the resampler's filter
spreads the zeros that replaced them (and its own ringing) a few milliseconds either side."""

MAX_FAULT_SPANS = 256
"""Fault spans remembered for the windows still pending (bounded: a source that keeps failing cannot
grow memory)."""


class FaultSpans:
    """Where in the source's time (seconds since it started, across rate changes) faults were.

    `clean` runs on the reading thread, `overlaps` on the inference worker.
    """

    def __init__(self) -> None:
        self._source_s = 0.0
        """Seconds of source audio read so far (the time base of the spans)."""
        self._spans: deque[tuple[float, float]] = deque(maxlen=MAX_FAULT_SPANS)
        self._lock = threading.Lock()

    def clean(self, block: np.ndarray, rate: int) -> tuple[np.ndarray, float | None]:
        """The block with non-finite samples zeroed, and the source time of its first fault (None: none)."""
        block_start = self._source_s
        self._source_s += len(block) / rate
        finite = np.isfinite(block)
        if finite.all():
            return block, None
        bad = np.flatnonzero(~finite.reshape(len(block), -1).all(axis=1))
        start, end = block_start + bad[0] / rate, block_start + (bad[-1] + 1) / rate
        with self._lock:
            if self._spans and self._spans[-1][1] >= start - FAULT_MARGIN_S:
                self._spans[-1] = (self._spans[-1][0], end)
            else:
                self._spans.append((start, end))
        return np.where(finite, block, np.float32(0.0)).astype(np.float32), start

    def overlaps(self, start_s: float, end_s: float) -> bool:
        """Whether [start_s, end_s) of the source overlaps a fault span; forgets spans before it."""
        with self._lock:
            while self._spans and self._spans[0][1] + FAULT_MARGIN_S <= start_s:
                self._spans.popleft()
            return any(a - FAULT_MARGIN_S < end_s and b + FAULT_MARGIN_S > start_s for a, b in self._spans)
