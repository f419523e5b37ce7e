"""The interface every publisher implements."""

from __future__ import annotations

from typing import Any, Protocol


class Publisher(Protocol):
    """Takes result messages (dicts in the format of DESIGN.md) and delivers them somewhere.

    `publish` never blocks the pipeline for long and never raises on a transient failure (a broker
    that is away): it queues, counts and retries instead. `close` flushes what it can and, for MQTT,
    publishes `offline` before disconnecting.
    """

    def publish(self, message: dict[str, Any]) -> None:
        """Deliver one result message."""
        ...

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Deliver one periodic stats message (windows seen, gated, inferred, dropped, published)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters of this publisher (e.g. published, queued, dropped)."""
        ...

    def close(self) -> None:
        """Flush and disconnect."""
        ...
