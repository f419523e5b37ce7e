"""Property-based net under the config loader: random trees, edge numbers, aliases and encodings give
Settings within their ranges or one ConfigError line, never another exception.

Bounded here (a few seconds); scripts/fuzz_config.py runs the same properties longer and through the
CLI (bench/results/fuzz_config.txt).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from config_fuzz import FIELDS, check_loader, config_texts, config_trees, numbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_ser.errors import ConfigError
from edge_ser.settings import Settings

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_FOLDER = Path(tempfile.mkdtemp(prefix="edge-ser-fuzz-"))
"""One folder for every example (a pytest tmp_path is per test, not per example)."""


@FAST
@given(config_texts())
def test_any_config_bytes_load_or_fail_with_one_line(data: bytes) -> None:
    check_loader(data, _FOLDER)


@FAST
@given(config_trees())
def test_random_trees(tree: dict) -> None:
    check_loader(yaml.safe_dump(tree, allow_unicode=True).encode(), _FOLDER)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([(s, k) for s, keys in FIELDS.items() for k in keys]), numbers)
def test_numbers_at_the_edges_of_every_setting(key: tuple[str, str], value: float) -> None:
    section, name = key
    got = check_loader(f"{section}:\n  {name}: {yaml.safe_dump(value).splitlines()[0]}\n".encode(),
                       _FOLDER)
    if isinstance(got, Settings):
        assert getattr(getattr(got, section), name) == value or value != value


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=4))
def test_aliases_are_always_refused(value: list[int]) -> None:
    text = yaml.safe_dump({"model": {"search_path": value, "id": None}, "site": "x"})
    text = text.replace("search_path:", "search_path: &p", 1) + "gate:\n  vad: *p\n"
    got = check_loader(text.encode(), _FOLDER)
    assert isinstance(got, ConfigError) and "alias" in str(got)
