"""Hand every message to every publisher; one failing publisher never stops the others or the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from .base import LevelPublisher, Publisher

log = logging.getLogger(__name__)


class Fanout:
    """The publishers of one pipeline. Each call returns how many publishers failed (logged)."""

    def __init__(self, publishers: Iterable[Publisher]) -> None:
        self.publishers: list[Publisher] = list(publishers)
        self.level_publishers: list[LevelPublisher] = [
            p for p in self.publishers if isinstance(p, LevelPublisher)
        ]

    def publish(self, message: dict[str, Any]) -> int:
        """One result message to every publisher."""
        return _each(self.publishers, lambda p: p.publish(message), "a result")

    def publish_level(self, level: dict[str, Any]) -> int:
        """One window's level to the publishers that show levels."""
        return _each(self.level_publishers, lambda p: p.publish_level(level), "a level")

    def publish_stats(self, stats: dict[str, Any]) -> int:
        """One periodic stats message to every publisher."""
        return _each(self.publishers, lambda p: p.publish_stats(stats), "stats")

    def stats(self) -> dict[str, Any]:
        """Every publisher's counters as <name>_<counter>; a publisher whose stats fail is left out."""
        out: dict[str, Any] = {}
        for p in self.publishers:
            try:
                out.update({f"{p.name}_{k}": v for k, v in p.stats().items()})
            except Exception:  # noqa: BLE001 - counters are informative; the others still count
                log.debug("publisher %s has no stats now", p.name, exc_info=True)
        return out

    def close(self) -> int:
        """Close every publisher (each gets its chance even when one fails)."""
        return _each(self.publishers, lambda p: p.close(), "closing")


def _each(publishers: Iterable[Publisher], call: Callable[[Any], None], what: str) -> int:
    failed = 0
    for p in publishers:
        try:
            call(p)
        except Exception:  # noqa: BLE001 - a publisher must not take the pipeline down
            failed += 1
            log.exception("publisher %s failed on %s", p.name, what)
    return failed
