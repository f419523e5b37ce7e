"""Microphone source through sounddevice (PortAudio), at the device's native rate and channels.

The PortAudio callback only copies each block into a bounded queue: it never blocks, and a full
queue drops the block and counts an overrun. A device that fails, stalls or disappears is closed and
reopened with exponential backoff, so a USB mic that is unplugged and plugged back resumes by itself.
sounddevice is imported here only, so file input works without libportaudio2.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import AudioError
from ..settings import AudioSettings

log = logging.getLogger(__name__)

STALL_S = 2.0
"""A running stream that delivers nothing for this long (or 20 blocks, if longer) counts as lost."""


def import_sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio library into one clear line."""
    try:
        import sounddevice
    except OSError as e:  # the Python package is there, the PortAudio library is not
        raise AudioError(
            f"cannot use a microphone: {e} (install it: apt install libportaudio2; or use --input FILE)"
        ) from None
    except ImportError:
        raise AudioError("cannot use a microphone: the sounddevice package is not installed "
                         "(pip install sounddevice; or use --input FILE)") from None
    return sounddevice


def input_devices(sd: Any = None) -> list[dict[str, Any]]:
    """Input devices as `edge-ser devices` lists them: index, name, default rate, channels, default."""
    sd = sd or import_sounddevice()
    try:
        devices = sd.query_devices()
        default_in = _default_input(sd)
    except sd.PortAudioError as e:
        raise AudioError(f"cannot list audio devices: {e}") from None
    out = []
    for i, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            out.append({
                "index": i,
                "name": d["name"],
                "default_rate": int(d["default_samplerate"]),
                "channels": int(d["max_input_channels"]),
                "default": i == default_in,
            })
    return out


def resolve_device(spec: str | int | None, sd: Any) -> int:
    """Device index for an index, a (part of a) name, or None = the system default input."""
    devices = input_devices(sd)
    if not devices:
        raise AudioError("no audio input device found (see `edge-ser devices`)")
    if spec is None:
        default = [d for d in devices if d["default"]]
        return (default or devices)[0]["index"]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        if any(d["index"] == index for d in devices):
            return index
        raise AudioError(f"audio input device {index} not found (see `edge-ser devices`)")
    exact = [d for d in devices if d["name"] == spec]
    if exact:
        return exact[0]["index"]
    partial = [d for d in devices if spec.lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]["index"]
    if partial:
        names = "; ".join(f"{d['index']}: {d['name']}" for d in partial)
        raise AudioError(f"audio input device {spec!r} is ambiguous ({names}); give its index or full name")
    raise AudioError(f"audio input device {spec!r} not found (see `edge-ser devices`)")


def _default_input(sd: Any) -> int:
    try:
        default = sd.default.device[0]
    except (AttributeError, IndexError, TypeError):
        default = -1
    if default is None or default < 0:
        try:
            default = int(sd.query_devices(kind="input")["index"])
        except Exception:  # noqa: BLE001 - no default input is a normal state, not an error
            default = -1
    return int(default)


