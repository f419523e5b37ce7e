"""Config: the example file documents every key; bad keys and values are one clear line; flag overrides."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO, assert_user_error, run_cli

from edge_ser.cli import listen_overrides, parse_host_port
from edge_ser.config import load_settings
from edge_ser.errors import ConfigError, UserError
from edge_ser.settings import Settings

EXAMPLE = REPO / "systemd" / "config.example.yaml"


def dotted_keys(obj, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += dotted_keys(value, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def test_example_config_documents_every_key_with_its_default() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    lines = EXAMPLE.read_text().splitlines()
    for key in dotted_keys(Settings()):
        node = data
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} missing from {EXAMPLE.name}"
            node = node[part]
        leaf = key.split(".")[-1]
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{leaf}:"))
        assert lines[i - 1].strip().startswith("#"), f"{key} has no comment above it"
    assert load_settings(EXAMPLE) == Settings()


@pytest.mark.parametrize("text, fragment", [
    ("gate:\n  rms_treshold: 0.02\n", "unknown config key gate.rms_treshold"),
    ("window:\n  hop_s: fast\n", "window.hop_s must be float"),
    ("window:\n  hop_s: -1\n", "window.hop_s must be > 0"),
    ("gate:\n  rms_threshold: 3\n", "gate.rms_threshold must be between"),
    ("gate:\n  vad: webrtc\n", "gate.vad must be one of"),
    ("mqtt:\n  topic_prefix: home/#\n", "mqtt.topic_prefix must not contain MQTT wildcards"),
    ("- just\n- a list\n", "must be a mapping"),
    ("gate: [\n", "not valid YAML"),
])
def test_bad_config_is_one_error_naming_the_key(tmp_path, text: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_settings(path)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings("/nonexistent/edge-ser.yaml")


def test_cli_bad_config_exits_2_with_one_line(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("audio:\n  devise: 3\n")
    proc = run_cli("listen", "--config", str(path), "--input", "x.wav", timeout=60)
    assert_user_error(proc, "unknown config key audio.devise")


def test_flags_override_the_config(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("site: hall\nmqtt:\n  host: broker\n  port: 1884\noutput:\n  stdout: false\n")
    flags = listen_overrides(device="2", mqtt_addr="10.0.0.5:8883", to_stdout=True, model_id="m",
                             input_path="a.wav", realtime=True, site="kitchen", log_level="debug")
    s = load_settings(path, flags)
    assert s.audio.device == 2 and s.audio.input == "a.wav" and s.audio.realtime
    assert (s.mqtt.host, s.mqtt.port) == ("10.0.0.5", 8883)
    assert s.output.stdout is True and s.model.id == "m" and s.site == "kitchen"
    assert s.output.log_level == "DEBUG"
    assert load_settings(path, listen_overrides(device="USB mic")).audio.device == "USB mic"


@pytest.mark.parametrize("addr, want", [
    ("localhost", ("localhost", None)),
    ("broker.lan:1884", ("broker.lan", 1884)),
    ("[::1]:8883", ("::1", 8883)),
    ("[fe80::1]", ("fe80::1", None)),
])
def test_parse_host_port(addr, want) -> None:
    assert parse_host_port(addr) == want


@pytest.mark.parametrize("addr", ["host:port", "host:0", ":1883", "[::1"])
def test_parse_host_port_rejects(addr) -> None:
    with pytest.raises(UserError):
        parse_host_port(addr)
