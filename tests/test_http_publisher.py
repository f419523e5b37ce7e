"""The live page's server: bounded per-browser queues, a slow browser never blocks, tokens, addresses."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from contextlib import closing
from dataclasses import replace

import pytest
from conftest import SPEECH, LevelSink, assert_user_error, cli_env, run_cli

from edge_ser.config import load_settings
from edge_ser.errors import ConfigError, UserError
from edge_ser.pipeline import Pipeline
from edge_ser.publish.http import TOKEN_ENV, HttpPublisher, check_http, is_loopback, parse_http_addr
from edge_ser.publish.sse import Broadcaster, ClientQueue, frame
from edge_ser.settings import GateSettings, HttpSettings, Settings

TOKEN = "s3cret-token-for-tests_0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(i: int, pad: int = 0) -> dict:
    return {"ts": f"2026-12-06T10:00:{i % 60:02d}.000Z", "site": "t", "window_start": float(i),
            "window_s": 2.0, "label": "sadness", "confidence": 0.9, "probs": {"sadness": 0.9, "neutral": 0.1},
            "rms": 0.05, "gated": False, "model": "m" + "x" * pad, "latency_ms": 5.0}


def make_publisher(token: str | None = None, **http) -> HttpPublisher:
    return HttpPublisher(replace(Settings(), http=replace(HttpSettings(port=0), **http)), token)


def get(port: int, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def read_events(resp: http.client.HTTPResponse, until: str, limit: float = 5.0) -> list[tuple[str, str]]:
    """(event name, data) pairs of a stream until an event named `until` (or the stream ends)."""
    out: list[tuple[str, str]] = []
    name, deadline = "message", time.monotonic() + limit
    while time.monotonic() < deadline:
        line = resp.fp.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, line[6:]))
            if name == until:
                break
            name = "message"
    return out


# -- queues ---------------------------------------------------------------------------------------

def test_client_queue_keeps_the_newest_and_counts_the_dropped():
    q = ClientQueue(8)
    for i in range(20):
        q.put(str(i).encode())
    assert q.take(0.01) == [str(i).encode() for i in range(12, 20)]
    assert q.dropped == 12
    assert q.take(0.01) == []
    q.put(b"last")
    q.close()
    assert q.take(0.01) == [b"last"]
    assert q.take(0.01) is None


def test_broadcaster_bounds_browsers_and_replays_recent_windows():
    b = Broadcaster(max_clients=2, queue_size=8, history=2)
    for i in range(5):
        b.send(frame(str(i)))
    b.send(frame("{}", "stats"), keep=False, latest="stats")
    first, replay = b.subscribe()
    assert replay == [frame(str(i)) for i in range(1, 5)] + [frame("{}", "stats")]  # 2 windows x 2 events
    assert b.subscribe() is not None
    assert b.subscribe() is None
    assert b.stats()["refused"] == 1
    b.unsubscribe(first)
    assert b.clients == 1 and b.subscribe() is not None


# -- the server -------------------------------------------------------------------------------------

def test_events_carry_the_result_json_levels_and_a_goodbye():
    pub = make_publisher()
    try:
        resp = get(pub.port, "/events")
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
        assert read_events(resp, until="hello")[0][0] == "hello"
        pub.publish_level({"ts": "x", "window_start": 0.0, "rms": 0.05, "gated": False, "threshold": 0.01})
        pub.publish(message(1))
    finally:
        pub.close()
    events = read_events(resp, until="bye")
    assert [name for name, _ in events] == ["level", "message", "bye"]
    assert json.loads(events[1][1]) == message(1)  # the same JSON object MQTT and stdout get


def test_a_browser_that_stops_reading_never_blocks_publish():
    pub = make_publisher(queue_size=8, history=0)
    try:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small TCP window
        stuck.connect(("127.0.0.1", pub.port))
        stuck.sendall(f"GET /events HTTP/1.0\r\nHost: 127.0.0.1:{pub.port}\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while pub.stats()["clients"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
        for i in range(3000):  # ~12 MB: far more than the socket buffers hold
            pub.publish(message(i, pad=4000))
        elapsed = time.perf_counter() - t0
        assert elapsed < 2.0, elapsed
        assert pub.stats()["dropped"] > 2000
        # Another browser still gets the live stream.
        resp = get(pub.port, "/events")
        read_events(resp, until="hello")
        pub.publish(message(7))
        assert read_events(resp, until="message")[-1][1] == json.dumps(message(7), separators=(",", ":"))
        stuck.close()
    finally:
        pub.close()


def test_a_vanished_browser_frees_its_place():
    pub = make_publisher(max_clients=1)
    try:
        resp = get(pub.port, "/events")
        read_events(resp, until="hello")
        assert get(pub.port, "/events").status == 503  # max_clients = 1
        resp.close()
        deadline = time.monotonic() + 5
        while pub.stats()["clients"] and time.monotonic() < deadline:
            pub.publish(message(1))  # the next write to the closed socket fails
            time.sleep(0.05)
        assert pub.stats()["clients"] == 0
        assert get(pub.port, "/events").status == 200
    finally:
        pub.close()


def test_token_once_in_the_query_then_a_cookie():
    pub = make_publisher(token=TOKEN)
    try:
        assert get(pub.port, "/").status == 401
        assert get(pub.port, "/events").status == 401
        assert get(pub.port, "/?token=wrong-token-of-some-length").status == 401
        first = get(pub.port, f"/?token={TOKEN}")
        assert first.status == 303 and first.getheader("Location") == "/"
        cookie = first.getheader("Set-Cookie")
        assert cookie.startswith(f"edge_ser_token={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = get(pub.port, "/", {"Cookie": f"edge_ser_token={TOKEN}"})
        assert page.status == 200 and b"live.js" in page.read()
        assert get(pub.port, "/live.js", {"Cookie": "edge_ser_token=nope"}).status == 401
        assert get(pub.port, f"/events?token={TOKEN}").status == 200
    finally:
        pub.close()


def test_loopback_without_token_refuses_foreign_host_names():
    """A page on another site cannot read the stream through DNS rebinding."""
    pub = make_publisher()
    try:
        assert get(pub.port, "/", {"Host": "evil.example:80"}).status == 403
        assert get(pub.port, "/", {"Host": f"localhost:{pub.port}"}).status == 200
        assert get(pub.port, "/nope").status == 404
        conn = http.client.HTTPConnection("127.0.0.1", pub.port, timeout=5)
        conn.request("POST", "/events", body=b"x")
        assert conn.getresponse().status == 405
        page = get(pub.port, "/")
        assert "default-src 'none'" in page.getheader("Content-Security-Policy")
    finally:
        pub.close()


def test_page_weight_is_small_and_serves_the_vendored_uplot():
    pub = make_publisher()
    try:
        paths = ("/", "/live.js", "/live.css", "/uPlot.min.css")
        sizes = {path: len(get(pub.port, path).read()) for path in paths}
        uplot = get(pub.port, "/uPlot.iife.min.js").read()
    finally:
        pub.close()
    assert b"uPlot" in uplot[:2000]
    assert sum(sizes.values()) < 30_000, sizes  # the page itself, without uPlot


# -- addresses and tokens ----------------------------------------------------------------------------

@pytest.mark.parametrize("addr, want", [
    ("8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("localhost:9000", ("localhost", 9000)),
    ("[::1]:8080", ("::1", 8080)),
])
def test_http_address_a_bare_port_binds_loopback(addr, want):
    assert parse_http_addr(addr) == want


def test_a_bare_port_on_the_command_line_binds_loopback_whatever_the_config_says(tmp_path):
    from edge_ser.cli import listen_overrides

    config = tmp_path / "c.yaml"
    config.write_text("http:\n  host: 0.0.0.0\n  port: 9000\n")
    assert load_settings(config).http.host == "0.0.0.0"
    http = load_settings(config, listen_overrides(http_addr="8080")).http
    assert (http.host, http.port) == ("127.0.0.1", 8080)
    assert Settings().http.port is None  # off by default: no listening socket


@pytest.mark.parametrize("addr", ["0", "65536", "web", "host:", ":8080", "::1:80", "[::1]"])
def test_bad_http_address_is_a_user_error(addr):
    with pytest.raises(UserError, match="--http"):
        parse_http_addr(addr)


def test_beyond_loopback_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("pi.lan")
    assert check_http(HttpSettings(port=8080)) is None
    with pytest.raises(ConfigError, match="set a token"):
        check_http(HttpSettings(port=8080, host="0.0.0.0"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    assert check_http(HttpSettings(port=8080, host="0.0.0.0", token_file=str(token_file))) == TOKEN
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16"):
        check_http(HttpSettings(port=8080, host="0.0.0.0"))


@pytest.mark.parametrize("yaml_text, fragment", [
    ("http:\n  port: 70000\n", "http.port must be between"),
    ("http:\n  max_clients: 17\n", "http.max_clients must be between"),
    ("http:\n  queue_size: 1\n", "http.queue_size must be between"),
])
def test_http_settings_have_finite_ranges(tmp_path, yaml_text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(path)


def test_listen_refuses_an_open_port_without_a_token():
    proc = run_cli("listen", "--input", str(SPEECH), "--http", f"0.0.0.0:{free_port()}", timeout=60)
    assert_user_error(proc, "http.host 0.0.0.0", "token")
    assert proc.stdout == ""


def test_listen_beyond_loopback_with_a_token_says_so_and_never_logs_the_token():
    proc = run_cli("listen", "--input", str(SPEECH), "--http", f"0.0.0.0:{free_port()}", timeout=60,
                   env=cli_env(**{TOKEN_ENV: TOKEN}))
    assert proc.returncode == 0, proc.stderr
    assert "for the network: every request needs the token" in proc.stderr
    assert TOKEN not in proc.stderr and TOKEN not in proc.stdout
    published = re.search(r"stdout_published=(\d+)", proc.stderr)
    assert published and len(proc.stdout.splitlines()) == int(published.group(1)) >= 9


def test_listen_refuses_a_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_cli("listen", "--input", str(SPEECH), "--http", str(busy.getsockname()[1]), timeout=60)
    assert_user_error(proc, "cannot serve the live page on 127.0.0.1")


# -- the pipeline feeds levels --------------------------------------------------------------------------

def test_every_window_gets_a_level_even_when_silence_publishes_no_result(fake_model):
    from edge_ser.audio.source_file import FileSource

    sink = LevelSink()
    # the fixture's 3 s of faint noise (RMS 0.001): two windows under this threshold, one suppressed
    pipeline = Pipeline(Settings(gate=GateSettings(rms_threshold=0.003)), fake_model, [sink])
    with closing(FileSource(str(SPEECH), block_s=1.0)) as source:
        stats = pipeline.run(source)
    assert stats["neutral_suppressed"] >= 1
    assert len(sink.levels) == stats["windows"] > len(sink.messages)
    assert {k for level in sink.levels for k in level} == {"ts", "window_start", "rms", "gated", "reason",
                                                          "threshold"}
    levels = {(level["ts"], level["window_start"]): level for level in sink.levels}
    for m in sink.messages:  # a result and its level share ts and window_start: the page joins them
        assert levels[m["ts"], m["window_start"]]["gated"] == m["gated"]
        assert levels[m["ts"], m["window_start"]]["rms"] == pytest.approx(m["rms"], abs=1e-4)


def test_every_page_file_ships_as_package_data():
    """The live page and the vendored uPlot (with its licence) are in the wheel's package-data globs."""
    import fnmatch

    import tomllib
    from conftest import REPO

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    web = REPO / "edge_ser" / "web"
    files = [p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file() and p.suffix != ".py"
             and "__pycache__" not in p.parts]
    shipped = {"index.html", "live.js", "live.css", "vendor/uplot/LICENSE", "vendor/uplot/uPlot.iife.min.js"}
    assert shipped <= set(files)
    missing = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs["edge_ser.web"])]
    assert not missing, f"add to pyproject package-data: {missing}"
