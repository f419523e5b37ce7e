"""A virtual ALSA microphone for tests: PortAudio/sounddevice and arecord capture a raw S16_LE file or FIFO.

Testing without hardware: `rawmic` is an ALSA `file` plugin whose `infile` is the capture
data; `fakemic` wraps it in a `plug` whose slave is 48 kHz stereo S16_LE, so an application opening
`fakemic` talks to what looks like a 48 kHz stereo USB mic. Each test gets its own HOME holding the
`.asoundrc`, and runs the daemon with `env=mic.env()`.

Pacing: backed by a plain file the device is not real time (it delivers as fast as it is read), so
`VirtualMic` feeds a FIFO from a writer thread that keeps real-time pace. PortAudio opens and closes
every device while enumerating, so the writer reopens the FIFO after each BrokenPipeError, and it
plays the audio only once a reader has stayed connected for `settle_s` (the real capture stream):
before that, and after the audio, it writes silence until stop().

Chunk size matters (measured): PortAudio reads the ALSA file plugin through mmap, and a read that
finds fewer bytes in the FIFO than one period still commits a whole period of stale samples (5x
real time with 20 ms writes under 100 ms periods). The writer therefore writes whole chunks of
`chunk_s` = 0.1 s, a multiple of the reader's period (edge-ser's audio.block_s, 0.1 s by default):
every read then finds full periods and the device runs at real-time pace with the right samples.
For the same reason each new connection first gets `prefill_s` of silence at once (in a 1 MiB pipe):
the first reads of a stream may ask for several periods, and without it the daemon's first window
was stale buffer memory (RMS 0.15 on a silent device, measured).

    with VirtualMic(tmp_path, audio=x, rate=16000) as mic:   # x: float32 [n] or [n, ch] in [-1, 1]
        proc = subprocess.Popen([... "listen", "--device", "fakemic"], env=mic.env(), ...)
        mic.wait_played(timeout=30)   # True once all the audio went into the device
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path

import numpy as np
import soxr

DEVICE = "fakemic"
"""The 48 kHz stereo plug device an application should open."""
RAW_DEVICE = "rawmic"
"""The underlying file device (any rate/channels the application asks for)."""
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def asoundrc(infile: str | Path, rate: int = 48000, channels: int = 2) -> str:
    """The .asoundrc text: rawmic reads `infile` (raw interleaved S16_LE), fakemic = plug at rate/channels."""
    return (
        f'pcm.{RAW_DEVICE} {{ type file; slave.pcm "null"; file "/dev/null"; infile "{infile}"; '
        'format "raw" }\n'
        f'pcm.{DEVICE} {{ type plug; slave {{ pcm "{RAW_DEVICE}"; rate {rate}; channels {channels}; '
        "format S16_LE } }\n"
    )


def make_home(root: str | Path, infile: str | Path, rate: int = 48000, channels: int = 2) -> Path:
    """A HOME folder whose .asoundrc defines rawmic/fakemic on `infile`."""
    home = Path(root) / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".asoundrc").write_text(asoundrc(infile, rate, channels))
    return home


def to_s16_interleaved(audio: np.ndarray, in_rate: int, out_rate: int = 48000, channels: int = 2) -> bytes:
    """float audio [n] or [n, ch] at in_rate -> raw interleaved S16_LE at out_rate with `channels`."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if in_rate != out_rate:
        x = soxr.resample(x, in_rate, out_rate, quality="HQ")
        x = x[:, None] if x.ndim == 1 else x
    if x.shape[1] != channels:
        mono = x.mean(axis=1, keepdims=True)
        x = np.repeat(mono, channels, axis=1)
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class VirtualMic:
    """A FIFO-backed, real-time paced 48 kHz stereo capture device named `fakemic`."""

    def __init__(self, root: str | Path, audio: np.ndarray | None = None, rate: int = 16000,
                 device_rate: int = 48000, channels: int = 2, settle_s: float = 0.5,
                 chunk_s: float = 0.1, prefill_s: float = 0.5) -> None:
        self.root = Path(root)
        self.device_rate = device_rate
        self.channels = channels
        self.settle_s = settle_s
        self.chunk_s = chunk_s
        self.prefill_s = prefill_s
        self.chunk_bytes = int(device_rate * chunk_s) * channels * 2
        self.fifo = self.root / "mic.raw"
        self.home = make_home(self.root, self.fifo, device_rate, channels)
        self._audio = to_s16_interleaved(audio, rate, device_rate, channels) if audio is not None else b""
        self._silence = bytes(self.chunk_bytes)
        self._stop = threading.Event()
        self._played = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes_written = 0
        self.opens = 0

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a process that should see this mic (HOME points at the .asoundrc)."""
        env = dict(os.environ if base is None else base)
        env["HOME"] = str(self.home)
        return env

    def start(self) -> VirtualMic:
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self._thread = threading.Thread(target=self._run, name="virtual-mic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> VirtualMic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_played(self, timeout: float) -> bool:
        """Wait until all the audio was written into the device."""
        return self._played.wait(timeout)

    def _open(self) -> int | None:
        # Non-blocking open fails with ENXIO while no reader has the FIFO open: poll, stay stoppable.
        while not self._stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                time.sleep(0.01)
                continue
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
            try:  # room for the prefill below (the default pipe holds only 64 KiB, 0.34 s here)
                fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
            self.opens += 1
            return fd
        return None

    def _run(self) -> None:
        pos = 0
        bytes_per_s = self.device_rate * self.channels * 2
        while not self._stop.is_set():
            fd = self._open()
            if fd is None:
                return
            t0 = time.monotonic()
            sent = 0
            try:
                # A head start of silence: the first reads of a new stream may ask for more than one
                # period, and a short read would hand the reader stale buffer memory (seen as noise).
                for _ in range(int(round(self.prefill_s / self.chunk_s))):
                    os.write(fd, self._silence)
                while not self._stop.is_set():
                    settled = time.monotonic() - t0 >= self.settle_s
                    if settled and pos < len(self._audio):
                        chunk = self._audio[pos : pos + self.chunk_bytes]
                        pos += len(chunk)
                        if pos >= len(self._audio):
                            self._played.set()
                    else:
                        chunk = self._silence
                        if not self._audio and settled:
                            self._played.set()
                    os.write(fd, chunk)
                    sent += len(chunk)
                    self.bytes_written += len(chunk)
                    ahead = sent / bytes_per_s - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            except (BrokenPipeError, OSError):
                pass  # the reader closed it (PortAudio enumerating, or the daemon stopping): reopen
            finally:
                os.close(fd)