class MicSource:
    """Blocks of float32 [n, channels] from a capture device, reopened on failure."""

    live = True

    def __init__(self, settings: AudioSettings, sd: Any = None) -> None:
        self.settings = settings
        self.warnings: list[str] = []
        """A microphone reports its problems in the log as they happen; nothing is left at the end."""
        self._sd = sd or import_sounddevice()
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=settings.queue_blocks)
        self._stream: Any = None
        self._failed = threading.Event()
        self.overruns = 0
        self.reopens = 0
        self.device = resolve_device(settings.device, self._sd)
        self.rate, self.channels = self._choose_format(self.device)
        self._open()
        info = self._sd.query_devices(self.device)
        log.info("microphone %d (%s) open at %d Hz, %d channel(s)", self.device, info["name"], self.rate,
                 self.channels)

    def _choose_format(self, device: int) -> tuple[int, int]:
        info = self._sd.query_devices(device)
        rate = int(self.settings.sample_rate or info["default_samplerate"])
        if self.settings.channels:
            candidates = [self.settings.channels]
        else:
            # Mono when the device can; otherwise its own count (e.g. a stereo-only USB mic).
            candidates = [1, int(info["max_input_channels"])]
        last: Exception | None = None
        for ch in candidates:
            try:
                self._sd.check_input_settings(device=device, channels=ch, samplerate=rate, dtype="float32")
                return rate, ch
            except Exception as e:  # noqa: BLE001 - PortAudio reports unsupported formats as various types
                last = e
        raise AudioError(
            f"audio input device {device} ({info['name']}) does not support {rate} Hz with "
            f"{candidates[0]} channel(s): {last}"
        )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs in PortAudio's thread: copy and return; never block, never log from here.
        if status and getattr(status, "input_overflow", False):
            self.overruns += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self.overruns += 1

    def _finished(self) -> None:
        self._failed.set()

    def _open(self) -> None:
        self._failed.clear()
        try:
            self._stream = self._sd.InputStream(
                device=self.device,
                samplerate=self.rate,
                channels=self.channels,
                dtype="float32",
                blocksize=max(1, int(round(self.settings.block_s * self.rate))),
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except Exception as e:  # noqa: BLE001 - PortAudioError, or ValueError for a vanished device
            self._close_stream()
            raise AudioError(f"cannot open audio input device {self.device}: {e}") from None

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception:  # noqa: BLE001 - the device may already be gone
                pass

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray | None]:
        """Yield captured blocks until `stop` is set; a lost device is reopened with backoff.

        While no audio arrives (a stall, or the device is away and being retried) it yields None
        every fraction of a second: a tick telling the reader this loop is alive (so the systemd
        watchdog keeps being petted during a deliberate wait, and stops only on a real hang).
        """
        stop = stop or threading.Event()
        stall_s = max(STALL_S, 20 * self.settings.block_s)
        last = time.monotonic()
        while not stop.is_set():
            try:
                block = self._queue.get(timeout=0.1)
            except queue.Empty:
                lost = self._failed.is_set() or time.monotonic() - last > stall_s
                if lost and not stop.is_set():
                    yield from self._reopen(stop)
                    last = time.monotonic()
                else:
                    yield None
                continue
            last = time.monotonic()
            yield block

    def _reopen(self, stop: threading.Event) -> Iterator[None]:
        log.warning("microphone %s lost (stream error or no audio); reopening", self.settings.device)
        self._close_stream()
        delay = self.settings.reopen_min_s
        while not stop.is_set():
            try:
                self._rescan()
                self.device = resolve_device(self.settings.device, self._sd)
                self.rate, self.channels = self._choose_format(self.device)
                self._open()
            except AudioError as e:
                log.warning("microphone not back yet (%s); retrying in %.1f s", e, delay)
                deadline = time.monotonic() + delay
                while not stop.is_set() and time.monotonic() < deadline:
                    stop.wait(min(0.25, max(0.0, deadline - time.monotonic())))
                    yield None
                delay = min(delay * 2, self.settings.reopen_max_s)
                continue
            self.reopens += 1
            log.info("microphone back: device %d at %d Hz, %d channel(s)", self.device, self.rate,
                     self.channels)
            return

    def _rescan(self) -> None:
        # PortAudio enumerates devices once at initialisation; re-initialise to see a replugged mic.
        terminate = getattr(self._sd, "_terminate", None)
        initialize = getattr(self._sd, "_initialize", None)
        if terminate and initialize:
            try:
                terminate()
                initialize()
            except Exception as e:  # noqa: BLE001
                log.debug("PortAudio re-initialisation failed: %s", e)

    def stats(self) -> dict[str, int]:
        return {"overruns": self.overruns, "reopens": self.reopens}

    def close(self) -> None:
        self._close_stream()
