"""Read a sound file block by block so that damage in the middle costs only the damaged part.

libsndfile stops for good at a corrupt FLAC frame ("lost sync"), and Ogg Vorbis skips a corrupt page
without saying so. Here a decode error reopens the file and seeks past the damage in growing steps,
and at the end the frames decoded are compared with the length the header states: every frame that
did not decode is accounted for in `spans` (located damage) or `shortfall` (a stream that came out
shorter than its header says).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

UNKNOWN_FRAMES = 1 << 62
"""At or above this, libsndfile's frame count means the header does not state the length."""

RESYNC_FIRST_S = 0.1
"""First step past a decode error; each failed try doubles it, up to RESYNC_MAX_STEP_S."""
RESYNC_MAX_STEP_S = 10.0
MAX_RESYNC_TRIES = 400
"""Reopen-and-seek tries per file (bounds the work a file full of damage can cause)."""

MAX_NOTES = 100
"""Decoder lines kept per file (their count and the first one are reported)."""

STATED_LENGTH_FORMATS = ("WAV", "WAVEX", "RF64", "AIFF", "FLAC", "OGG", "CAF", "W64")
"""Containers whose header states the exact length (MP3's frame count is only an estimate)."""


_stderr_lock = threading.Lock()
_LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d ")
"""The start of a line of the daemon's own log format (cli.setup_logging)."""


@contextlib.contextmanager
def decoder_stderr_to_log() -> Iterator[list[str]]:
    """Lines a C decoder prints on stderr by itself during the block become DEBUG log records.

    libmpg123 (MP3 inside libsndfile) writes notes about a damaged stream ("[src/libmpg123/...]",
    "Note: ...", "Warning: Xing stream size off ...") straight to file descriptor 2, which would break
    the one-line contract of a refused file. Log records another thread writes meanwhile (they start
    with their timestamp) are passed on unchanged, only later. Yields the list that gets the
    decoder's lines when the block ends.
    """
    notes: list[str] = []
    with _stderr_lock, tempfile.TemporaryFile() as capture:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield notes
            return
        try:
            os.dup2(capture.fileno(), 2)
            yield notes
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if _LOG_RECORD.match(line):
                    os.write(2, line.encode())
                elif line.strip():
                    notes.append(line.strip())
                    log.debug("decoder: %s", line.strip())


def readf(f: sf.SoundFile, n: int, notes: list[str] | None = None) -> tuple[np.ndarray, int]:
    """Up to n frames as float32 [got, channels], and libsndfile's error code (0: none).

    pysoundfile's read() is not used here: it seeks after every read, which fails on a FLAC stream
    whose header states no length, and it throws away the frames decoded before an error.
    What an MP3 decoder prints about the stream meanwhile is appended to `notes`.
    """
    out = np.empty((n, f.channels), dtype=np.float32)
    with decoder_stderr_to_log() if f.format == "MP3" else contextlib.nullcontext([]) as printed:
        got = int(sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", out.ctypes.data), n))
    if notes is not None:
        notes += printed
    return out[: max(0, got)], int(sf._snd.sf_error(f._file))


def _trim_zeros(block: np.ndarray) -> np.ndarray:
    """The block without its trailing all-zero frames.

    libFLAC fills a frame that fails its checksum with zeros before reporting the error, so the block
    that ends at an error ends in silence that was never in the recording; it is counted as damage.
    """
    nonzero = np.flatnonzero(block.any(axis=1))
    return block[: nonzero[-1] + 1] if len(nonzero) else block[:0]


def _quietly(opener: Callable[[str], sf.SoundFile]) -> Callable[[str], sf.SoundFile]:
    """The opener, with decoder chatter on stderr logged instead (opening probes every format)."""

    def open_quietly(path: str) -> sf.SoundFile:
        with decoder_stderr_to_log():
            return opener(path)

    return open_quietly


class BlockReader:
    """Blocks of a file in order, skipping what does not decode; positions are file frames."""

    def __init__(self, path: str, opener: Callable[[str], sf.SoundFile]) -> None:
        self.path = path
        self._opener = _quietly(opener)
        self.file = self._opener(path)
        self.rate = int(self.file.samplerate)
        self.channels = int(self.file.channels)
        self.frames = int(self.file.frames)
        self.position = 0
        """File frame of the next frame to be read."""
        self.decoded = 0
        """Frames that did decode."""
        self.spans: list[tuple[int, int | None]] = []
        """Frame ranges [start, end) skipped because they did not decode (end None: to the end)."""
        self.shortfall = 0
        """Frames the header states that never came out, at no known place (a silently shortened stream)."""
        self.decoder_notes: list[str] = []
        """Lines the decoder printed about damage it skipped by itself (libmpg123 resynchronising)."""
        self._ended = False
        self._failed = False

    @property
    def length_stated(self) -> bool:
        return self.frames < UNKNOWN_FRAMES and self.file.format in STATED_LENGTH_FORMATS

    def read(self, n: int) -> np.ndarray:
        """The next up to n frames; an empty block at the end."""
        if self._ended:
            return np.zeros((0, self.channels), np.float32)
        block, error = readf(self.file, n, self.decoder_notes)
        del self.decoder_notes[MAX_NOTES:]
        # libsndfile flags the error on the call that hits it (with the frames decoded before it) and
        # returns nothing, without an error, from then on.
        failed, self._failed = self._failed or bool(error), bool(error) and len(block) > 0
        if error and len(block):
            block = _trim_zeros(block)
        if len(block) == 0 and failed:
            block = self._resync(n)
        if len(block) == 0:
            self._finish()
            return block
        self.position += len(block)
        self.decoded += len(block)
        return block

    def _resync(self, n: int) -> np.ndarray:
        """Reopen past a decode error; the first block after it, or an empty one when none decodes."""
        start, step = self.position, max(1, int(RESYNC_FIRST_S * self.rate))
        target = start
        for _ in range(MAX_RESYNC_TRIES):
            target += step
            step = min(step * 2, int(RESYNC_MAX_STEP_S * self.rate))
            if self.length_stated and target >= self.frames:
                break
            try:
                f = self._opener(self.path)
            except Exception:  # noqa: BLE001 - it opened before; now treat it as more damage
                break
            try:
                f.seek(target)
                block, error = readf(f, n, self.decoder_notes)
            except (sf.LibsndfileError, RuntimeError):
                block, error = np.zeros((0, self.channels), np.float32), 1
            if error:  # more damage right after: what came before it counts, the rest is a new span
                block = _trim_zeros(block)
            if len(block) == 0:
                f.close()
                continue
            self.file.close()
            self.file = f
            self._failed = bool(error)
            self.spans.append((start, target))
            self.position = target
            return block
        self.spans.append((start, self.frames if self.length_stated else None))
        self._ended = True
        return np.zeros((0, self.channels), np.float32)

    def _finish(self) -> None:
        self._ended = True
        ends_at_damage = bool(self.spans) and self.spans[-1][1] in (None, self.frames)
        if self.length_stated and not ends_at_damage and self.position < self.frames:
            self.shortfall = self.frames - self.position

    def close(self) -> None:
        self.file.close()
