"""The streaming pipeline with a fake model: order, gating, neutral once, drops, stop, reload, stats."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import closing
from dataclasses import replace

import numpy as np
import pytest
from conftest import SPEECH, FakeModel, LevelSink

from edge_ser.audio import MODEL_RATE as RATE
from edge_ser.audio.source_file import FileSource
from edge_ser.errors import ConfigError
from edge_ser.labels import NEUTRAL
from edge_ser.message import KEYS
from edge_ser.pipeline import Pipeline
from edge_ser.publish.memory import MemoryPublisher
from edge_ser.settings import GateSettings, OutputSettings, Settings, SmoothingSettings, WindowSettings


class ArraySource:
    """An in-memory source; `live` makes the pipeline drop instead of wait, like a microphone."""

    def __init__(self, x: np.ndarray, rate: int = RATE, live: bool = False, block_s: float = 0.1,
                 on_block=None) -> None:
        self.x, self.rate, self.live = np.asarray(x, np.float32), rate, live
        self.channels = 1
        self.block = int(rate * block_s)
        self.on_block = on_block
        self.closed = False

    def blocks(self, stop=None):
        for n, i in enumerate(range(0, len(self.x), self.block)):
            if stop is not None and stop.is_set():
                return
            if self.on_block:
                self.on_block(n)
            yield self.x[i : i + self.block, None]

    def stats(self):
        return {"overruns": 0, "reopens": 0}

    def close(self):
        self.closed = True


def tone(seconds: float, amp: float) -> np.ndarray:
    """A 220 Hz voice in syllables, 200 ms on and 50 ms off: the gaps tell it from a steady hum, which
    the default gate's noise floor keeps from the model."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (((t % 0.25) < 0.2) * amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def run(x, settings=None, model=None, live=False, **kw):
    """Stream `x`; also returns the pending queue's length seen at each publish (memory stays bounded)."""
    settings = settings or Settings()
    out = MemoryPublisher()
    p = Pipeline(settings, model or FakeModel(), [out], **kw)
    pending: list[int] = []
    publish = out.publish
    out.publish = lambda m: (pending.append(len(p._pending)), publish(m))
    p.run(ArraySource(x, live=live))
    out.max_pending = max(pending, default=0)
    return p, out


def test_floor_gate_follows_the_room_and_publishes_its_threshold() -> None:
    fan = np.random.default_rng(0).normal(0.0, 0.01, 12 * RATE).astype(np.float32)
    x = fan.copy()
    x[6 * RATE:] += tone(6, 0.1)  # someone speaks over the fan for the last 6 s
    settings = Settings(gate=GateSettings(rms_threshold=0.001, floor_margin_db=6.0, neutral_once=False))
    out = LevelSink()
    Pipeline(settings, FakeModel(), [out]).run(ArraySource(x))
    by_start = {m["window_start"]: m for m in out.messages}
    assert all(by_start[s]["gated"] and by_start[s]["label"] == "neutral" for s in (0.0, 1.0, 2.0, 3.0, 4.0))
    assert not any(by_start[s]["gated"] for s in (6.0, 7.0, 8.0, 9.0, 10.0))
    assert {lv["reason"] for lv in out.levels if lv["window_start"] < 5} == {"floor"}
    assert all(0.015 < lv["threshold"] < 0.021 for lv in out.levels)  # 6 dB above the fan, not 0.001
    no_floor = GateSettings(rms_threshold=0.001, floor_margin_db=0.0, neutral_once=False)
    _, plain = run(x, Settings(gate=no_floor))
    assert not any(m["gated"] for m in plain.messages)  # without the floor the fan reaches the model


