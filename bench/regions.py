"""Marked regions of Markdown files that `python -m bench.tables` writes from bench/results.

A region is everything between `<!-- bench.tables:NAME -->` and `<!-- /bench.tables:NAME -->`.
When the opening marker ends its line the region is a block (the generated text gets lines of its
own); otherwise it is inline, inside a sentence. Text outside the markers is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PREFIX = "bench.tables"
_REGION = re.compile(r"<!-- bench\.tables:(?P<name>[\w.-]+) -->(?P<body>.*?)"
                     r"<!-- /bench\.tables:(?P=name) -->", re.S)
_OPEN = re.compile(r"<!-- bench\.tables:([\w.-]+) -->")
_CLOSE = re.compile(r"<!-- /bench\.tables:([\w.-]+) -->")


class RegionError(ValueError):
    """A marker without its partner, or a region name no generator knows."""


def names(text: str) -> list[str]:
    """Names of the regions of `text`, in order; raises RegionError on unbalanced markers."""
    found = [m.group("name") for m in _REGION.finditer(text)]
    opened, closed = _OPEN.findall(text), _CLOSE.findall(text)
    if sorted(opened) != sorted(found) or sorted(closed) != sorted(found):
        bad = sorted(set(opened) ^ set(closed) | {n for n in opened if opened.count(n) != found.count(n)})
        raise RegionError(f"unbalanced {PREFIX} markers: {', '.join(bad) or 'nested or out of order'}")
    return found


def bodies(text: str) -> list[tuple[str, str]]:
    """(name, current body) of every region of `text`, in order."""
    names(text)
    return [(m.group("name"), m.group("body")) for m in _REGION.finditer(text)]


def fill(text: str, generate: Callable[[str], str]) -> str:
    """`text` with every region's body replaced by generate(name)."""
    names(text)

    def body(m: re.Match[str]) -> str:
        name, old = m.group("name"), m.group("body")
        new = generate(name).strip("\n")
        inner = f"\n{new}\n" if old.startswith("\n") else new.strip()
        return f"<!-- {PREFIX}:{name} -->{inner}<!-- /{PREFIX}:{name} -->"

    return _REGION.sub(body, text)


def outside(text: str) -> str:
    """`text` without the regions' bodies (markers kept): the hand-written prose."""
    names(text)
    return _REGION.sub(lambda m: f"<!-- {PREFIX}:{m.group('name')} --><!-- /{PREFIX}:{m.group('name')} -->",
                       text)
