"""Audio file source: any format libsndfile reads (wav, flac, ogg/opus, mp3), any rate and channels.

Streams block by block, so a file of any length uses constant memory. Damage in the middle of a file
is skipped and reported in `warnings` (reader.py); a file of which nothing decodes is an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from .reader import MAX_NOTES, UNKNOWN_FRAMES, BlockReader
from .resample import to_mono
from .signal_check import SignalCheck

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".oga", ".mp3", ".aiff", ".aif")
"""File endings `classify` picks up when given a folder."""

MIN_RATE = 4000
"""Lowest sample rate accepted. Below it the header is not a recording: speech needs more than 2 kHz
of bandwidth, and every sample would be stretched into many 16 kHz samples (a 7 KB file at 1 Hz
became an hour of windows)."""
MAX_RATE = 384000
"""Highest sample rate accepted (the highest rate audio interfaces record at)."""
MAX_CHANNELS = 64
"""Most channels accepted (a large microphone array; more is a broken or hostile header)."""
FREE_S = 60.0
"""Seconds of audio any file may decode to, whatever its size."""
MIN_BYTES_PER_S = 25.0
"""Beyond FREE_S, a file must hold at least this many bytes per second of audio it decodes to. Real
recordings need hundreds (Opus at 6 kbit/s: 750) and digital silence in FLAC about 50-200; only a
forged header or a compression bomb gets below it. This bounds the work a file can cause by its size."""
MAX_BLOCK_SAMPLES = 1 << 20
"""Most samples (frames x channels) read at once, so a wide, fast file cannot make a huge block."""
MAX_SPANS_LISTED = 5
"""Damaged spans named one by one in a warning (the rest are counted)."""


class FileSource:
    """Reads an audio file as a sequence of float32 [n, channels] blocks at its own rate."""

    def __init__(self, path: str | Path, block_s: float = 0.1, realtime: bool = False) -> None:
        self.path = str(path)
        self.block_s = block_s
        self.realtime = realtime
        self.live = realtime
        """A paced file behaves like a microphone: the pipeline drops windows instead of waiting."""
        self._reader = BlockReader(self.path, _open)
        self.rate = self._reader.rate
        self.channels = self._reader.channels
        self.frames = self._reader.frames
        self.frames_read = 0
        self.warnings: list[str] = []
        """What a listener of this file should know once it has been read (damage, a signal that is
        no recording), one line each."""
        self._check = SignalCheck()
        self.max_frames = int(max_seconds(Path(self.path).stat().st_size) * self.rate)
        """Frames this file may decode to (checked while reading too: a header can understate)."""

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        """Yield blocks until the end of the file (or until `stop` is set)."""
        n = max(1, min(int(round(self.block_s * self.rate)), MAX_BLOCK_SAMPLES // self.channels))
        start = time.monotonic()
        while stop is None or not stop.is_set():
            try:
                block = self._reader.read(n)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"cannot decode {self.path}: {e}") from None
            if len(block) == 0:
                self._finish()
                return
            if not np.isfinite(block).all():
                # A float file holding NaN/Inf is broken, not sound: no level or label means anything.
                at = (self.frames_read + int(np.argmin(np.isfinite(block).all(axis=1)))) / self.rate
                raise AudioError(f"audio file has non-finite samples (NaN or infinity) at {at:.2f} s: "
                                 f"{self.path}")
            self.frames_read += len(block)
            self._check.update(to_mono(block))
            if self.frames_read > self.max_frames:
                raise AudioError(f"audio file decodes to more than {self.max_frames / self.rate:.0f} s of "
                                 f"audio, more than its size allows: {self.path}")
            if self.realtime:
                # Pace on the total read so far, so sleep jitter does not accumulate into drift.
                ahead = self.frames_read / self.rate - (time.monotonic() - start)
                while ahead > 0 and (stop is None or not stop.is_set()):
                    time.sleep(min(ahead, 0.05))
                    ahead = self.frames_read / self.rate - (time.monotonic() - start)
            yield block

    def _finish(self) -> None:
        reader = self._reader
        if reader.decoded == 0:
            raise AudioError(f"cannot decode any audio from {self.path} (the file is damaged)")
        warning = damage_warning(self.damage(), self.frames_read / self.rate)
        if warning:
            self.warnings.append(warning)
        notes = reader.decoder_notes
        if notes and not warning:
            more = f"{len(notes)}+" if len(notes) >= MAX_NOTES else str(len(notes))
            self.warnings.append(f"damaged file: the decoder skipped damaged data by itself ({more} "
                                 f"message(s), first: {notes[0][:120]}); classified the "
                                 f"{self.frames_read / self.rate:.2f} s that decoded")
        verdict = self._check.verdict()
        if verdict:
            self.warnings.append(f"does not look like a recording: {verdict}; its labels mean nothing")

    def damage(self) -> dict[str, object]:
        """What did not decode: located spans in seconds ([start, end], end None: to the end) and the
        total seconds lost (including a stream that came out shorter than its header states)."""
        reader, rate = self._reader, self.rate
        spans = [[round(a / rate, 2), None if b is None else round(b / rate, 2)] for a, b in reader.spans]
        lost = reader.shortfall + sum(b - a for a, b in reader.spans if b is not None)
        out: dict[str, object] = {}
        if spans:
            out["damaged"] = spans
        if lost:
            out["lost_s"] = round(lost / rate, 2)
        return out

    def stats(self) -> dict[str, int]:
        """A file never overruns; kept for the same stats shape as the microphone."""
        return {"overruns": 0, "reopens": 0}

    def close(self) -> None:
        self._reader.close()


def damage_warning(damage: dict[str, object], decoded_s: float) -> str | None:
    """One line saying what of a file did not decode, or None."""
    spans = damage.get("damaged") or []
    lost = damage.get("lost_s")
    if not spans and not lost:
        return None
    parts = []
    if spans:
        named = [f"{a:.2f}-{b:.2f} s" if b is not None else f"{a:.2f} s to the end"
                 for a, b in spans[:MAX_SPANS_LISTED]]
        more = len(spans) - MAX_SPANS_LISTED
        rest = f" and {more} more span(s)" if more > 0 else ""
        parts.append(f"could not decode {', '.join(named)}{rest} "
                     "(skipped: later windows start that much earlier)")
    located = sum(b - a for a, b in spans if b is not None)
    if lost and lost - located >= 0.01:
        parts.append(f"{lost - located:.2f} s of the audio its header states did not come out "
                     "(a damaged stream, place unknown)")
    return f"damaged file: {'; '.join(parts)}; classified the {decoded_s:.2f} s that did"


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
        if "does not exist" in reason:  # libsndfile's words for some damaged MP3s; the file is there
            reason = "not a format it recognises, or damaged at the start"
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
    problem = _out_of_limits(f, p.stat().st_size)
    if problem:
        f.close()
        raise AudioError(f"audio file {problem}: {path}")
    if _truncated(f):
        f.close()
        raise AudioError(f"audio file is truncated (its header promises more data than it holds): {path}")
    return f


def max_seconds(size_bytes: int) -> float:
    """Seconds of audio a file of this size may decode to."""
    return max(FREE_S, size_bytes / MIN_BYTES_PER_S)


def _out_of_limits(f: sf.SoundFile, size_bytes: int) -> str | None:
    """Why the header's rate, channels or length is refused, or None."""
    if not MIN_RATE <= f.samplerate <= MAX_RATE:
        return f"sample rate {f.samplerate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
    if f.channels > MAX_CHANNELS:
        return f"has {f.channels} channels (at most {MAX_CHANNELS})"
    seconds = f.frames / f.samplerate
    if f.frames < UNKNOWN_FRAMES and seconds > max_seconds(size_bytes):
        return (f"header claims {seconds:.0f} s of audio in {size_bytes} bytes "
                f"(at most {max_seconds(size_bytes):.0f} s for that size)")
    return None


def _truncated(f: sf.SoundFile) -> bool:
    # libsndfile reads a cut-off WAV silently but notes "data : N (should be M)" in its log.
    info = f.extra_info or ""
    return any(line.startswith("data") and "should be" in line for line in info.splitlines())
