"""The HTTP side of the live page: a threading server with a connection cap, the page's files, /events.

Only GET of a fixed set of paths is answered. With a token every request needs it (`?token=` once,
then a cookie); without one (loopback only) the Host header must name the loopback address, so a web
page elsewhere cannot read the stream through DNS rebinding.
"""

from __future__ import annotations

import hmac
import logging
import socket
import socketserver
import threading
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .sse import Broadcaster, frame

log = logging.getLogger(__name__)

COOKIE = "edge_ser_token"
"""Cookie that carries the token after the browser passed it once as ?token=."""

COOKIE_MAX_AGE_S = 30 * 24 * 3600
"""How long a browser keeps the token cookie."""

KEEPALIVE_S = 15.0
"""An idle stream gets a comment line this often, so a vanished browser is noticed (its write fails)."""

SOCKET_TIMEOUT_S = 10.0
"""A browser that neither sends its request nor reads its stream for this long is disconnected."""

EXTRA_CONNECTIONS = 8
"""Connections allowed beyond http.max_clients (page and script requests, refused streams)."""

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
)


class LiveServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on concurrent connections (one thread each)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], *, broadcaster: Broadcaster,
                 files: dict[str, tuple[bytes, str]], hello: bytes, token: str | None,
                 max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.broadcaster = broadcaster
        self.files = files
        self.hello = hello
        self.token = token
        self.bound_host = address[0]
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, LiveHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's name (socket.getfqdn): a DNS query that can
        # stall the daemon's start for seconds on a machine without a reachable name server.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class LiveHandler(BaseHTTPRequestHandler):
    """GET /, the page's scripts and styles, and /events (text/event-stream)."""

    server: LiveServer
    timeout = SOCKET_TIMEOUT_S

    def version_string(self) -> str:
        return "edge-ser"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/events" and url.path not in self.server.files:
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        supplied = parse_qs(url.query).get("token", [None])[0]
        if not self._allowed(supplied):
            return
        if supplied is not None and url.path == "/":
            # Keep the token out of the address bar and history: a cookie carries it from now on.
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", "/")
            self.send_header("Set-Cookie", f"{COOKIE}={supplied}; Path=/; HttpOnly; SameSite=Strict; "
                                           f"Max-Age={COOKIE_MAX_AGE_S}")
            self.send_header("Content-Length", "0")
            self._security_headers()
            self.end_headers()
            return
        if url.path == "/events":
            self._events()
            return
        body, ctype = self.server.files[url.path]
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self._security_headers()
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self) -> None:
        self._text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse

    def _allowed(self, supplied: str | None) -> bool:
        """The token check (answers 401/403 itself when the request may not go on)."""
        token = self.server.token
        if token is None:
            host = (self.headers.get("Host") or "").strip().lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name in LOOPBACK_NAMES or name == self.server.bound_host.lower():
                return True
            self._text(HTTPStatus.FORBIDDEN, "forbidden: open the page as http://127.0.0.1:PORT/")
            return False
        if supplied is None:
            supplied = self._cookie_token()
        if supplied is not None and hmac.compare_digest(supplied.encode(), token.encode()):
            return True
        self._text(HTTPStatus.UNAUTHORIZED, "token required: open /?token=... with the token of "
                                            "EDGE_SER_HTTP_TOKEN or http.token_file")
        return False

    def _cookie_token(self) -> str | None:
        try:
            jar = SimpleCookie(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return morsel.value if morsel is not None else None

    def _events(self) -> None:
        subscription = self.server.broadcaster.subscribe()
        if subscription is None:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "too many browsers connected (http.max_clients)")
            return
        queue, replay = subscription
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self._security_headers()
            self.end_headers()
            self.wfile.write(b"retry: 3000\n\n" + self.server.hello + b"".join(replay))
            reported = 0
            while True:
                events = queue.take(KEEPALIVE_S)
                if events is None:
                    break
                if queue.dropped > reported:
                    reported = queue.dropped
                    events.insert(0, frame(f'{{"dropped": {reported}}}', "lag"))
                self.wfile.write(b"".join(events) if events else b": keepalive\n\n")
        except OSError:
            pass  # the browser went away or stopped reading for SOCKET_TIMEOUT_S
        finally:
            self.server.broadcaster.unsubscribe(queue)
            self.close_connection = True

    def _text(self, status: HTTPStatus, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._security_headers()
        self.end_headers()
        self.wfile.write(body)

    def _security_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
