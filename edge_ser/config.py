"""Load YAML into the frozen dataclasses of settings.py, naming the key of any bad value."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import MQTT_WILDCARDS, Settings
from .yamlfile import clip, excerpt, read_yaml


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a YAML file (or nothing) and apply dotted-key overrides such as {"mqtt.host": "x"}."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(path)
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
            raise ConfigError(f"unknown config key {clip(dotted)} (known here: {known})")
        kwargs[key] = _convert(hints[key], value, dotted)
    obj = cls(**kwargs)
    for name, f in fields.items():
        _check(f"{prefix}{name}", getattr(obj, name), f.metadata)
    problem = getattr(obj, "problem", None)
    why = problem() if problem is not None else None
    if why:
        raise ConfigError(f"config keys {why}")
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
        raise ConfigError(f"config key {key} must be {want}, got {_kind(value)} {excerpt(value)}")
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
    raise ConfigError(f"config key {key} must be {_name(tp)}, got {_kind(value)} {excerpt(value)}")


def _check(key: str, value: Any, rules: Any) -> None:
    """Apply the rules a settings field declares in its metadata (range, choices, forbid)."""
    if value is None or dataclasses.is_dataclass(value):
        return
    choices = rules.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"config key {key} must be one of {', '.join(choices)}, got {excerpt(value)}")
    if "range" in rules and isinstance(value, (int, float)):
        lo, hi = rules["range"]
        # `not lo <= v <= hi` is also true for NaN, so NaN and +-inf never pass
        if not lo <= value <= hi:
            if lo > 0 and not value > 0:
                raise ConfigError(f"config key {key} must be > 0 (from {lo} to {hi}), got {excerpt(value)}")
            raise ConfigError(f"config key {key} must be between {lo} and {hi}, got {excerpt(value)}")
    forbid = rules.get("forbid")
    if forbid:
        refuse_wildcards(key, value, forbid)


def refuse_wildcards(key: str, value: str, forbidden: str = MQTT_WILDCARDS) -> None:
    """ConfigError naming `key` when `value` holds an MQTT wildcard (or another `forbidden` character)."""
    if any(c in value for c in forbidden):
        raise ConfigError(f"config key {key} must not contain MQTT wildcards (+, #), got {excerpt(value)}")


def topic_setting(key: str, value: str) -> str:
    """`value` as a topic prefix (trailing / dropped): non-empty and without wildcards, else ConfigError."""
    refuse_wildcards(key, value)
    topic = value.rstrip("/")
    if not topic:
        raise ConfigError(f"config key {key} must be a non-empty topic, got {excerpt(value)}")
    return topic


def _name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
