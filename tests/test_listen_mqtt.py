"""`edge-ser listen` end to end: virtual ALSA mic -> daemon (subprocess) -> real mosquitto -> paho subscriber.

The mic is paced in real time, so the first test takes about as long as the fixture (11 s) plus start-up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from conftest import FIXTURES, SPEECH, assert_user_error, cli_env, run_cli
from mosquitto import Mosquitto, free_port
from virtual_mic import DEVICE, VirtualMic

from edge_ser.labels import EMOTIONS, NEUTRAL

PREFIX = "edge_ser/kitchen"
HA_TOPIC = "homeassistant/sensor/edge_ser_kitchen/emotion/config"
MESSAGE_KEYS = {"ts", "site", "window_start", "window_s", "label", "confidence", "probs", "rms", "gated",
                "model", "latency_ms"}


def write_config(folder: Path, **mqtt) -> Path:
    """A quick test's config: short keepalive and reconnect delays, HA discovery, every window published."""
    cfg = {
        "site": "kitchen",
        "gate": {"neutral_once": False},  # one message per window: gaps would mean lost results
        "output": {"stats_interval_s": 2, "log_level": "INFO"},
        "mqtt": {"keepalive_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "ha_discovery": True,
                 "expire_after_s": 30, **mqtt},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_daemon(tmp_path: Path, mic: VirtualMic, broker: Mosquitto, config: Path) -> subprocess.Popen:
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(
        [sys.executable, "-m", "edge_ser", "listen", "--config", str(config), "--device", DEVICE,
         "--mqtt", f"{broker.host}:{broker.port}"],
        env=mic.env(cli_env()), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )


def daemon_log(tmp_path: Path) -> str:
    return (tmp_path / "daemon.log").read_text(errors="replace")[-4000:]


def wait_until(predicate, timeout_s: float, what: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; log:\n{daemon_log(tmp_path)}"
        time.sleep(0.05)


def parse_ts(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def test_listen_to_mqtt_labels_broker_restart_sigterm(tmp_path: Path) -> None:
    speech, rate = sf.read(SPEECH, dtype="float32")
    with Mosquitto(tmp_path) as broker, \
            broker.subscriber("#", client_id="listen-test", clean=False) as sub, \
            VirtualMic(tmp_path, audio=speech, rate=rate) as mic:
        proc = start_daemon(tmp_path, mic, broker, write_config(tmp_path))
        try:
            sub.wait_for(f"{PREFIX}/status", payload=b"online", timeout_s=60)
            config = json.loads(sub.wait_for(HA_TOPIC)[0].payload)
            assert config["state_topic"] == f"{PREFIX}/emotion"
            assert config["availability_topic"] == f"{PREFIX}/status"

            def results() -> list[dict]:
                return [json.loads(m.payload) for m in sub.on(f"{PREFIX}/emotion")]

            # Bounce the broker once the first speech window is out: the angry part is still playing,
            # the windows of the next ~2.5 s have to wait in the daemon's queue.
            wait_until(lambda: any(r["label"] != NEUTRAL for r in results()), 60, "a speech result", tmp_path)
            broker.stop()
            down, t_down = time.time(), time.monotonic()
            while time.monotonic() - t_down < 2.5:
                assert proc.poll() is None, daemon_log(tmp_path)
                time.sleep(0.1)
            up = time.time()
            broker.start()

            assert mic.wait_played(timeout=60), daemon_log(tmp_path)

            # The mic plays silence after the speech: wait for a neutral window after the sad part.
            def ended() -> bool:
                labels = [r["label"] for r in results()]
                return "sadness" in labels[:-1] and labels[-1] == NEUTRAL

            wait_until(ended, 30, "the windows after the speech", tmp_path)

            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            took = time.monotonic() - t0
        finally:
            proc.kill()
            proc.wait()
        assert rc == 0, daemon_log(tmp_path)
        assert took < 2.0, f"SIGTERM took {took:.2f} s"
        sub.wait_for(f"{PREFIX}/status", payload=b"offline")

    got = results()
    for r in got:
        assert set(r) == MESSAGE_KEYS and r["site"] == "kitchen"
        assert set(r["probs"]) <= {*EMOTIONS, NEUTRAL}
    # QoS 1 is at-least-once: drop duplicates, then every window must be there, in order.
    by_start = {r["window_start"]: r for r in got}
    starts = list(by_start)
    assert starts == sorted(starts)
    assert all(abs(b - a - 1.0) < 1e-6 for a, b in zip(starts, starts[1:], strict=False)), starts
    produced_while_down = [r for r in by_start.values() if down < parse_ts(r["ts"]) < up]
    assert produced_while_down, "no result was produced while the broker was away"

    # The fixture is angry speech, 3 s of faint noise (at least one gated window), sad speech: the
    # runs of speech windows between gated ones are the angry part first and the sad part last.
    runs: list[list[str]] = [[]]
    for r in by_start.values():
        if r["gated"]:
            runs.append([])
        else:
            runs[-1].append(r["label"])
    runs = [run for run in runs if run]
    assert len(runs) >= 2, runs
    assert Counter(runs[0]).most_common(1)[0][0] == "anger_disgust", runs
    assert Counter(runs[-1]).most_common(1)[0][0] == "sadness", runs

    stats = [json.loads(m.payload) for m in sub.on(f"{PREFIX}/stats")]
    assert stats and {"windows", "dropped", "mqtt_published", "mqtt_queued", "mqtt_dropped"} <= set(stats[-1])

    log = daemon_log(tmp_path)
    assert "lost MQTT broker" in log and "is back" in log and "Traceback" not in log


def test_listen_last_will_after_kill_9(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker, broker.subscriber(f"{PREFIX}/status") as sub, \
            VirtualMic(tmp_path) as mic:
        proc = start_daemon(tmp_path, mic, broker, write_config(tmp_path))
        try:
            sub.wait_for(f"{PREFIX}/status", payload=b"online", timeout_s=60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.kill()
            proc.wait()
        sub.wait_for(f"{PREFIX}/status", payload=b"offline")
        with broker.subscriber(f"{PREFIX}/status") as late:
            (status,) = late.wait_for(f"{PREFIX}/status")
            assert status.payload == b"offline" and status.retain


def test_listen_unreachable_broker_at_start_exits_2() -> None:
    port = free_port()
    proc = run_cli("listen", "--input", str(FIXTURES / "silence.wav"), "--mqtt", f"127.0.0.1:{port}")
    assert_user_error(proc, f"MQTT broker 127.0.0.1:{port} is unreachable")


@pytest.mark.parametrize("problem", ["wrong_ca", "no_tls"])
def test_listen_tls_misconfigured_broker_exits_2(tmp_path: Path, problem: str) -> None:
    with Mosquitto(tmp_path, tls=True) as broker:
        mqtt = {"tls": True, "ca_file": str(broker.certs.other_ca)} if problem == "wrong_ca" else {}
        config = write_config(tmp_path, **mqtt)
        proc = run_cli("listen", "--config", str(config), "--input", str(FIXTURES / "silence.wav"),
                       "--mqtt", f"{broker.host}:{broker.port}")
    assert_user_error(proc, "MQTT broker", "mqtt.ca_file" if problem == "wrong_ca" else "mqtt.tls")
