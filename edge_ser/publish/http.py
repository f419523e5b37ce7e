"""The live page as a publisher: results, per-window levels and stats go out as server-sent events.

`edge-ser listen --http [HOST:]PORT` serves the page at / and the stream at /events from a daemon
thread. Only result messages (the JSON MQTT gets), per-window levels (RMS against the gate) and stats
are sent; no audio ever leaves the process this way.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, UserError
from ..settings import HttpSettings, Settings
from ..textfile import read_secret_line, readable_by_everyone
from .http_server import EXTRA_CONNECTIONS, LiveServer
from .sse import Broadcaster, frame

log = logging.getLogger(__name__)

TOKEN_ENV = "EDGE_SER_HTTP_TOKEN"
"""Environment variable holding the access token (wins over http.token_file)."""

TOKEN_MIN_CHARS = 16
TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+")
"""URL-safe characters only: the token travels in a query string and a cookie unescaped."""

TOKEN_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"

STATS_EVERY_S = 1.0
"""While a browser is connected, counters are sent at most this often (with the window levels)."""


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the port on this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(settings: HttpSettings) -> str | None:
    """The access token from $EDGE_SER_HTTP_TOKEN, else the first line of http.token_file; None = none."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        token, where = env, f"${TOKEN_ENV}"
    elif settings.token_file:
        token, path = read_secret_line("http.token_file", settings.token_file)
        where = f"http.token_file {path}"
        if readable_by_everyone(path):
            log.warning("http.token_file %s is readable by everyone; chmod 600 it", path)
    else:
        return None
    if len(token) < TOKEN_MIN_CHARS or not TOKEN_RE.fullmatch(token):
        raise ConfigError(f"the token in {where} must be at least {TOKEN_MIN_CHARS} characters of "
                          f"A-Z a-z 0-9 . _ ~ - (make one: {TOKEN_HINT})")
    return token


def check_http(settings: HttpSettings) -> str | None:
    """The token every request must carry (None: loopback without one); refuses an open port."""
    token = read_token(settings)
    if token is None and not is_loopback(settings.host):
        raise ConfigError(f"http.host {settings.host} is reachable beyond this machine: set a token in "
                          f"${TOKEN_ENV} or http.token_file, or bind 127.0.0.1")
    return token


def parse_http_addr(addr: str) -> tuple[str, int]:
    """--http [HOST:]PORT, [IPv6]:PORT; a bare port binds 127.0.0.1."""
    addr = addr.strip()
    host, port = "127.0.0.1", addr
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0 or not addr[end + 1:].startswith(":"):
            raise UserError(f"--http {addr!r}: expected [IPv6]:PORT")
        host, port = addr[1:end], addr[end + 2:]
    elif ":" in addr:
        host, port = addr.rsplit(":", 1)
    if not host or ":" in host and not addr.startswith("["):
        raise UserError(f"--http {addr!r}: expected PORT or HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(f"--http {addr!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


class HttpPublisher:
    """Serves the live page; every publish only queues an encoded event (never waits for a browser)."""

    name = "http"

    def __init__(self, settings: Settings, token: str | None) -> None:
        s = settings.http
        self.settings = s
        self.stats_source: Callable[[], dict[str, Any]] | None = None
        """Set by the caller to the pipeline's counters: sent to browsers about once a second."""
        self._broadcaster = Broadcaster(s.max_clients, s.queue_size, s.history)
        hello = {"site": settings.site, "rms_threshold": settings.gate.rms_threshold,
                 "vad": settings.gate.vad, "window_s": settings.window.window_s,
                 "hop_s": settings.window.hop_s, "history": s.history}
        from ..web import page_files

        try:
            self._server = LiveServer((s.host, s.port if s.port is not None else 0),
                                      broadcaster=self._broadcaster, files=page_files(),
                                      hello=frame(_dumps(hello), "hello"), token=token,
                                      max_connections=s.max_clients + EXTRA_CONNECTIONS)
        except OSError as e:
            raise UserError(f"cannot serve the live page on {s.host}:{s.port}: {e.strerror or e}") from None
        self.port = self._server.server_address[1]
        """The bound port (the configured one, or the one the system chose for port 0)."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edge-ser-http", daemon=True)
        self._thread.start()
        self._last_stats = 0.0
        self._closed = False
        url_host = f"[{s.host}]" if ":" in s.host else s.host
        if token is None:
            log.info("live page on http://%s:%d/ (this machine only)", url_host, self.port)
        else:
            log.warning("live page on http://%s:%d/%s: every request needs the token; open "
                        "http://%s:%d/?token=<the token> once", url_host, self.port,
                        "" if is_loopback(s.host) else " for the network",
                        "<this machine>" if s.host in ("0.0.0.0", "::") else url_host, self.port)

    def publish(self, message: dict[str, Any]) -> None:
        self._broadcaster.send(frame(_dumps(message)))

    def publish_level(self, level: dict[str, Any]) -> None:
        """Every window's RMS and gate decision (silent windows often have no result message)."""
        self._broadcaster.send(frame(_dumps(level), "level"))
        now = time.monotonic()
        due = now - self._last_stats >= STATS_EVERY_S
        if self.stats_source is not None and self._broadcaster.clients and due:
            self._last_stats = now
            self._send_stats(self.stats_source())

    def publish_stats(self, stats: dict[str, Any]) -> None:
        self._send_stats(stats)

    def _send_stats(self, stats: dict[str, Any]) -> None:
        self._broadcaster.send(frame(_dumps(stats), "stats"), keep=False, latest="stats")

    def stats(self) -> dict[str, int]:
        return self._broadcaster.stats()

    def close(self) -> None:
        """Tell every browser the daemon stopped, end the streams and the server (well within 1 s)."""
        if self._closed:
            return
        self._closed = True
        self._broadcaster.close(frame('{"reason":"stopped"}', "bye"))
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=1.0)
