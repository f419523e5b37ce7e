"""The result message: one JSON object per window, identical on stdout and over MQTT (README.md shows one)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from .labels import EMOTIONS, NEUTRAL

KEYS = ("ts", "site", "window_start", "window_s", "label", "confidence", "probs", "rms", "gated", "model",
        "latency_ms")
"""Every result message has exactly these keys, in this order."""


def utc_iso(t: float | None = None) -> str:
    """UTC timestamp with milliseconds and a Z, e.g. 2026-11-25T10:00:02.000Z."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def silence_probs(labels: Iterable[str] = EMOTIONS) -> dict[str, float]:
    """Probabilities published for a gated window: every emotion 0, neutral 1."""
    probs = {k: 0.0 for k in labels if k != NEUTRAL}
    probs[NEUTRAL] = 1.0
    return probs


def result_message(
    *,
    site: str,
    window_start: float,
    window_s: float,
    label: str,
    probs: dict[str, float],
    rms: float,
    gated: bool,
    model: str,
    latency_ms: float,
    ts: float | None = None,
) -> dict[str, Any]:
    """Build one result message; `confidence` is the probability of `label`."""
    return {
        "ts": utc_iso(ts),
        "site": site,
        "window_start": round(float(window_start), 3),
        "window_s": float(window_s),
        "label": label,
        "confidence": round(float(probs.get(label, 0.0)), 4),
        "probs": {k: round(float(v), 4) for k, v in probs.items()},
        "rms": round(float(rms), 4),
        "gated": bool(gated),
        "model": model,
        "latency_ms": round(float(latency_ms), 2),
    }


def encode(message: dict[str, Any], separators: tuple[str, str] = (", ", ": "), default: Any = None) -> str:
    """JSON text of a message or stats record.

    NaN and Infinity are refused (ValueError): they are not JSON, and JSON.parse or any strict parser
    rejects the whole line. Callers drop such a record and count it instead of sending it.
    """
    return json.dumps(message, separators=separators, allow_nan=False, default=default)