def test_windows_of_background_talk_are_neutral_after_the_model_has_heard_them() -> None:
    x = tone(6, 0.1)  # loud enough for the level gates: only the foreground score can stop it
    gate = GateSettings(neutral_once=False)
    out = LevelSink()
    p = Pipeline(Settings(gate=gate), FakeModel(foreground=0.2), [out])
    p.run(ArraySource(x))
    assert out.messages and all(m["gated"] and m["label"] == NEUTRAL for m in out.messages)
    assert {lv["reason"] for lv in out.levels} == {"background"}
    assert p.counters.inferred == p.counters.gated == len(out.messages)  # it ran, then was gated
    stats = p.counters.as_stats()
    assert stats["gated_after_inference"] == len(out.messages)
    assert stats["windows"] == stats["gated"] + stats["inferred"] - stats["gated_after_inference"]
    on, off = Settings(gate=gate), Settings(gate=replace(gate, background_threshold=0.0))
    for model, settings in ((FakeModel(foreground=0.9), on), (FakeModel(foreground=0.2), off),
                            (FakeModel(), on)):  # no foreground head: nothing to gate on
        _, plain = run(x, settings, model=model)
        assert plain.messages and all(m["label"] == "anger_disgust" for m in plain.messages)


def test_speech_fixture_streams_every_window_in_order() -> None:
    out = MemoryPublisher()
    p = Pipeline(Settings(site="kitchen"), FakeModel(), [out])
    with closing(FileSource(SPEECH)) as source:
        stats = p.run(source)
    starts = [m["window_start"] for m in out.messages]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert all(tuple(m) == KEYS for m in out.messages)
    assert {m["site"] for m in out.messages} == {"kitchen"}
    assert stats["dropped"] == 0 and stats["errors"] == 0
    assert stats["windows"] == stats["gated"] + stats["inferred"]
    gated = [m for m in out.messages if m["gated"]]
    assert len(gated) == 1 and gated[0]["label"] == "neutral" and gated[0]["rms"] < 0.01
    assert out.messages[0]["label"] == "anger_disgust"


def test_neutral_published_once_per_silence_stretch() -> None:
    x = np.concatenate([quiet(4), tone(3, 0.1), quiet(4)])
    _, out = run(x)
    labels = [m["label"] for m in out.messages]
    assert labels.count("neutral") == 2
    assert labels[0] == "neutral" and labels[-1] == "neutral"
    assert all(not m["gated"] for m in out.messages[1:-1])


def test_every_silent_window_published_when_neutral_once_is_off() -> None:
    x = quiet(6)
    settings = Settings(gate=GateSettings(neutral_once=False))
    p, out = run(x, settings)
    assert len(out.messages) == p.counters.windows == 5
    assert all(m["label"] == "neutral" and m["gated"] for m in out.messages)
    assert p.counters.inferred == 0


def test_silence_never_reaches_the_model() -> None:
    model = FakeModel()
    p, _ = run(quiet(10), model=model)
    assert model.calls == 0 and p.counters.gated == p.counters.windows > 0


def test_smoothing_runs_over_speech_windows() -> None:
    x = np.concatenate([tone(3, 0.1), tone(3, 0.02)])  # anger_disgust then sadness in the fake model
    settings = Settings(smoothing=SmoothingSettings(method="ema", alpha=0.5),
                        gate=GateSettings(rms_threshold=0.001))
    _, out = run(x, settings)
    sad = [m["probs"]["sadness"] for m in out.messages]
    assert sad[0] == pytest.approx(0.1) and 0.1 < sad[-2] < 0.7


def test_live_source_drops_oldest_and_memory_stays_bounded() -> None:
    model = FakeModel(delay_s=0.02)
    settings = Settings(window=WindowSettings(max_pending=3))
    p, out = run(tone(60, 0.1), settings, model, live=True)
    c = p.counters
    assert c.dropped > 0
    assert c.windows + c.dropped == 59
    assert out.max_pending <= 3
    # The newest windows survive: the last one published is the stream's last window.
    assert out.messages[-1]["window_start"] == 58.0


def test_file_source_waits_instead_of_dropping() -> None:
    model = FakeModel(delay_s=0.005)
    p, out = run(tone(20, 0.1), Settings(window=WindowSettings(max_pending=2)), model, live=False)
    assert p.counters.dropped == 0 and len(out.messages) == 19


