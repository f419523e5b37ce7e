"""Load YAML into the frozen dataclasses of settings.py, naming the key of any bad value."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .settings import Settings

CHOICES: dict[str, tuple[str, ...]] = {
    "gate.vad": ("none", "yamnet", "silero"),
    "smoothing.method": ("none", "ema", "majority"),
    "output.log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
"""Keys whose value must be one of a fixed set."""

POSITIVE = {
    "audio.block_s", "audio.queue_blocks", "audio.reopen_min_s", "audio.reopen_max_s",
    "audio.sample_rate", "audio.channels", "window.window_s", "window.hop_s",
    "window.max_pending", "smoothing.n", "model.threads", "mqtt.port", "mqtt.keepalive_s",
    "mqtt.queue_size", "mqtt.reconnect_min_s", "mqtt.reconnect_max_s",
}
"""Numeric keys that must be > 0 (when not null)."""

RANGES: dict[str, tuple[float, float]] = {
    "gate.rms_threshold": (0.0, 1.0),
    "gate.vad_threshold": (0.0, 1.0),
    "smoothing.alpha": (0.0, 1.0),
    "mqtt.qos": (0, 2),
    "mqtt.port": (1, 65535),
    "mqtt.expire_after_s": (0, 10**9),
    "output.stats_interval_s": (0, 10**9),
    "http.port": (1, 65535),
    "http.max_clients": (1, 16),
    "http.queue_size": (8, 4096),
    "http.history": (0, 3600),
}
"""Numeric keys with an inclusive allowed range."""


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a YAML file (or nothing) and apply dotted-key overrides such as {"mqtt.host": "x"}."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"config {path} is not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {p} must be a mapping")
        node[leaf] = value
    return build(Settings, data, "")


def build(cls: type, data: Any, prefix: str) -> Any:
    """Construct dataclass `cls` from a mapping, checking every key and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key {prefix or '<top>'} must be a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {dotted} (known here: {known})")
        kwargs[key] = _convert(hints[key], value, dotted)
    obj = cls(**kwargs)
    for name in fields:
        _check(f"{prefix}{name}", getattr(obj, name))
    return obj


def _convert(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, key + ".")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        want = " or ".join(_name(a) for a in args)
        raise ConfigError(f"config key {key} must be {want}, got {_kind(value)} {value!r}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key} must be a list, got {_kind(value)}")
        return tuple(_convert(args[0], v, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key} must be {_name(tp)}, got {_kind(value)} {value!r}")


def _check(key: str, value: Any) -> None:
    if value is None or dataclasses.is_dataclass(value):
        return
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"config key {key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if key in POSITIVE and not value > 0:
        raise ConfigError(f"config key {key} must be > 0, got {value!r}")
    if key in RANGES:
        lo, hi = RANGES[key]
        if not lo <= value <= hi:
            raise ConfigError(f"config key {key} must be between {lo} and {hi}, got {value!r}")
    if key == "mqtt.topic_prefix" and any(c in value for c in "+#\0") or key == "site" and any(
        c in value for c in "+#/\0"
    ):
        raise ConfigError(f"config key {key} must not contain MQTT wildcards (+, #), got {value!r}")


def _name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
