"""What the live page costs: page weight, and the daemon's RSS/CPU with --http and one browser vs none.

    nice -n 5 python3 -m bench.http_overhead              # writes bench/results/http_overhead.json
    python3 -m bench.http_overhead --seconds 20 --repeats 1 --out /tmp/h.json

Three runs of the real `edge-ser listen --input FILE --realtime` (non-stop synthetic speech, so every
window is inferred and published: the most events per second), each in a fresh process: without
--http, with --http and nobody connected, and with --http and one client that reads /events from
the start to the end (a plain SSE reader: the daemon's work per client does not depend on who reads;
the page's files are fetched once, as a browser does). peak_rss_mb and cpu_pct are measured as in
bench.footprint (os.wait4 maximum RSS; CPU time over wall time after --settle seconds).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from bench.footprint import _cpu_s, audio_files

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PAGE = ("/", "/live.js", "/live.css", "/uPlot.iife.min.js", "/uPlot.min.css")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reader(threading.Thread):
    """One client: fetches the page's files once, then reads /events until the daemon ends it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.page_bytes: dict[str, int] = {}
        self.page_gzip_bytes: dict[str, int] = {}
        self.stream_bytes = 0
        self.results = 0
        self.events = 0

    def run(self) -> None:
        base = f"http://127.0.0.1:{self.port}"
        for path in PAGE:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                body = r.read()
            self.page_bytes[path] = len(body)
            self.page_gzip_bytes[path] = len(gzip.compress(body, 9))
        with urllib.request.urlopen(base + "/events", timeout=30) as r:
            name = "message"
            for raw in r:
                self.stream_bytes += len(raw)
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events += 1
                    self.results += name == "message"
                    name = "message"


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the daemon never opened its HTTP port")


def measure(wav: Path, mode: str, settle: float) -> dict[str, Any]:
    """One daemon run: mode is "off" (no --http), "idle" (--http, no client) or "client"."""
    port = free_port()
    cmd = [sys.executable, "-m", "edge_ser", "listen", "--input", str(wav), "--realtime",
           "--log-level", "WARNING"]
    if mode != "off":
        cmd += ["--http", str(port)]
    reader = None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        if mode == "client":
            wait_for_port(port, proc)
            reader = Reader(port)
            reader.start()
        c1 = t1 = None
        c2, t2 = 0.0, t0
        while True:
            done, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if done:
                break
            now = time.monotonic()
            c = _cpu_s(proc.pid)
            if c is not None:
                if c1 is None and now - t0 >= settle:
                    c1, t1 = c, now
                c2, t2 = c, now
            time.sleep(0.2)
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        published = sum(1 for ln in out.read().decode().splitlines() if ln.startswith("{"))
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err.read().decode()[-800:]}")
    rec: dict[str, Any] = {
        "mode": mode, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_pct": None if c1 is None or t2 <= t1 else round(100 * (c2 - c1) / (t2 - t1), 2),
        "published": published, "command": " ".join(["edge-ser", *cmd[3:]]).replace(str(port), "PORT"),
    }
    if reader is not None:
        reader.join(timeout=10)
        rec.update(client_results=reader.results, client_events=reader.events,
                   stream_bytes=reader.stream_bytes, page_bytes=reader.page_bytes,
                   page_gzip_bytes=reader.page_gzip_bytes)
    return rec


@click.command()
@click.option("--seconds", type=click.FloatRange(15, 3600), default=40.0, show_default=True,
              help="Audio per run, paced in real time.")
@click.option("--settle", type=click.FloatRange(0, 60), default=10.0, show_default=True,
              help="Seconds excluded from the CPU share.")
@click.option("--repeats", type=click.IntRange(1, 10), default=2, show_default=True,
              help="Runs per mode (the table shows the mean).")
@click.option("--out", default=str(RESULTS / "http_overhead.json"), show_default=True, help="Result file.")
def main(seconds: float, settle: float, repeats: int, out: str) -> None:
    """Page weight and the daemon's extra RSS/CPU with the live page on, with one client vs none."""
    from edge_ser.benchmark import machine

    wav = audio_files(seconds)["speech"]
    runs = []
    for _ in range(repeats):
        for mode in ("off", "idle", "client"):
            load = os.getloadavg()[0]
            r = {**measure(wav, mode, settle), "load_1min": round(load, 2)}
            runs.append(r)
            click.echo(f"{mode:6s} peak RSS {r['peak_rss_mb']:6.1f} MB  CPU {r['cpu_pct']}%  "
                       f"({r['published']} published, load {load:.2f})")

    def mean(mode: str, key: str) -> float:
        vals = [r[key] for r in runs if r["mode"] == mode and r[key] is not None]
        return round(sum(vals) / len(vals), 2)

    client = next(r for r in runs if r["mode"] == "client")
    summary = {
        "page_bytes": client["page_bytes"], "page_gzip_bytes": client["page_gzip_bytes"],
        "page_total_bytes": sum(client["page_bytes"].values()),
        "stream_bytes_per_result": round(client["stream_bytes"] / max(client["client_results"], 1)),
        **{f"{key}_{mode}": mean(mode, key) for mode in ("off", "idle", "client")
           for key in ("peak_rss_mb", "cpu_pct")},
    }
    record = {"machine": machine(), "seconds": seconds, "settle": settle, "repeats": repeats,
              "command": "python3 -m bench.http_overhead " + " ".join(sys.argv[1:]),
              "summary": summary, "runs": runs}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    click.echo(json.dumps(summary, indent=1))
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
