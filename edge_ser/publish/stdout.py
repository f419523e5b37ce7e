"""Publish results as JSON lines on stdout (stats go to the log on stderr, not into the results)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..message import encode

log = logging.getLogger(__name__)


class StdoutPublisher:
    """One compact JSON object per line, flushed at once so a pipe reader sees every result live."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None, on_closed: Callable[[], None] | None = None) -> None:
        self._stream = stream or sys.stdout
        self.on_closed = on_closed
        """Called once when the reader of stdout went away (the CLI stops when nobody else listens)."""
        self._published = 0
        self._failed = 0
        self._closed = False

    def publish(self, message: dict[str, Any]) -> None:
        if self._closed:
            self._failed += 1
            return
        try:
            line = encode(message)
        except ValueError as e:  # a non-finite number: not JSON, so it is not printed
            self._failed += 1
            log.error("result not printed: %s", e)
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
            self._published += 1
        except (BrokenPipeError, ValueError):
            # The reader went away (e.g. `| head`): count what is lost, tell whoever decides.
            self._closed = True
            self._failed += 1
            log.warning("stdout was closed by its reader; results no longer go there")
            if self.on_closed is not None:
                self.on_closed()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        log.info("stats %s", json.dumps(stats, separators=(",", ":")))

    def stats(self) -> dict[str, int]:
        return {"published": self._published, "failed": self._failed}

    def close(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass
