"""The interface every audio source implements (audio/source_file.py, audio/source_mic.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

import numpy as np


class Source(Protocol):
    """Float32 [n, channels] blocks at the source's own rate; the pipeline mixes and resamples them.

    Whoever opens a source closes it (the pipeline only reads it).
    """

    rate: int
    """Sample rate of the blocks now; a microphone reopened on another device may change it."""

    live: bool
    """True for a microphone or a file paced in real time: when inference falls behind, the pipeline
    drops the oldest windows instead of waiting (a file read as fast as possible waits)."""

    warnings: list[str]
    """What a listener should know once the source has ended (a damaged file), one line each."""

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray | None]:
        """Yield blocks until the audio ends or `stop` is set; None is a tick while no audio arrives
        (the source is alive, e.g. waiting for a lost microphone)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters merged into the pipeline's stats (overruns, reopens)."""
        ...

    def close(self) -> None:
        """Release the device or file."""
        ...
