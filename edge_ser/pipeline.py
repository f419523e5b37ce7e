"""The streaming pipeline shared by `listen` (microphone or file) and `classify`.

source blocks -> mono 16 kHz -> windows -> [pending, bounded] -> worker: gate -> model -> smoothing
-> result message -> publishers.

The reading side (the caller's thread) never waits for inference: with a live source (microphone, or a
file paced in real time) a full pending queue drops its oldest window and counts it. A file read as
fast as possible waits for the worker instead, so every window of a file is classified.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import notify
from .audio import MODEL_RATE
from .audio.base import Source
from .audio.faults import FaultSpans
from .audio.resample import MonoResampler
from .classifier import Classifier, Scores
from .counters import Counters, one_line
from .errors import UserError
from .gate import Gate, NoiseFloor, rms
from .labels import NEUTRAL
from .message import result_message, silence_probs, utc_iso
from .publish.base import Publisher
from .publish.fanout import Fanout
from .settings import ModelSettings, Settings
from .smoothing import Smoother
from .windows import Window, Windower

log = logging.getLogger(__name__)

STOP_DRAIN_S = 1.0
"""On SIGINT/SIGTERM the worker still finishes pending windows for this long (exit within 2 s)."""

WORKER_STUCK_S = 20.0
"""The watchdog is no longer petted when the inference worker has not come back for this long
(systemd/edge-ser.service has WatchdogSec=30): a hung model gets the daemon restarted."""

DROP_LOG_EVERY_S = 10.0
"""At most one log line per this many seconds about dropped windows (and about source faults)."""


@dataclass
class _Pending:
    window: Window
    ready: float
    """time.monotonic() when the window's last sample arrived (for a file read faster than real
    time: when the worker took it); latency_ms counts from here to the publish call."""
    wall: float
    """time.time() at the same moment (the message's ts)."""
    offset: int
    """Stream samples before the current windower started (after a window-size reload)."""

    @property
    def start_s(self) -> float:
        """Seconds from the start of the stream to the window's first sample."""
        return (self.offset + self.window.start) / MODEL_RATE


class Pipeline:
    """Runs one source through gate, model, smoothing and publishers; `run` returns at the end or stop().

    `gate` is the one built (and so checked) by the caller; None builds it from the settings.
    """

    def __init__(
        self,
        settings: Settings,
        model: Classifier,
        publishers: Iterable[Publisher],
        *,
        gate: Gate | None = None,
        reloader: Callable[[], Settings] | None = None,
        model_loader: Callable[[ModelSettings], Classifier] | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.sinks = Fanout(publishers)
        self.stop_event = threading.Event()
        self.counters = Counters()
        self._reloader = reloader
        self._model_loader = model_loader
        self._reload_wanted = threading.Event()
        self._gate = gate if gate is not None else Gate(settings.gate, model)
        self._floor = NoiseFloor(settings.gate.floor_s, settings.window.hop_s)
        self._smoother = Smoother(settings.smoothing)
        self._pending: deque[_Pending] = deque()
        self._cv = threading.Condition()
        self._source_done = False
        self._in_silence = False
        self._started = time.monotonic()
        self._last_stats = self._started
        self._last_drop_log = 0.0
        self._last_fault_log = -DROP_LOG_EVERY_S
        self._faults = FaultSpans()
        self._source: Source | None = None
        self._live = True
        self._stop_deadline = 0.0
        self._worker_alive = time.monotonic()
        self._retired: list[Classifier] = []
        """Models replaced by a reload, closed by the worker once it no longer uses them."""
        self._windower = self._make_windower(settings)
        self._offset = 0
        if model.window_samples != self._windower.window_samples:
            log.warning("window.window_s is %.2f s but model %s was trained on %.2f s windows",
                        settings.window.window_s, model.id, model.window_samples / MODEL_RATE)

    @property
    def publishers(self) -> list[Publisher]:
        return self.sinks.publishers

    # -- control ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run` to return soon (safe from a signal handler)."""
        self.stop_event.set()

    def request_reload(self) -> None:
        """Reload the config at the next audio block (safe from a signal handler)."""
        self._reload_wanted.set()

    # -- reading side ----------------------------------------------------------------------------

    def run(self, source: Source) -> dict[str, Any]:
        """Stream `source` until it ends or stop() is called; returns the final stats.

        The source stays open: whoever opened it closes it.
        """
        self._source = source
        self._live = source.live
        worker = threading.Thread(target=self._work, name="edge-ser-infer", daemon=True)
        worker.start()
        try:
            self._read(source)
        finally:
            with self._cv:
                self._source_done = True
                self._stop_deadline = time.monotonic() + STOP_DRAIN_S
                self._cv.notify_all()
            worker.join(timeout=None if not self.stop_event.is_set() else STOP_DRAIN_S + 0.5)
            if not worker.is_alive():
                self._close_retired()
        stats = self.stats()
        log.info("finished: %s", one_line(stats))
        return stats

    def _read(self, source: Source) -> None:
        resampler = MonoResampler(source.rate)
        ready_sent = False
        last_pet = 0.0
        for block in source.blocks(self.stop_event):
            now = time.monotonic()
            if block is not None and not ready_sent:
                notify.ready(f"listening ({self.model.id})")
                ready_sent = True
            if now - last_pet >= 1.0 and now - self._worker_alive < WORKER_STUCK_S:
                # Audio flows, or the source says it is alive (None: waiting for a lost mic); a hung
                # capture stops the pets and systemd restarts the daemon.
                notify.watchdog()
                last_pet = now
            if self._reload_wanted.is_set():
                self._reload_wanted.clear()
                self._reload()
            if block is None:
                continue
            if source.rate != resampler.in_rate:
                # The device was reopened at another rate (e.g. a different mic was plugged in).
                resampler = MonoResampler(source.rate)
            block = self._finite(block, source.rate)
            self._feed(resampler.process(block))
        if not self.stop_event.is_set():
            self._feed(resampler.flush())
            tail = self._windower.flush()
            if tail is not None:
                self._enqueue(tail)

    def _finite(self, block: np.ndarray, rate: int) -> np.ndarray:
        """The block with non-finite samples zeroed; counted, logged now and then, their windows gated."""
        block, fault_at = self._faults.clean(block, rate)
        if fault_at is None:
            return block
        self.counters.source_faults += 1
        now = time.monotonic()
        if now - self._last_fault_log >= DROP_LOG_EVERY_S:
            log.warning("audio source delivered non-finite samples (NaN/Inf) at %.2f s: a source fault; "
                        "the windows over them are gated (%d faulty block(s) so far)",
                        fault_at, self.counters.source_faults)
            self._last_fault_log = now
        return block

    def _feed(self, samples: np.ndarray) -> None:
        self.counters.audio_s += len(samples) / MODEL_RATE
        for window in self._windower.push(samples):
            self._enqueue(window)

    def _enqueue(self, window: Window) -> None:
        item = _Pending(window, time.monotonic(), time.time(), self._offset)
        limit = self.settings.window.max_pending
        with self._cv:
            if self._live:
                while len(self._pending) >= limit:
                    self._pending.popleft()
                    self.counters.dropped += 1
                    now = time.monotonic()
                    if now - self._last_drop_log >= DROP_LOG_EVERY_S:
                        log.warning("inference is slower than real time: %d window(s) dropped so far",
                                    self.counters.dropped)
                        self._last_drop_log = now
            else:
                while len(self._pending) >= limit and not self.stop_event.is_set():
                    self._cv.wait(0.1)
            self._pending.append(item)
            self._cv.notify_all()

    # -- worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            self._worker_alive = time.monotonic()
            with self._cv:
                while not self._pending and not self._source_done:
                    self._cv.wait(0.2)
                    self._worker_alive = time.monotonic()
                    self._maybe_stats()
                if not self._pending:
                    return
                if self.stop_event.is_set() and time.monotonic() > self._stop_deadline > 0:
                    self.counters.dropped += len(self._pending)
                    self._pending.clear()
                    return
                item = self._pending.popleft()
                if not self._live:
                    # A file read faster than real time queues windows behind the reader; count
                    # latency from when the worker could take the window, as a live source would.
                    item.ready = time.monotonic()
                self._cv.notify_all()
            try:
                self._process(item)
            except Exception:  # noqa: BLE001 - one bad window must not stop a months-long daemon
                self.counters.errors += 1
                log.exception("window at %.2f s failed", item.start_s)
            self._close_retired()
            self._maybe_stats()

    def _process(self, item: _Pending) -> None:
        samples = item.window.samples
        level = rms(samples)
        model, gate, floor = self.model, self._gate, self._floor
        self.counters.windows += 1
        start_s = item.start_s
        reason: str | None
        if self._faults.overlaps(start_s, start_s + len(samples) / MODEL_RATE):
            reason = "fault"  # a dropout's zeros are not the room: the floor does not learn from them
        else:
            reason = gate.before_inference(samples, level, floor.update(samples))
        prediction: Scores | None = None
        if reason is None:
            prediction = model.predict(samples)
            self.counters.inferred += 1
            self.counters.infer_ms.append(float(prediction.infer_ms))
            reason = gate.after_inference(prediction)
            self.counters.gated_after_inference += reason is not None
        if self.sinks.level_publishers:
            # Every window, also the silent ones neutral_once leaves without a result: a level meter
            # needs them.
            threshold = gate.threshold(floor.rms)
            self.counters.errors += self.sinks.publish_level({
                "ts": utc_iso(item.wall), "window_start": round(start_s, 3), "rms": float(f"{level:.3g}"),
                "gated": reason is not None, "reason": reason, "threshold": float(f"{threshold:.3g}"),
            })
        if reason is not None or prediction is None:
            self.counters.gated += 1
            self._smoother.reset()
            if self._in_silence and self.settings.gate.neutral_once:
                self.counters.neutral_suppressed += 1
                return
            self._in_silence = True
            label, probs = NEUTRAL, silence_probs(model.labels)
        else:
            self._in_silence = False
            label, probs = self._smoother.update(dict(prediction.probs))
            if self.settings.audio.record_dir:
                self._record(item, samples)
        latency_ms = (time.monotonic() - item.ready) * 1000.0
        message = result_message(
            site=self.settings.site,
            window_start=start_s,
            window_s=len(samples) / MODEL_RATE,
            label=label,
            probs=probs,
            rms=level,
            gated=reason is not None,
            model=model.id,
            latency_ms=latency_ms,
            ts=item.wall,
        )
        self.counters.latency_ms.append(latency_ms)
        self.counters.published += 1
        self.counters.errors += self.sinks.publish(message)

    def _record(self, item: _Pending, samples: np.ndarray) -> None:
        """Keep a speech window as WAV, only because the user set audio.record_dir."""
        import soundfile as sf

        folder = Path(self.settings.audio.record_dir or ".")
        stamp = utc_iso(item.wall).replace(":", "").replace("-", "")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{self.settings.site}-{stamp}-{item.start_s:.2f}s.wav"
            sf.write(folder / name, samples, MODEL_RATE, subtype="PCM_16")
        except (OSError, RuntimeError) as e:
            self.counters.errors += 1
            log.warning("cannot record a window into %s: %s", folder, e)

    # -- stats -----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": utc_iso(),
            "site": self.settings.site,
            "model": self.model.id,
            "uptime_s": round(time.monotonic() - self._started, 1),
            **self.counters.as_stats(),
            "pending": len(self._pending),
            **self.counters.medians(),
        }
        if self._source is not None:
            out.update(self._source.stats())
        out.update(self.sinks.stats())
        return out

    def _maybe_stats(self) -> None:
        interval = self.settings.output.stats_interval_s
        now = time.monotonic()
        if not interval or now - self._last_stats < interval:
            return
        self._last_stats = now
        stats = self.stats()
        log.info("stats: %s", one_line(stats))
        notify.status(f"{stats['windows']} windows, {stats['inferred']} inferred, "
                      f"{stats['dropped']} dropped, {stats['published']} published")
        self.sinks.publish_stats(stats)

    # -- reload (SIGHUP) -------------------------------------------------------------------------

    def _reload(self) -> None:
        """Apply a re-read config; on any error keep running with the old one."""
        if self._reloader is None:
            log.warning("SIGHUP: no config file to reload")
            return
        old = self.settings
        try:
            new = self._reloader()
            model = self.model
            if new.model != old.model:
                if self._model_loader is None:
                    raise UserError("changing the model needs a restart here")
                model = self._model_loader(new.model)
            # A new gate only when it changes (a Silero VAD is not loaded again for every SIGHUP).
            gate = self._gate if new.gate == old.gate and model is self.model else Gate(new.gate, model)
            smoother = Smoother(new.smoothing)
            same_floor = (new.gate.floor_s, new.window.hop_s) == (old.gate.floor_s, old.window.hop_s)
            floor = self._floor if same_floor else NoiseFloor(new.gate.floor_s, new.window.hop_s)
            # Built here, inside the error handling: a window the Windower refuses keeps the old one.
            resized = new.window.window_s != old.window.window_s or new.window.hop_s != old.window.hop_s
            windower = self._make_windower(new) if resized else self._windower
        except UserError as e:
            log.error("config reload failed, keeping the running config: %s", e)
            return
        except Exception:  # noqa: BLE001
            log.exception("config reload failed, keeping the running config")
            return
        for section in ("audio", "mqtt", "http"):
            if getattr(new, section) != getattr(old, section):
                log.warning("config reload: changes under %s: need a restart; they are ignored until then",
                            section)
        new = replace(new, audio=old.audio, mqtt=old.mqtt, http=old.http)
        if resized:
            self._offset += self._windower.received
            self._windower = windower
        if model is not self.model:
            self._retired.append(self.model)
        self.model, self._gate, self._smoother, self._floor, self.settings = model, gate, smoother, floor, new
        logging.getLogger().setLevel(new.output.log_level)
        log.info("config reloaded")

    def _close_retired(self) -> None:
        """Close (save the state of) models a reload replaced; only the worker thread predicts, so
        this runs there, between windows, or after the worker ended."""
        while self._retired:
            old = self._retired.pop(0)
            try:
                old.close()
            except Exception:  # noqa: BLE001 - a failed save must not stop the daemon
                log.exception("closing model %s failed", old.id)

    @property
    def gate(self) -> Gate:
        """The gate in use (replaced by a reload that changes gate settings or the model)."""
        return self._gate

    @staticmethod
    def _make_windower(settings: Settings) -> Windower:
        return Windower(settings.window.window_samples, settings.window.hop_samples)
