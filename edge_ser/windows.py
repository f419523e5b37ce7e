"""Cut a 16 kHz sample stream into fixed windows every hop (a ring buffer, constant memory)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """One window of mono 16 kHz samples."""

    start: int
    """Index of the first sample since the stream began."""

    samples: np.ndarray
    """float32 [window_samples]."""

    padded: bool = False
    """True for a tail window that was zero-padded (a stream shorter than one window)."""


class Windower:
    """Push samples in, get each complete window out as soon as its last sample arrives."""

    def __init__(self, window_samples: int, hop_samples: int) -> None:
        if window_samples <= 0 or hop_samples <= 0:
            raise ValueError("window and hop must be positive")
        self.window_samples = int(window_samples)
        self.hop_samples = int(hop_samples)
        self._ring = np.zeros(self.window_samples, dtype=np.float32)
        self._filled = 0
        """Valid samples in the ring (at most window_samples)."""
        self._received = 0
        """Samples pushed since the start of the stream."""
        self._next_end = self.window_samples
        """Stream position at which the next window is complete."""
        self._flushed = False

    @property
    def received(self) -> int:
        return self._received

    def push(self, samples: np.ndarray) -> Iterator[Window]:
        """Append samples; yield every window completed by them, in order."""
        samples = np.asarray(samples, dtype=np.float32).ravel()
        pos = 0
        while pos < len(samples):
            # Feed only up to the next window boundary so a window is copied out exactly at its end.
            take = min(len(samples) - pos, self._next_end - self._received)
            if take > 0:
                self._append(samples[pos : pos + take])
                pos += take
            if self._received == self._next_end:
                yield Window(self._next_end - self.window_samples, self._ring.copy())
                self._next_end += self.hop_samples

    def _append(self, chunk: np.ndarray) -> None:
        n = len(chunk)
        if n >= self.window_samples:
            self._ring[:] = chunk[-self.window_samples :]
        else:
            self._ring[:-n] = self._ring[n:]
            self._ring[-n:] = chunk
        self._filled = min(self.window_samples, self._filled + n)
        self._received += n

    def flush(self) -> Window | None:
        """At the end of a finite stream: one last window covering the samples no window has ended on.

        A stream shorter than one window gives one zero-padded window with the audio in the middle
        (as a live window around a short utterance looks), so a short clip still gets classified;
        otherwise the last `window_samples` of the stream (overlapping the previous window).
        """
        if self._flushed:
            return None
        self._flushed = True
        last_end = self._next_end - self.hop_samples
        if self._received == 0 or (self._received >= self.window_samples and self._received <= last_end):
            return None
        if self._received < self.window_samples:
            out = np.zeros(self.window_samples, dtype=np.float32)
            off = (self.window_samples - self._filled) // 2
            out[off : off + self._filled] = self._ring[-self._filled :]
            return Window(0, out, padded=True)
        if self._received - last_end < self.hop_samples // 2 and last_end >= self.window_samples:
            # Less than half a hop of new audio: the previous window already covers it well enough.
            return None
        return Window(self._received - self.window_samples, self._ring.copy())


def cut_windows(samples: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """Every window the daemon cuts from a finite stream (push, then flush): float32 [n, window].

    Training cuts its clips with this function, so a head learns on exactly the windows that
    `classify` and `listen --input` feed the model.
    """
    w = Windower(window_samples, hop_samples)
    out = [x.samples for x in w.push(samples)]
    tail = w.flush()
    if tail is not None:
        out.append(tail.samples)
    if not out:
        return np.zeros((0, int(window_samples)), dtype=np.float32)
    return np.stack(out)
