"""The interface every publisher implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Publisher(Protocol):
    """Takes result messages (message.result_message) and delivers them somewhere.

    `publish` never blocks the pipeline for long and never raises on a transient failure (a broker
    that is away): it queues, counts and retries instead. `close` flushes what it can and, for MQTT,
    publishes `offline` before disconnecting.
    """

    name: str
    """Short name; its counters appear in the pipeline's stats as <name>_<counter> (mqtt_published)."""

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


@runtime_checkable
class LevelPublisher(Publisher, Protocol):
    """A publisher that also shows every window's level and gate decision (the live page)."""

    def publish_level(self, level: dict[str, Any]) -> None:
        """Deliver one window's RMS, gate decision and threshold (silent windows included)."""
        ...
