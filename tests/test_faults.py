"""Faults a months-long daemon meets, injected into the real thing: `edge-ser listen` on the
virtual ALSA microphone (tests/virtual_mic.py), a real mosquitto (tests/mosquitto.py), and a socket
standing in for systemd's NOTIFY_SOCKET (Type=notify readiness and the watchdog of
systemd/edge-ser.service).

Covered elsewhere, not repeated here: a broker stopped and restarted mid-stream delivers the results
produced meanwhile (tests/test_listen_mqtt.py, and for an hour with four bounces bench/soak.py);
SIGTERM over MQTT within 2 s (tests/test_listen_mqtt.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import SPEECH, FakeModel, cli_env
from mosquitto import Mosquitto
from virtual_mic import VirtualMic

from edge_ser.config import load_settings
from edge_ser.pipeline import Pipeline
from edge_ser.publish.memory import MemoryPublisher

SITE = "faults"
PREFIX = f"edge_ser/{SITE}"


class NotifySocket:
    """What systemd does with NOTIFY_SOCKET: receive READY=1 / WATCHDOG=1 / STOPPING=1 datagrams."""

    def __init__(self) -> None:
        self.address = f"@edge-ser-test-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in list(self.messages) if m.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    """`edge-ser listen` in a subprocess; stdout lines and stderr lines collected with arrival times."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_ser", "listen", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[tuple[float, dict]] = []
        self.err: list[tuple[float, str]] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, json.loads), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, str.rstrip), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, into, parse) -> None:
        for line in stream:
            into.append((time.monotonic(), parse(line)))

    def wait_results(self, n: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.out) < n and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        assert len(self.out) >= n, f"{len(self.out)}/{n} results; stderr:\n{self.stderr()}"
        return [m for _, m in self.out]

    def wait_log(self, text: str, timeout: float = 30, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.err):
                if t >= after and text in line:
                    return t
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line with {text!r}; stderr:\n{self.stderr()}")

    def stderr(self) -> str:
        return "\n".join(line for _, line in self.err)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> float:
        """Send `sig`, wait for the exit; seconds it took."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(5)
        return time.monotonic() - t0


def speech() -> tuple[np.ndarray, int]:
    x, rate = sf.read(SPEECH, dtype="float32")
    return x, rate


class UnpluggableMic(VirtualMic):
    """The virtual mic, looping its audio, that can be unplugged and plugged back.

    unplug(): the device stops delivering and its FIFO disappears (PortAudio can no longer open or
    even list it); release(): the writer lets go of the old FIFO so a stuck read returns (what the
    kernel does to a vanished USB device); replug(): a new FIFO appears and audio flows again.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.present = threading.Event()
        self.present.set()
        self.released = threading.Event()

    def unplug(self) -> None:
        self.released.clear()
        self.present.clear()
        os.unlink(self.fifo)

    def release(self) -> None:
        self.released.set()

    def replug(self) -> None:
        os.mkfifo(self.fifo)
        self.present.set()

    def _run(self) -> None:
        pos = 0
        bytes_per_s = self.device_rate * self.channels * 2
        while not self._stop.is_set():
            if not self.present.wait(0.05):
                continue
            fd = self._open()
            if fd is None:
                return
            t0, sent = time.monotonic(), 0
            try:
                while not self._stop.is_set():
                    if not self.present.is_set():
                        while not (self.released.is_set() or self._stop.is_set()):
                            time.sleep(0.02)
                        break
                    chunk = self._audio[pos : pos + self.chunk_bytes]
                    pos = (pos + len(chunk)) % len(self._audio)
                    os.write(fd, chunk)
                    sent += len(chunk)
                    ahead = sent / bytes_per_s - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            except OSError:
                pass  # the reader closed it (PortAudio enumerating or reopening): reopen
            finally:
                os.close(fd)


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# -- the microphone goes away and comes back ------------------------------------------------------

