"""Hypothesis strategies for hostile config files, and the loader's invariant.

Used by tests/test_config_fuzz.py (a few hundred examples, in-process) and scripts/fuzz_config.py
(a longer run that also drives the CLI).

The invariant: `load_settings` returns Settings whose every number lies in its declared finite range
(and the pipeline can build its windower and smoother from them), or raises ConfigError with one
short line. Nothing else, whatever the bytes.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import yaml
from hypothesis import strategies as st

from edge_ser.config import load_settings
from edge_ser.errors import ConfigError
from edge_ser.pipeline import Pipeline
from edge_ser.settings import Settings
from edge_ser.smoothing import Smoother

MAX_MESSAGE = 400
"""Longest error line allowed (the config path is part of it)."""

SECTIONS = {f.name: f.type for f in dataclasses.fields(Settings)}
HINTS = typing.get_type_hints(Settings)
FIELDS = {name: [f.name for f in dataclasses.fields(HINTS[name])] for name in SECTIONS
          if dataclasses.is_dataclass(HINTS[name])}
"""Field names per section (audio, window, ...)."""

PATH_KEYS = {"audio": {"input", "record_dir"}, "model": {"manifest", "search_path", "adapt_state"},
             "mqtt": {"host", "password_file", "ca_file", "cert_file", "key_file"}}
"""Keys a CLI run must not get random values for: they would write files or reach the network."""


def _edges() -> list[float]:
    """Each declared range limit, and a hair beyond it on both sides."""
    out: list[float] = []
    for cls in (HINTS[name] for name in FIELDS):
        for f in dataclasses.fields(cls):
            lo, hi = f.metadata.get("range", (None, None))
            for edge in (lo, hi):
                if edge is not None:
                    out += [edge, edge * (1 + 1e-9) + 1e-12, edge * (1 - 1e-9) - 1e-12]
    return sorted(set(out))


numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_edges()),
    st.sampled_from([0, -0.0, 1e-300, 5e-324, 1e308, 2**63, -(2**63), 100000, 10**9]),
)
leaf = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30),
                 st.lists(st.one_of(st.text(max_size=10), numbers), max_size=4))


def typed_value(section: str, key: str, inside: bool = False) -> st.SearchStrategy:
    """A value of the field's own type, near or inside its range: these configs mostly load, so the
    CLI runs reach the pipeline, not only the error paths."""
    f = next(f for f in dataclasses.fields(HINTS[section]) if f.name == key)
    tp = typing.get_type_hints(HINTS[section])[key]
    if typing.get_origin(tp) is tuple:
        return st.lists(st.text(max_size=20), max_size=3)
    args = set(typing.get_args(tp)) or {tp}
    options: list[st.SearchStrategy] = [st.none()] if type(None) in args else []
    if "choices" in f.metadata:
        options.append(st.sampled_from(f.metadata["choices"]))
    elif "range" in f.metadata:
        lo, hi = f.metadata["range"]
        if float in args:
            options.append(st.floats(lo, hi))
        if int in args:
            options.append(st.integers(int(lo), int(min(hi, 2**31))))
        if not inside:
            options.append(st.sampled_from(_edges()))
    elif bool in args:
        options.append(st.booleans())
    elif str in args:
        options.append(st.text(max_size=20))
    return st.one_of(*options) if options else leaf


@st.composite
def config_trees(draw: st.DrawFn, safe_paths: bool = False, valid: bool = False) -> dict:
    """A mapping of known sections (sometimes an unknown one) to mostly known keys with wild values;
    `valid`: known keys with values of their type inside their range (these mostly load)."""
    tree: dict = {}
    known_only = valid or draw(st.booleans())  # half the trees use known keys only
    for name in draw(st.lists(st.sampled_from([*FIELDS, "site", "bogus"]), max_size=4, unique=True)):
        if known_only and name == "bogus":
            continue
        if name == "site":
            tree[name] = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=12)
                              if valid else leaf)
            continue
        keys = FIELDS.get(name, ["x"])
        if safe_paths:
            keys = [k for k in keys if k not in PATH_KEYS.get(name, ())]
        names = st.sampled_from(keys)
        if not known_only:
            names = st.one_of(names, st.text(max_size=12))
        if known_only:
            chosen = draw(st.lists(st.sampled_from(keys), max_size=5, unique=True))
            typed = [typed_value(name, k, inside=True) if valid
                     else st.one_of(typed_value(name, k), typed_value(name, k), leaf) for k in chosen]
            value = {k: draw(strategy) for k, strategy in zip(chosen, typed, strict=True)}
        else:
            value = draw(st.one_of(leaf, st.dictionaries(names, leaf, max_size=5)))
        tree[name] = value
    return tree


@st.composite
def config_texts(draw: st.DrawFn, safe_paths: bool = False) -> bytes:
    """Bytes of a config file: a dumped tree, perhaps with aliases, a raw edge literal, another
    encoding, or plain random bytes."""
    kind = draw(st.sampled_from(["valid", "valid", "tree", "tree", "alias", "literal", "encoding", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    tree = draw(config_trees(safe_paths, valid=kind == "valid"))
    if kind == "alias":
        shared = draw(st.lists(leaf, min_size=1, max_size=3))
        section = draw(st.sampled_from(sorted(FIELDS)))
        tree[section] = {k: shared for k in draw(st.lists(st.sampled_from(FIELDS[section]), min_size=2,
                                                             max_size=3, unique=True))}
    text = yaml.safe_dump(tree, allow_unicode=True) if tree else ""
    if kind == "literal":
        section = draw(st.sampled_from(sorted(FIELDS)))
        key = draw(st.sampled_from(FIELDS[section]))
        literal = draw(st.sampled_from([".nan", ".inf", "-.inf", "1e999", "9" * 5000, "0x" + "f" * 40,
                                        "2026-13-45", "!!binary AAAA", "!!python/object:os.system {}",
                                        "&a [1]", "*nothere", "'" + "x" * 70000 + "'", "[" * 3000]))
        text = f"{section}:\n  {key}: {literal}\n"
    data = text.encode("utf-8")
    if kind == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig"]))
        data = text.encode(encoding, errors="replace")
    return data


def check_loader(data: bytes, folder: Path) -> Settings | ConfigError:
    """Load `data` as a config file; assert the invariant; return what the loader gave."""
    path = folder / "fuzz.yaml"
    path.write_bytes(data)
    try:
        settings = load_settings(path)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message and len(message) <= MAX_MESSAGE, message[:1000]
        return e
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Every number within its declared finite range; the pipeline's windower and smoother build."""
    for section in FIELDS:
        obj = getattr(settings, section)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if "range" in f.metadata and isinstance(value, (int, float)) and not isinstance(value, bool):
                lo, hi = f.metadata["range"]
                assert math.isfinite(value) and lo <= value <= hi, (section, f.name, value)
    Pipeline._make_windower(settings)
    Smoother(settings.smoothing)
