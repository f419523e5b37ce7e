"""A small headless-Chromium driver over the DevTools protocol (for the live page's browser test,
its screenshot and bench.http_overhead).

    with Chromium() as browser:
        browser.open("http://127.0.0.1:8080/")
        browser.wait_for("document.body.dataset.state === 'live'", timeout=10)
        browser.evaluate("document.getElementById('label').textContent")

Needs the `chromium` binary and the websocket-client package. Every console message, uncaught
exception and browser log entry is kept in `problems` (with its source) so a test can assert none.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BINARY = "chromium"


def available() -> bool:
    """Whether a headless browser can be started here (the binary is installed)."""
    return shutil.which(BINARY) is not None


class Chromium:
    """One headless Chromium with one page, driven through its DevTools websocket."""

    def __init__(self, width: int = 1200, height: int = 900, start_timeout: float = 20.0) -> None:
        import websocket

        self._profile = tempfile.TemporaryDirectory(prefix="edge-ser-chromium-")
        self.proc = subprocess.Popen(
            [BINARY, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
             "--disable-extensions", "--disable-background-networking", "--disable-dev-shm-usage",
             f"--window-size={width},{height}", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._devtools_port(start_timeout)
        deadline = time.monotonic() + start_timeout
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not pages:
            self.close()
            raise RuntimeError("chromium started without a page")
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=10,
                                               suppress_origin=True)
        self._next_id = 0
        self.problems: list[dict[str, Any]] = []
        """Console errors/warnings, uncaught exceptions and browser log errors, in arrival order."""
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")

    def _devtools_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            if line.startswith("DevTools listening on ws://"):
                # Keep reading stderr so a chatty browser never blocks on a full pipe.
                threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
                return int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        self.close()
        raise RuntimeError("chromium did not open its DevTools port")

    @staticmethod
    def _drain(stream: Any) -> None:
        try:
            for _ in stream:
                pass
        except (OSError, ValueError):
            pass

    # -- protocol ---------------------------------------------------------------------------------

    def call(self, method: str, timeout: float = 10.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are recorded."""
        self._next_id += 1
        my_id = self._next_id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = self._receive(deadline - time.monotonic())
            if msg is None:
                raise TimeoutError(f"no answer to {method} within {timeout} s")
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        import websocket

        if timeout <= 0:
            return None
        self._ws.settimeout(timeout)
        try:
            msg = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        self._record(msg)
        return msg

    def _record(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.problems.append({"source": "console", "text": text})
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.problems.append({"source": "exception", "text": text})
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            entry = params["entry"]
            self.problems.append({"source": entry.get("source", "log"), "text": entry.get("text", "")})

    # -- page -------------------------------------------------------------------------------------

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """Evaluate `expression` until it is truthy (returns it) or `timeout` passes (TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            self._receive(0.2)  # keeps recording console events while waiting

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            try:
                ws.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
