"""What the live page costs: page weight, and the daemon's RSS/CPU with --http and one browser vs none.

    nice -n 5 python3 -m bench.http_overhead              # writes bench/results/http_overhead.json
    python3 -m bench.http_overhead --seconds 20 --repeats 1 --out /tmp/h.json

Three runs of the real `edge-ser listen --input FILE --realtime` (non-stop synthetic speech, so every
window is inferred and published: the most events per second), each in a fresh process: without
--http, with --http and nobody connected, and with --http and one client that reads /events from
the start to the end (a plain SSE reader: the daemon's work per client does not depend on who reads;
the page's files are fetched once, as a browser does). peak_rss_mb and cpu_pct are measured as in
bench.footprint (os.wait4 maximum RSS; CPU time over wall time after --settle seconds).

On a busy machine a few tenths of a percent of CPU are within the run-to-run noise of those runs, so
the cost is also measured directly: `us_per_window_*` is this process's CPU time (time.process_time,
all threads) for publishing one window (its level event and its result) through a real
HttpPublisher, with no client and with one client in another process reading /events.
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

from bench.footprint import audio_files, watch

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
        code, usage, cpu, _ = watch(proc, t0, settle)
        out.seek(0)
        err.seek(0)
        published = sum(1 for ln in out.read().decode().splitlines() if ln.startswith("{"))
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err.read().decode()[-800:]}")
    rec: dict[str, Any] = {
        "mode": mode, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_pct": None if cpu is None else round(cpu, 2),
        "published": published, "command": " ".join(["edge-ser", *cmd[3:]]).replace(str(port), "PORT"),
    }
    if reader is not None:
        reader.join(timeout=10)
        rec.update(client_results=reader.results, client_events=reader.events,
                   stream_bytes=reader.stream_bytes, page_bytes=reader.page_bytes,
                   page_gzip_bytes=reader.page_gzip_bytes)
    return rec


READER = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
    for _ in r:
        pass
"""


def per_window_cost(windows: int) -> dict[str, float]:
    """CPU microseconds per window published by HttpPublisher: no client, one client."""
    from dataclasses import replace

    from edge_ser.publish.http import HttpPublisher
    from edge_ser.settings import HttpSettings, Settings

    message = {"ts": "2026-12-06T10:00:00.000Z", "site": "kitchen", "window_start": 0.0, "window_s": 2.0,
               "label": "sadness", "confidence": 0.7532,
               "probs": {"anger_disgust": 0.092, "fear_surprise": 0.0566, "happiness": 0.0171,
                         "sadness": 0.7532, "neutral": 0.0811},
               "rms": 0.0211, "gated": False, "model": "yamnet-mlp-allplus-int8", "latency_ms": 6.12}
    level = {"ts": message["ts"], "window_start": 0.0, "rms": 0.0211, "gated": False, "reason": None,
             "threshold": 0.01}
    out = {}
    for mode in ("idle", "client"):
        settings = replace(Settings(), http=HttpSettings(port=0, queue_size=4096, history=300))
        pub = HttpPublisher(settings, None)
        reader = None
        if mode == "client":
            reader = subprocess.Popen([sys.executable, "-c", READER, f"http://127.0.0.1:{pub.port}/events"])
            while pub.stats()["clients"] < 1:
                time.sleep(0.01)
        c0 = time.process_time()
        for i in range(windows):
            pub.publish_level({**level, "window_start": float(i)})
            pub.publish({**message, "window_start": float(i)})
            if i % 50 == 49:
                time.sleep(0.005)  # a burst, then room for the client: it never lags behind
        dropped = pub.stats()["dropped"]
        pub.close()
        if reader is not None:
            reader.wait(timeout=60)  # it reached the end: every event was written
        out[f"us_per_window_{mode}"] = round(1e6 * (time.process_time() - c0) / windows, 1)
        out[f"dropped_{mode}"] = dropped
    return out


@click.command()
@click.option("--seconds", type=click.FloatRange(15, 3600), default=40.0, show_default=True,
              help="Audio per run, paced in real time.")
@click.option("--settle", type=click.FloatRange(0, 60), default=10.0, show_default=True,
              help="Seconds excluded from the CPU share.")
@click.option("--repeats", type=click.IntRange(1, 10), default=2, show_default=True,
              help="Runs per mode (the table shows the mean).")
@click.option("--windows", type=click.IntRange(100, 100000), default=5000, show_default=True,
              help="Windows published for the per-window CPU cost.")
@click.option("--out", default=str(RESULTS / "http_overhead.json"), show_default=True, help="Result file.")
def main(seconds: float, settle: float, repeats: int, windows: int, out: str) -> None:
    """Page weight and the daemon's extra RSS/CPU with the live page on, with one client vs none."""
    from edge_ser.benchmark import machine

    cost = per_window_cost(windows)
    click.echo(f"per window: {cost}")

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
        **cost,
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
