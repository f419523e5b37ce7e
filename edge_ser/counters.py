"""What the pipeline did so far: the counters behind the periodic stats message."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RECENT = 2000
"""Timings kept for the medians (bounded: memory stays flat for months)."""


@dataclass
class Counters:
    """Counts of one pipeline run; the stats message carries each of them."""

    windows: int = 0
    """Windows taken by the worker (gated + inferred - gated_after_inference)."""
    gated: int = 0
    """Windows judged silence (published `neutral`): before the model ran (RMS, noise floor, Silero VAD,
    a source fault) or after it."""
    inferred: int = 0
    """Windows the model ran on."""
    gated_after_inference: int = 0
    """Of the gated windows, those the model ran on first (YAMNet speech score, foreground head)."""
    dropped: int = 0
    """Windows dropped because inference fell behind a live source."""
    published: int = 0
    """Result messages handed to the publishers."""
    neutral_suppressed: int = 0
    """Silent windows not published because their silence stretch already had its `neutral`."""
    errors: int = 0
    """Windows lost to an inference or publisher error (logged)."""
    source_faults: int = 0
    """Source blocks with non-finite samples (NaN/Inf): zeroed, and the windows over them gated."""
    audio_s: float = 0.0
    """Seconds of MODEL_RATE audio read from the source."""
    infer_ms: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    """Model time of the most recent windows."""
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    """Window end -> publish time of the most recent published windows."""

    def as_stats(self) -> dict[str, Any]:
        """The counters as stats message fields (medians of the recent timings)."""
        return {
            "audio_s": round(self.audio_s, 1),
            "windows": self.windows,
            "gated": self.gated,
            "inferred": self.inferred,
            "gated_after_inference": self.gated_after_inference,
            "dropped": self.dropped,
            "published": self.published,
            "neutral_suppressed": self.neutral_suppressed,
            "errors": self.errors,
            "source_faults": self.source_faults,
        }

    def medians(self) -> dict[str, float | None]:
        return {"infer_ms_p50": median(self.infer_ms), "latency_ms_p50": median(self.latency_ms)}


def median(values: Iterable[float]) -> float | None:
    """Median rounded to 0.01, None for no values."""
    values = list(values)
    return round(float(np.median(values)), 2) if values else None


def one_line(stats: dict[str, Any]) -> str:
    """Stats as `key=value ...` for the log (without ts and site)."""
    return " ".join(f"{k}={v}" for k, v in stats.items() if k not in ("ts", "site"))
