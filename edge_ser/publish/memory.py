"""A publisher that keeps the messages in memory (classify, the benchmarks, tests)."""

from __future__ import annotations

import threading
from typing import Any


class MemoryPublisher:
    """Keeps every result message (and stats message) it is given; `arrived` is set on each result."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self.stats_messages: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        """Set whenever a result arrives; a waiting reader clears it."""
        self.closed = False

    def publish(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.arrived.set()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        self.stats_messages.append(stats)

    def stats(self) -> dict[str, int]:
        return {"published": len(self.messages)}

    def close(self) -> None:
        self.closed = True
