"""The README's screenshot of the live page: a daemon streams TESS speech, headless Chromium looks.

    python3 -m bench.live_page_screenshot                 # writes docs/live_page.png

Streams the 60 s TESS stream of the latency figure (tests/fixtures/make_fixtures.py --stream60, needs
../shared/corpora) through `edge-ser listen --realtime --http PORT` and takes the screenshot after
--wait seconds, while the daemon is still live.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from bench.cdp import Chromium

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "cache" / "bench"


def stream_wav() -> Path:
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from make_fixtures import stream60

    path = CACHE / "stream60.wav"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        stream60(path)
    return path


@click.command()
@click.option("--wait", type=click.FloatRange(5, 55), default=45.0, show_default=True,
              help="Seconds of streaming before the screenshot.")
@click.option("--out", default=str(REPO / "docs" / "live_page.png"), show_default=True, help="PNG to write.")
def main(wait: float, out: str) -> None:
    """Screenshot the live page while the daemon streams speech."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen([sys.executable, "-m", "edge_ser", "listen", "--input", str(stream_wav()),
                               "--realtime", "--site", "kitchen", "--http", str(port)],
                              stdout=subprocess.DEVNULL, cwd=REPO)
    try:
        with Chromium(width=1200, height=860) as browser:
            time.sleep(2.0)
            browser.open(f"http://127.0.0.1:{port}/")
            browser.wait_for("document.body.dataset.state === 'live'", timeout=20)
            time.sleep(wait)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            browser.screenshot(Path(out))
            browser.evaluate("1")
            if browser.problems:
                raise click.ClickException(f"the page reported problems: {browser.problems}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
