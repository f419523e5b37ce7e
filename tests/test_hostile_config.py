"""Hostile configs and flags: out-of-range numbers, alias bombs, odd encodings, credentials in flags.

Each one is refused with one line (exit 2) at start, and logged and ignored on SIGHUP while the
daemon keeps running; none may cost more than a little memory or a few threads.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
import tracemalloc
import typing
from pathlib import Path

import pytest
from conftest import SPEECH, FakeModel, assert_user_error, cli_env, run_cli
from test_faults import Daemon

from edge_ser.config import load_settings
from edge_ser.errors import ConfigError
from edge_ser.pipeline import Pipeline
from edge_ser.publish.memory import MemoryPublisher
from edge_ser.settings import Settings, WindowSettings
from edge_ser.yamlfile import EXCERPT_CHARS, MAX_CONFIG_BYTES


def alias_bomb(levels: int = 7, fan: int = 9, key: str = "site") -> str:
    """Under one known key, `levels` anchored lists, each of `fan` aliases to the one before: the
    last one has fan**levels leaves. 7 levels print as 24 MB (enough to fail the memory checks below
    without hurting the machine); each further level multiplies that by 9."""
    text = f"{key}:\n- &a0 [" + ",".join(["x"] * fan) + "]\n"
    for i in range(1, levels):
        text += f"- &a{i} [" + ",".join([f"*a{i - 1}"] * fan) + "]\n"
    return text


def numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += numeric_fields(tp, f"{prefix}{f.name}.")
        elif {int, float} & set(typing.get_args(tp) or (tp,)):
            out.append((f"{prefix}{f.name}", f))
    return out


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- ranges -----------------------------------------------------------------------------------------

def test_every_numeric_setting_declares_a_finite_range_that_holds_its_default() -> None:
    fields = numeric_fields(Settings)
    assert len(fields) >= 20
    for key, f in fields:
        lo, hi = f.metadata["range"]
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, key
        if f.default is not None:
            assert lo <= f.default <= hi, key


@pytest.mark.parametrize("text, key", [
    ("window: {hop_s: .inf}", "window.hop_s"),
    ("window: {hop_s: .nan}", "window.hop_s"),
    ("window: {window_s: 0.00001}", "window.window_s"),
    ("window: {window_s: 100000}", "window.window_s"),
    ("window: {max_pending: 1000000}", "window.max_pending"),
    ("model: {threads: 100000}", "model.threads"),
    ("smoothing: {n: 1000000000}", "smoothing.n"),
    ("smoothing: {alpha: -.inf}", "smoothing.alpha"),
    ("mqtt: {queue_size: 100000000}", "mqtt.queue_size"),
    ("mqtt: {keepalive_s: 0}", "mqtt.keepalive_s"),
    ("audio: {queue_blocks: 100000000}", "audio.queue_blocks"),
    ("audio: {block_s: 1000}", "audio.block_s"),
    ("output: {stats_interval_s: .inf}", "output.stats_interval_s"),
])
def test_numbers_out_of_their_range_are_refused(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key {key} must be"):
        load_settings(write(tmp_path, text + "\n"))


def test_the_capture_queue_is_bounded_in_seconds_of_audio(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="audio.queue_blocks x audio.block_s must be at most 60 s"):
        load_settings(write(tmp_path, "audio: {queue_blocks: 1000, block_s: 1}\n"))
    ok = load_settings(write(tmp_path, "audio: {queue_blocks: 600, block_s: 0.1}\n"))
    assert ok.audio.queue_blocks == 600


def test_the_edges_of_a_range_are_accepted(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "window: {window_s: 0.1, hop_s: 30}\nmodel: {threads: 64}\n"))
    assert (s.window.window_s, s.window.hop_s, s.model.threads) == (0.1, 30.0, 64)


@pytest.mark.parametrize("text", ["window: {hop_s: .inf}\n", "window: {window_s: 0.00001}\n"])
def test_bad_window_at_start_is_one_line(tmp_path: Path, text: str) -> None:
    proc = run_cli("listen", "--config", str(write(tmp_path, text)), "--input", str(SPEECH), timeout=60)
    assert_user_error(proc, "window.")


def test_reload_with_a_window_the_windower_refuses_keeps_the_old_one() -> None:
    from test_pipeline import ArraySource, tone

    # Settings built directly skip the config checks: the pipeline must still survive them.
    bad = iter([Settings(window=WindowSettings(hop_s=math.inf)),
                Settings(window=WindowSettings(window_s=1e-5))])
    out = MemoryPublisher()
    p = Pipeline(Settings(), FakeModel(), [out], reloader=lambda: next(bad))
    before = p.settings
    p.run(ArraySource(tone(6, 0.1), on_block=lambda n: p.request_reload() if n in (10, 20) else None))
    assert p.settings is before
    assert len(out.messages) == 5


def test_sighup_with_hostile_configs_is_logged_and_ignored(tmp_path: Path) -> None:
    cfg = write(tmp_path, "site: hup\n")
    daemon = Daemon(["--config", str(cfg), "--input", str(SPEECH), "--realtime", "--stdout"], cli_env())
    try:
        daemon.wait_results(1)
        for text in ("window: {hop_s: .inf}\n", "window: {window_s: 0.00001}\n", alias_bomb(),
                     "model: {threads: 100000}\n"):
            write(tmp_path, text)
            t_hup = time.monotonic()
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log("config reload failed", after=t_hup)
        n = len(daemon.out)
        daemon.wait_results(n + 1)
        daemon.proc.wait(60)
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    assert daemon.proc.returncode == 0, daemon.stderr()
    assert "Traceback" not in daemon.stderr()
    assert all(m["site"] == "hup" for _, m in daemon.out)
    assert max(len(line) for _, line in daemon.err) < 400


# -- YAML and the file itself -----------------------------------------------------------------------

def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = write(tmp_path, alias_bomb())
    assert path.stat().st_size < 400
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="alias") as err:
            load_settings(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"{peak} bytes"
    assert len(str(err.value)) < 200


def test_anchors_without_aliases_still_load(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "site: &s kitchen\n")).site == "kitchen"


def test_a_bad_value_is_shown_as_a_short_excerpt(tmp_path: Path) -> None:
    big = "[" + ", ".join(["[1, 2, 3, 4, 5, 6, 7, 8]"] * 1000) + "]"
    with pytest.raises(ConfigError, match="window.hop_s must be float") as err:
        load_settings(write(tmp_path, f"window: {{hop_s: {big}}}\n"))
    assert len(str(err.value)) < 60 + 2 * EXCERPT_CHARS
    with pytest.raises(ConfigError, match="model.threads must be") as err:
        load_settings(write(tmp_path, "model: {threads: 1" + "0" * 4000 + "}\n"))
    assert len(str(err.value)) < 60 + 2 * EXCERPT_CHARS


@pytest.mark.parametrize("text, fragment", [
    ("model: {threads: " + "9" * 5000 + "}\n", "cannot be read"),
    ("site: " + "[" * 200 + "]" * 200 + "\n", "site must be str"),
    ("site: " + "[" * 30000 + "]" * 30000 + "\n", "nest(ed too deeply|ing depth)"),
    ("site:\n" + "- " * 30000 + "x\n", "nest(ed too deeply|ing depth)"),
    ("site: x\n" + "#" * MAX_CONFIG_BYTES + "\n", "larger than 64 KiB"),
    ("site: 2026-13-45\n", "cannot be read"),
])
def test_huge_or_deep_files_are_one_error(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as err:
        load_settings(write(tmp_path, text))
    assert len(str(err.value)) < 300


def test_the_pure_python_parser_refuses_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_ser.yamlfile

    monkeypatch.setattr(edge_ser.yamlfile, "LIBYAML", False)
    with pytest.raises(ConfigError, match="alias"):
        load_settings(write(tmp_path, alias_bomb()))
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(write(tmp_path, "site: " + "[" * 3000 + "]" * 3000 + "\n"))
    assert load_settings(write(tmp_path, "window: {hop_s: 0.5}\n")).window.hop_s == 0.5


def test_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"site: caf\xe9\n")
    proc = run_cli("listen", "--config", str(path), "--input", str(SPEECH), timeout=60)
    assert_user_error(proc, "not UTF-8", "config.yaml")


# -- flags ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf", "1e308"])
def test_bench_seconds_must_be_a_sane_number(seconds: str) -> None:
    assert_user_error(run_cli("bench", "--seconds", seconds, timeout=60), "--seconds")


def test_bench_threads_are_bounded() -> None:
    assert_user_error(run_cli("bench", "--seconds", "4", "--threads", "100000", timeout=60), "--threads")


@pytest.mark.parametrize("addr", ["user:secret@localhost:1883", "mqtt://user:secret@localhost",
                                  "user:secret@[::1]:1883"])
def test_credentials_in_mqtt_flag_are_refused_and_never_echoed(addr: str) -> None:
    proc = run_cli("listen", "--mqtt", addr, "--input", str(SPEECH), timeout=60)
    assert_user_error(proc, "--mqtt", "credentials")
    assert "secret" not in proc.stderr + proc.stdout


def test_security_md_states_every_declared_range() -> None:
    from conftest import REPO

    from edge_ser.settings import FOREVER_S

    text = (REPO / "SECURITY.md").read_text()
    section = text.split("## Limits on configuration and model files", 1)[1].split("\n## ", 1)[0]
    for key, f in numeric_fields(Settings):
        lo, hi = (("10^9" if x == FOREVER_S else f"{x:g}") for x in f.metadata["range"])
        assert f"| `{key}` | {lo} to {hi} |" in section, key


def test_inference_threads_are_bounded_by_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys

    from edge_ser import model

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert (model.usable_threads(64), model.usable_threads(1)) == (2, 1)
    monkeypatch.undo()
    # A real daemon with the largest accepted value: each runtime (backbone, head) starts its own
    # pool, so without the bound this is 2 x 63 extra threads.
    cores = len(os.sched_getaffinity(0))
    path = write(tmp_path, "model: {threads: 64}\n")
    proc = subprocess.Popen([sys.executable, "-m", "edge_ser", "listen", "--config", str(path), "--input",
                             str(SPEECH)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
    most = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            most = max(most, int(status.split("Threads:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read()
    assert 0 < most <= 2 * cores + 4, (most, cores)


def test_password_file_that_is_not_text_or_too_big_is_one_line(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_ser.publish.mqtt_client import MAX_PASSWORD_FILE_BYTES, read_password
    from edge_ser.settings import PASSWORD_ENV, MqttSettings

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    secret = tmp_path / "pw"
    secret.write_bytes(b"s3cr\xe9t\n")
    with pytest.raises(ConfigError, match="not UTF-8") as err:
        read_password(MqttSettings(host="h", username="u", password_file=str(secret)))
    assert "s3cr" not in str(err.value)
    secret.write_bytes(b"x" * (MAX_PASSWORD_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        read_password(MqttSettings(host="h", username="u", password_file=str(secret)))


@pytest.mark.parametrize("device, fragment", [("5000", "audio.device must be between 0 and 1023"),
                                              ("9" * 5000, None), ("²", None)])
def test_device_flag_numbers(device: str, fragment: str | None) -> None:
    from edge_ser.cli import listen_overrides

    if fragment:
        with pytest.raises(ConfigError, match=fragment):
            load_settings(None, listen_overrides(device=device))
    else:  # not an index: kept as a device name
        assert load_settings(None, listen_overrides(device=device)).audio.device == device