def test_microphone_unplugged_and_replugged_resumes_without_restart(tmp_path: Path) -> None:
    x, rate = speech()
    notify = NotifySocket()
    with UnpluggableMic(tmp_path, audio=x, rate=rate) as mic:
        cfg = write_config(tmp_path / "config.yaml", {
            "audio": {"device": "fakemic", "reopen_min_s": 0.2, "reopen_max_s": 0.8},
            "gate": {"neutral_once": False},
        })
        daemon = Daemon(["--config", str(cfg)], cli_env(HOME=str(mic.home), NOTIFY_SOCKET=notify.address))
        try:
            daemon.wait_results(2)
            pid = daemon.proc.pid
            mic.unplug()
            t_lost = daemon.wait_log("microphone fakemic lost")
            mic.release()
            daemon.wait_log("microphone not back yet", after=t_lost)
            time.sleep(2.5)  # several retries with backoff while the device is gone
            n_gone = len(daemon.out)
            mic.replug()
            t_back = daemon.wait_log("microphone back", timeout=30)
            daemon.wait_results(n_gone + 2)
            took = daemon.stop(signal.SIGTERM)
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
            notify.close()
    assert daemon.proc.returncode == 0, daemon.stderr()
    assert daemon.proc.pid == pid  # same process: recovered without a restart
    assert "Traceback" not in daemon.stderr()
    retries = [line for _, line in daemon.err if "microphone not back yet" in line]
    assert len(retries) >= 2, daemon.stderr()
    delays = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in retries]
    assert delays[1] > delays[0] and max(delays) <= 0.8  # exponential backoff, capped
    after = [m for t, m in daemon.out if t > t_back]
    assert len(after) >= 2 and all(not m["gated"] for m in after[:2])  # speech again after replug
    assert len(notify.times("READY=1")) == 1
    # systemd's watchdog must not restart a daemon that is deliberately waiting for its mic:
    # pets continue while the reopen loop retries (a hang anywhere stops them).
    pets_gone = [t for t in notify.times("WATCHDOG=1") if t_lost < t < t_back]
    assert len(pets_gone) >= 2, "no watchdog pets while the microphone was away"
    assert notify.times("STOPPING=1")
    print(f"mic away {t_back - t_lost:.1f} s, {len(retries)} retries (delays {delays}), "
          f"{len(pets_gone)} watchdog pets meanwhile, stopped in {took:.2f} s")


# -- inference slower than real time ----------------------------------------------------------------

