"""Fan-out of server-sent events to a bounded set of browsers, each behind its own bounded queue.

The pipeline's worker thread calls `Broadcaster.send`, which only appends an already encoded frame to
a few deques under a short lock: a slow or vanished browser never makes the pipeline wait; its queue
drops its oldest event instead and counts it.
"""

from __future__ import annotations

import threading
from collections import deque


def frame(data: str, event: str | None = None) -> bytes:
    """One server-sent event; `data` is one line of JSON (json.dumps never emits a raw newline)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


class ClientQueue:
    """Events waiting for one browser: at most `size`; when full the oldest is dropped and counted."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.dropped = 0
        """Events this browser never got because it read too slowly."""
        self._events: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, event: bytes) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._events) >= self.size:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._cond.notify()

    def take(self, timeout: float) -> list[bytes] | None:
        """Everything queued (waits up to `timeout`); [] on timeout, None once closed and empty."""
        with self._cond:
            if not self._events and not self._closed:
                self._cond.wait(timeout)
            if self._events:
                out = list(self._events)
                self._events.clear()
                return out
            return None if self._closed else []

    def close(self) -> None:
        """No more events; `take` still hands out what is queued, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Broadcaster:
    """The connected browsers (at most `max_clients`) and the recent events replayed to a new one."""

    def __init__(self, max_clients: int, queue_size: int, history: int) -> None:
        self.max_clients = max_clients
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._clients: list[ClientQueue] = []
        # A window has up to two events (its level and its result): keep both for `history` windows.
        self._history: deque[bytes] = deque(maxlen=2 * history)
        self._latest: dict[str, bytes] = {}
        self._closed = False
        self._sent = 0
        self._dropped_gone = 0
        self._refused = 0

    def subscribe(self) -> tuple[ClientQueue, list[bytes]] | None:
        """A queue for one more browser plus the events to replay first; None when full or closed."""
        with self._lock:
            if self._closed or len(self._clients) >= self.max_clients:
                self._refused += 1
                return None
            queue = ClientQueue(self.queue_size)
            self._clients.append(queue)
            return queue, [*self._history, *self._latest.values()]

    def unsubscribe(self, queue: ClientQueue) -> None:
        with self._lock:
            if queue in self._clients:
                self._clients.remove(queue)
                self._dropped_gone += queue.dropped

    def send(self, event: bytes, *, keep: bool = True, latest: str | None = None) -> None:
        """Queue `event` for every browser; `keep` adds it to the replay history, `latest` replaces the
        replayed event of that kind (e.g. the newest stats only)."""
        with self._lock:
            if self._closed:
                return
            if keep:
                self._history.append(event)
            if latest:
                self._latest[latest] = event
            for queue in self._clients:
                queue.put(event)
            self._sent += 1

    def close(self, last: bytes | None = None) -> None:
        """Send `last` to every browser, then end their streams; later subscribers are refused."""
        with self._lock:
            self._closed = True
            for queue in self._clients:
                if last is not None:
                    queue.put(last)
                queue.close()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def stats(self) -> dict[str, int]:
        """clients now, events sent, events dropped for slow browsers, browsers refused (too many)."""
        with self._lock:
            dropped = self._dropped_gone + sum(q.dropped for q in self._clients)
            return {"clients": len(self._clients), "sent": self._sent, "dropped": dropped,
                    "refused": self._refused}
