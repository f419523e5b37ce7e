"""Audio file source: any format libsndfile reads (wav, flac, ogg/opus, mp3), any rate and channels.

Streams block by block, so a file of any length uses constant memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".oga", ".mp3", ".aiff", ".aif")
"""File endings `classify` picks up when given a folder."""


class FileSource:
    """Reads an audio file as a sequence of float32 [n, channels] blocks at its own rate."""

    def __init__(self, path: str | Path, block_s: float = 0.1, realtime: bool = False) -> None:
        self.path = str(path)
        self.block_s = block_s
        self.realtime = realtime
        self.live = realtime
        """A paced file behaves like a microphone: the pipeline drops windows instead of waiting."""
        self._file = _open(self.path)
        self.rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames = int(self._file.frames)
        self.frames_read = 0

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        """Yield blocks until the end of the file (or until `stop` is set)."""
        n = max(1, int(round(self.block_s * self.rate)))
        start = time.monotonic()
        while stop is None or not stop.is_set():
            try:
                block = self._file.read(n, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"cannot decode {self.path}: {e}") from None
            if len(block) == 0:
                return
            if not np.isfinite(block).all():
                # A float file holding NaN/Inf is broken, not sound: no level or label means anything.
                at = (self.frames_read + int(np.argmin(np.isfinite(block).all(axis=1)))) / self.rate
                raise AudioError(f"audio file has non-finite samples (NaN or infinity) at {at:.2f} s: "
                                 f"{self.path}")
            self.frames_read += len(block)
            if self.realtime:
                # Pace on the total read so far, so sleep jitter does not accumulate into drift.
                ahead = self.frames_read / self.rate - (time.monotonic() - start)
                while ahead > 0 and (stop is None or not stop.is_set()):
                    time.sleep(min(ahead, 0.05))
                    ahead = self.frames_read / self.rate - (time.monotonic() - start)
            yield block

    def stats(self) -> dict[str, int]:
        """A file never overruns; kept for the same stats shape as the microphone."""
        return {"overruns": 0, "reopens": 0}

    def close(self) -> None:
        self._file.close()


def _open(path: str) -> sf.SoundFile:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file not found: {path}")
    if p.is_dir():
        raise AudioError(f"audio input is a folder, not a file: {path}")
    if p.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    try:
        f = sf.SoundFile(path)
    except sf.LibsndfileError as e:
        reason = str(getattr(e, "error_string", "") or e).strip()
        raise AudioError(
            f"cannot read audio file {path}: {reason} (supported: wav, flac, ogg/opus, mp3)"
        ) from None
    except (RuntimeError, OSError) as e:
        raise AudioError(f"cannot read audio file {path}: {e}") from None
    if f.frames == 0:
        f.close()
        raise AudioError(f"audio file has no samples: {path}")
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(f"audio file has an invalid format ({f.samplerate} Hz, {f.channels} ch): {path}")
    if _truncated(f):
        f.close()
        raise AudioError(f"audio file is truncated (its header promises more data than it holds): {path}")
    return f


def _truncated(f: sf.SoundFile) -> bool:
    # libsndfile reads a cut-off WAV silently but notes "data : N (should be M)" in its log.
    info = f.extra_info or ""
    return any(line.startswith("data") and "should be" in line for line in info.splitlines())
