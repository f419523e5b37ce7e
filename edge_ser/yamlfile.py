"""Read a small YAML file from an untrusted place, and show bad values briefly.

A config or manifest may come from anyone who can edit a file the daemon reads, and SIGHUP makes the
running daemon read it again: parsing must stay small in time and memory, and every failure must be
one line naming the file.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, UserError
from .textfile import read_capped_text

MAX_CONFIG_BYTES = 64 * 1024
"""Largest config file read (the documented example is about 5 KB); a bigger one is refused unread."""

EXCERPT_CHARS = 60
"""Longest excerpt of a bad value an error message shows."""


class _AliasFound(Exception):
    """Raised by the loader at the first alias."""


class _TooDeep(Exception):
    """Raised by the loader beyond MAX_NESTING levels."""


MAX_NESTING = 100
"""Deepest nesting the pure-Python loader composes (a config has 3 levels; libyaml stops at 1000)."""


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without aliases (a few hundred bytes of nested aliases expand to gigabytes) and
    without deep nesting (each level is a few Python frames: hitting the recursion limit is slow)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _AliasFound(f"has a YAML alias (*name) on line {mark.line + 1}; aliases are not allowed")
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))
"""PyYAML's C parser is ten times faster than the pure-Python one and caps nesting at 1000 levels."""


def _load(text: str) -> Any:
    """safe_load that refuses aliases, with the C parser when PyYAML has it."""
    if not LIBYAML:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    # The C composer cannot be subclassed: one cheap pass over the events finds an alias first.
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _AliasFound(f"has a YAML alias (*name) on line {event.start_mark.line + 1}; "
                              "aliases are not allowed")
    return yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 - the C SafeLoader


def read_yaml(path: str | Path, what: str = "config", max_bytes: int = MAX_CONFIG_BYTES,
              error: type[UserError] = ConfigError) -> Any:
    """Parse a small UTF-8 YAML file without aliases; every failure is one `error` line naming `what`."""
    text = read_capped_text(path, what, max_bytes, error)
    try:
        return _load(text)
    except _AliasFound as e:
        raise error(f"{what} {path} {e}") from None
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        where = f" (line {mark.line + 1}{': ' + clip(problem) if problem else ''})" if mark else ""
        raise error(f"{what} {path} is not valid YAML{where}") from None
    except (_TooDeep, RecursionError):
        raise error(f"{what} {path} is nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal longer than Python converts (4300 digits)
        raise error(f"{what} {path} has a value that cannot be read ({clip(str(e))})") from None


def excerpt(value: Any) -> str:
    """A short repr of a (possibly huge) value for an error message."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__} too large to show>"
    return clip(text)


def clip(text: str) -> str:
    """`text` on one line (control characters escaped) and cut to EXCERPT_CHARS."""
    text = text[: EXCERPT_CHARS * 4]
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = EXCERPT_CHARS
_REPR.maxlevel = 3