def test_stop_returns_promptly_and_leaves_the_source_to_its_owner() -> None:
    settings = Settings()
    out = MemoryPublisher()
    p = Pipeline(settings, FakeModel(delay_s=0.01), [out])
    src = ArraySource(tone(120, 0.1), on_block=lambda n: p.stop() if n == 50 else None)
    done = threading.Event()
    threading.Thread(target=lambda: (p.run(src), done.set()), daemon=True).start()
    assert done.wait(10)
    assert not src.closed and len(out.messages) < 20


def test_model_and_publisher_errors_do_not_stop_the_stream() -> None:
    class Flaky(FakeModel):
        def predict(self, window):
            if self.calls == 1:
                self.calls += 1
                raise RuntimeError("boom")
            return super().predict(window)

    class Broken(MemoryPublisher):
        def publish(self, m):
            raise OSError("gone")

    good = MemoryPublisher()
    p = Pipeline(Settings(), Flaky(), [Broken(), good])
    p.run(ArraySource(tone(6, 0.1)))
    assert p.counters.windows == 5 and len(good.messages) == p.counters.windows - 1
    # the model failed once; the broken publisher failed on every result the others got
    assert p.counters.errors == 1 + len(good.messages)


def test_periodic_stats_reach_the_publishers() -> None:
    settings = Settings(output=OutputSettings(stats_interval_s=0.01))
    out = MemoryPublisher()
    p = Pipeline(settings, FakeModel(delay_s=0.02), [out])
    p.run(ArraySource(tone(10, 0.1)))
    assert out.stats_messages
    s = out.stats_messages[-1]
    for key in ("windows", "gated", "inferred", "dropped", "published", "overruns", "memory_published"):
        assert key in s


def test_reload_error_keeps_running_with_the_old_config() -> None:
    def bad():
        raise ConfigError("unknown config key gate.foo")

    out = MemoryPublisher()
    p = Pipeline(Settings(), FakeModel(), [out], reloader=bad)
    before = p.settings
    p.run(ArraySource(tone(6, 0.1), on_block=lambda n: p.request_reload() if n == 10 else None))
    assert p.settings is before
    assert len(out.messages) == 5


def test_reload_applies_gate_and_window_changes() -> None:
    new = Settings(gate=GateSettings(rms_threshold=0.5, neutral_once=False), window=WindowSettings(hop_s=0.5))
    out = MemoryPublisher()
    p = Pipeline(Settings(), FakeModel(), [out], reloader=lambda: new)

    def on_block(n: int) -> None:
        if n == 40:  # once the windows cut so far went through the old gate
            while p.counters.windows < 3:
                time.sleep(0.01)
            p.request_reload()

    p.run(ArraySource(tone(10, 0.1), on_block=on_block))
    assert p.settings.gate.rms_threshold == 0.5
    before = [m for m in out.messages if not m["gated"]]
    after = [m for m in out.messages if m["gated"]]
    assert before and after
    assert all(a["window_start"] > b["window_start"] for a in after for b in before)
    # window positions continue across the reload, now every 0.5 s
    starts = [m["window_start"] for m in after]
    assert np.allclose(np.diff(starts), 0.5)


def test_reload_ignores_audio_changes_but_applies_the_rest() -> None:
    base = Settings()
    new = replace(base, audio=replace(base.audio, block_s=0.5), smoothing=SmoothingSettings(method="ema"))
    p = Pipeline(base, FakeModel(), [MemoryPublisher()], reloader=lambda: new)
    p.run(ArraySource(tone(3, 0.1), on_block=lambda n: p.request_reload() if n == 1 else None))
    assert p.settings.audio == base.audio and p.settings.smoothing.method == "ema"


