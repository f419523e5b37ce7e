"""The live page in a real browser: headless Chromium over the DevTools protocol.

One browser for both checks (starting it is the slow part): a daemon streaming the speech fixture in
real time, and a server that vanishes without saying goodbye.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from conftest import REPO, SPEECH, cli_env, run_cli

from bench.cdp import Chromium, available
from edge_ser.publish.http import HttpPublisher
from edge_ser.report import write_report
from edge_ser.settings import HttpSettings, Settings

pytestmark = pytest.mark.skipif(not available(),
                                reason="needs the chromium binary (scripts/test installs it)")

DOM = """({
  state: document.body.dataset.state,
  label: document.getElementById('label').dataset.label,
  labelText: document.getElementById('label').textContent,
  windows: Number(document.getElementById('probs').dataset.windows),
  canvases: document.querySelectorAll('canvas').length,
  inferred: document.getElementById('c-inferred').textContent,
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def unexpected(problems: list[dict]) -> list[dict]:
    """Everything but the browser's retries of /events after the server is gone."""
    return [p for p in problems if not (p["source"] == "network" and "ERR_CONNECTION_REFUSED" in p["text"])]


@pytest.fixture(scope="module")
def browser():
    with Chromium() as b:
        yield b


def test_live_page_follows_the_daemon_and_shows_when_it_stops(browser):
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_ser", "listen", "--input", str(SPEECH), "--realtime",
         "--http", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    try:
        wait_for_port(port, daemon)
        browser.open(f"http://127.0.0.1:{port}/")
        browser.wait_for("document.body.dataset.state === 'live'", timeout=10)
        # Mid-stream: windows arrive one per second while the 12 s fixture plays.
        browser.wait_for("Number(document.getElementById('probs').dataset.windows) >= 2", timeout=10)
        assert browser.evaluate(DOM)["state"] == "live"
        out, err = daemon.communicate(timeout=40)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert f"live page on http://127.0.0.1:{port}/" in err
    results = [json.loads(line) for line in out.splitlines()]
    published = re.search(r"stdout_published=(\d+)", err)
    assert published and len(results) == int(published.group(1)) >= 10  # one per window, one per pause
    assert {r["label"] for r in results[:4]} == {"anger_disgust"}  # the fixture: angry, a pause, sad
    assert "sadness" in {r["label"] for r in results[5:]}
    last = results[-1]["label"]  # the tail window (half of it the sad part): the model decides

    browser.wait_for(f"document.getElementById('probs').dataset.windows === '{len(results)}'", timeout=5)
    dom = browser.wait_for("document.body.dataset.state === 'stopped' && " + DOM, timeout=5)
    assert dom["label"] == last and dom["labelText"] == last.replace("_", " / ")
    assert dom["windows"] == len(results)  # every result drawn, the ones sent before the page opened too
    assert dom["canvases"] == 2  # the probability timeline and the level chart
    assert dom["inferred"].isdigit()  # counters arrived
    assert "stopped" in browser.evaluate("document.getElementById('state').textContent")
    time.sleep(0.5)
    browser.evaluate("1")  # collects the events that arrived meanwhile
    assert not unexpected(browser.problems), browser.problems


def test_live_page_shows_disconnected_when_the_server_vanishes(browser):
    pub = HttpPublisher(replace(Settings(), http=HttpSettings(port=0)), None)
    closed = False
    try:
        browser.open(f"http://127.0.0.1:{pub.port}/")
        browser.wait_for("document.body.dataset.state === 'live'", timeout=10)
        pub.publish({"ts": "2026-12-06T10:00:00.000Z", "site": "t", "window_start": 0.0, "window_s": 2.0,
                     "label": "happiness", "confidence": 0.8,
                     "probs": {"happiness": 0.8, "sadness": 0.1, "neutral": 0.1}, "rms": 0.05, "gated": False,
                     "model": "m", "latency_ms": 5.0})
        browser.wait_for("document.getElementById('label').dataset.label === 'happiness'", timeout=5)
        # Gone without the goodbye event (a crash or a pulled cable): streams end, the port closes.
        pub._broadcaster.close()
        pub._server.shutdown()
        pub._server.server_close()
        closed = True
        browser.wait_for("document.body.dataset.state === 'disconnected'", timeout=10)
        assert "disconnected" in browser.evaluate("document.getElementById('state').textContent")
    finally:
        if not closed:
            pub.close()
    assert not unexpected(browser.problems), browser.problems


def test_report_draws_every_window_offline(browser, tmp_path):
    """`edge-ser report` HTML opened from disk: the inlined uPlot draws every result, no errors."""
    proc = run_cli("listen", "--input", str(SPEECH))
    assert proc.returncode == 0, proc.stderr
    log, page = tmp_path / "results.jsonl", tmp_path / "report.html"
    log.write_text(proc.stdout)
    assert write_report(log, page) == len(proc.stdout.splitlines())
    browser.open(page.as_uri())
    windows = browser.wait_for("document.getElementById('probs').dataset.windows !== '0' && "
                               "document.getElementById('probs').dataset.windows", timeout=10)
    assert windows == str(len(proc.stdout.splitlines()))
    assert browser.evaluate("document.querySelectorAll('canvas').length") == 2
    browser.evaluate("1")
    assert not unexpected(browser.problems), browser.problems