def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_inference_slower_than_real_time_drops_and_counts_windows(tmp_path: Path, caplog) -> None:
    # The real capture path (PortAudio on the virtual mic, 48 kHz stereo) with a model that needs
    # 0.4 s per window while a window arrives every 0.1 s.
    from edge_ser.audio.source_mic import MicSource

    x, rate = speech()
    model = FakeModel(delay_s=0.4)
    with VirtualMic(tmp_path, audio=x, rate=rate) as mic:
        os.environ["HOME"], home = str(mic.home), os.environ.get("HOME", "")
        source = None
        try:
            settings = load_settings(None, {"audio.device": "fakemic", "window.hop_s": 0.1,
                                            "window.max_pending": 4, "gate.rms_threshold": 0.0})
            source = MicSource(settings.audio)
            pipeline = Pipeline(settings, model, [MemoryPublisher()])
            seen_pending: list[int] = []
            predict = model.predict

            def watched(window: np.ndarray):
                seen_pending.append(len(pipeline._pending))
                return predict(window)

            model.predict = watched
            rss: list[int] = []
            timer = threading.Timer(8.0, pipeline.stop)
            timer.start()
            sampler_stop = threading.Event()

            def sample() -> None:
                while not sampler_stop.wait(0.5):
                    rss.append(rss_kb())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with caplog.at_level("WARNING"):
                stats = pipeline.run(source)
            sampler_stop.set()
            sampler.join()
        finally:
            if source is not None:
                source.close()  # the opener closes the source, not the pipeline
            os.environ["HOME"] = home
    c = pipeline.counters
    produced = round((c.audio_s - settings.window.window_s) / settings.window.hop_s) + 1
    assert c.dropped > 0.5 * produced, (c.dropped, produced)
    assert c.windows + c.dropped + stats["pending"] == pytest.approx(produced, abs=2)
    assert max(seen_pending) <= settings.window.max_pending
    assert stats["overruns"] == 0  # capture never waited for the model
    assert any("slower than real time" in r.message for r in caplog.records)
    # Memory flat: the last RSS samples are within a few MB of the first ones.
    assert max(rss[len(rss) // 2:]) - rss[1] < 8 * 1024, rss
    print(f"{produced} windows: {c.windows} inferred, {c.dropped} dropped, pending max "
          f"{max(seen_pending)}; RSS {rss[1] // 1024}..{max(rss) // 1024} MB")


# -- signals ----------------------------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path) as b:
        yield b


def test_sighup_reload_then_sigint_publishes_offline_and_exits_0(tmp_path: Path, broker: Mosquitto) -> None:
    x, rate = speech()
    notify = NotifySocket()
    good = {"site": SITE, "mqtt": {"host": broker.host, "port": broker.port},
            "audio": {"device": "fakemic"}, "gate": {"neutral_once": False}}
    cfg = write_config(tmp_path / "config.yaml", good)
    with VirtualMic(tmp_path, audio=np.tile(x, 3), rate=rate) as mic, \
            broker.subscriber(f"{PREFIX}/#") as sub:
        daemon = Daemon(["--config", str(cfg)], cli_env(HOME=str(mic.home), NOTIFY_SOCKET=notify.address))
        try:
            sub.wait_for(f"{PREFIX}/status", payload=b"online", timeout_s=60)
            sub.wait_for(f"{PREFIX}/emotion", 1, timeout_s=60)
            # A broken config on SIGHUP: logged, the daemon keeps running with the old one.
            write_config(cfg, {**good, "gate": {"rms_treshold": 0.5}})
            t_hup = time.monotonic()
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log("config reload failed", after=t_hup)
            n = len(sub.on(f"{PREFIX}/emotion"))
            sub.wait_for(f"{PREFIX}/emotion", n + 2, timeout_s=30)
            # A good one is applied.
            write_config(cfg, {**good, "smoothing": {"method": "ema", "alpha": 0.7}})
            t_hup = time.monotonic()
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log("config reloaded", after=t_hup)
            n = len(sub.on(f"{PREFIX}/emotion"))
            sub.wait_for(f"{PREFIX}/emotion", n + 1, timeout_s=30)
            took = daemon.stop(signal.SIGINT)
            sub.wait_for(f"{PREFIX}/status", payload=b"offline", timeout_s=10)
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
            notify.close()
    assert daemon.proc.returncode == 0, daemon.stderr()
    assert took < 2.0, f"SIGINT took {took:.2f} s"
    assert "Traceback" not in daemon.stderr()
    assert notify.times("READY=1") and notify.times("STOPPING=1")
    print(f"stopped {took:.2f} s after SIGINT")


def test_sigkill_leaves_the_last_will_offline(tmp_path: Path, broker: Mosquitto) -> None:
    with broker.subscriber(f"{PREFIX}/status") as sub:
        daemon = Daemon(["--input", str(SPEECH), "--realtime", "--site", SITE,
                         "--mqtt", f"{broker.host}:{broker.port}"], cli_env())
        try:
            sub.wait_for(f"{PREFIX}/status", payload=b"online", timeout_s=60)
            daemon.proc.kill()
            daemon.proc.wait(5)
            (will,) = sub.wait_for(f"{PREFIX}/status", payload=b"offline", timeout_s=10)
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
    assert daemon.proc.returncode == -signal.SIGKILL
    with broker.subscriber(f"{PREFIX}/status") as late:  # retained for whoever subscribes later
        (status,) = late.wait_for(f"{PREFIX}/status")
    assert status.payload == b"offline" and status.retain