def test_ready_and_watchdog_sent_while_audio_flows(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    run(tone(3, 0.1))
    got = [sock.recv(1000).decode() for _ in range(2)]
    sock.close()
    assert got[0].startswith("READY=1") and got[1] == "WATCHDOG=1"


def test_audio_touches_the_disk_only_with_record_dir(tmp_path) -> None:
    x = np.concatenate([quiet(3), tone(3, 0.1)])
    run(x)
    assert not any(tmp_path.iterdir())
    base = Settings()
    folder = tmp_path / "rec"
    p, out = run(x, replace(base, audio=replace(base.audio, record_dir=str(folder))))
    files = sorted(folder.glob("*.wav"))
    assert len(files) == sum(not m["gated"] for m in out.messages) > 0


def test_stdout_reader_gone_stops_a_live_stream() -> None:
    import io

    from edge_ser.publish.stdout import StdoutPublisher

    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError

    pub = StdoutPublisher(Closed())
    p = Pipeline(Settings(), FakeModel(), [pub])
    pub.on_closed = p.stop
    p.run(ArraySource(tone(600, 0.1), live=True))
    assert pub.stats()["failed"] >= 1 and p.counters.audio_s < 600


def test_a_hung_model_stops_the_watchdog_pets(tmp_path, monkeypatch) -> None:
    import edge_ser.pipeline as pl

    pets: list[float] = []
    monkeypatch.setattr(pl.notify, "watchdog", lambda: pets.append(time.monotonic()))
    monkeypatch.setattr(pl, "WORKER_STUCK_S", 0.3)
    entered, release = threading.Event(), threading.Event()

    class Hung(FakeModel):
        def predict(self, window):
            entered.set()
            release.wait(10)
            return super().predict(window)

    p = Pipeline(Settings(), Hung(), [MemoryPublisher()])
    marks: dict[str, int] = {}

    def on_block(n: int) -> None:
        if n == 25:  # the first window (20 blocks) is in the model by now, which hangs
            assert entered.wait(10)
            time.sleep(0.5)  # longer than WORKER_STUCK_S
            marks["hung"] = len(pets)
        elif 25 < n <= 40:
            time.sleep(0.1)  # 1.5 s of reading while the model hangs: pets would be due
        elif n == 41:
            marks["later"] = len(pets)
            release.set()

    p.run(ArraySource(tone(6, 0.1), live=True, on_block=on_block))
    assert marks["hung"] >= 1  # petted while the worker was answering
    assert marks["later"] == marks["hung"]  # none while it hung


def test_the_gate_handed_in_is_used_and_kept_by_a_reload_that_leaves_it_alone() -> None:
    from edge_ser.gate import Gate

    gate = Gate(GateSettings(), None)
    base = Settings()
    new = replace(base, smoothing=SmoothingSettings(method="ema"))
    p = Pipeline(base, FakeModel(), [MemoryPublisher()], gate=gate, reloader=lambda: new)
    p.run(ArraySource(tone(3, 0.1), on_block=lambda n: p.request_reload() if n == 1 else None))
    assert p.settings.smoothing.method == "ema" and p.gate is gate
    changed = replace(base, gate=GateSettings(rms_threshold=0.5))
    p = Pipeline(base, FakeModel(), [MemoryPublisher()], gate=gate, reloader=lambda: changed)
    p.run(ArraySource(tone(3, 0.1), on_block=lambda n: p.request_reload() if n == 1 else None))
    assert p.gate is not gate and p.gate.settings.rms_threshold == 0.5


def test_publisher_stats_are_keyed_by_publisher_name_and_failures_counted_per_publisher() -> None:
    class Failing(MemoryPublisher):
        def publish_stats(self, stats):
            raise OSError("gone")

        def stats(self):
            raise OSError("gone")

    good, bad = MemoryPublisher("good"), Failing("bad")
    settings = Settings(output=OutputSettings(stats_interval_s=0.01))
    p = Pipeline(settings, FakeModel(delay_s=0.02), [bad, good])
    stats = p.run(ArraySource(tone(4, 0.1)))
    assert stats["good_published"] == len(good.messages) == 3
    assert not any(k.startswith("bad_") for k in stats)
    assert good.stats_messages and stats["errors"] == 0  # stats failures are logged, not window errors
