"""`edge-ser bench`: how fast a model is on this machine, through the real listen pipeline.

Latency here is the time from the moment a 2 s window's last sample arrives to the moment its
result message is handed to the publisher (gate, model, smoothing, message). Audio is synthetic and
speech-like, so no corpus is needed; compute time of these models does not depend on what is said.

The source runs in lockstep with the worker: the next hop of audio is only fed once the previous window
is published. That is what a microphone does when inference keeps up with real time, without the
pipeline sleeping between windows, so a benchmark of N windows takes N x latency instead of N seconds.
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from .audio import MODEL_RATE as RATE
from .audio import to_samples
from .classifier import Classifier
from .pipeline import Pipeline
from .publish.memory import MemoryPublisher
from .settings import ModelSettings, Settings, setting_range

MAX_SECONDS = 3600.0
"""Longest benchmark per model and thread count (one latency is kept per window)."""

LOOP_S = 20.0
"""Seconds of synthetic speech generated once and looped through a benchmark (a multiple of the hop)."""

RECORD_KEYS = ("model", "backend", "precision", "threads", "p50_ms", "p95_ms", "p99_ms", "infer_p50_ms",
               "rss_mb", "cpu_pct", "machine", "cores", "command", "version", "date_utc", "load_1min")
"""Keys every latency record has; records may carry more (n_windows, rtf)."""


def load_limit(cores: int | None) -> float:
    """1-minute load average above which other processes compete with a benchmark for the CPU.

    A benchmark keeps one core busy itself, so more than cores - 1 runnable processes means it
    waited for a core some of the time; one core counts as one so a 1-core machine is not always loaded.
    """
    return float(max((cores or 1) - 1, 1))


def cores_of(record: dict[str, Any]) -> int | None:
    """Core count of a record: its `cores` field, else the "N cores" / "N cpu" of its `machine` line."""
    if record.get("cores"):
        return int(record["cores"])
    import re

    m = re.search(r"(\d+) (?:cores|cpu)", str(record.get("machine", "")))
    return int(m.group(1)) if m else None


def is_loaded(loads: Any, cores: int | None) -> bool:
    """True when any of the 1-minute load averages (a number or a [before, after] list) exceeded
    load_limit(cores): the run shared the CPU and its latencies are pessimistic."""
    values = loads if isinstance(loads, (list, tuple)) else [loads]
    return any(v is not None and float(v) > load_limit(cores) for v in values)


def load_warning(loads: Any, cores: int | None) -> str | None:
    """One line saying that a run was measured under load, or None when it was not."""
    if not is_loaded(loads, cores):
        return None
    values = loads if isinstance(loads, (list, tuple)) else [loads]
    shown = " / ".join(f"{float(v):.2f}" for v in values if v is not None)
    return (f"warning: measured under load: 1-minute load average {shown} > {load_limit(cores):g} "
            f"({cores} cores - 1); other processes competed for the CPU, latencies are pessimistic")


def speechlike(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Deterministic voice-like float32 audio: gliding harmonic syllables with formants and breath noise.

    Loud enough (RMS about 0.1) that every 2 s window passes the 0.01 silence gate, so every window
    is inferred; pauses between syllables are short (speech that never stops).
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    out = np.zeros(n, dtype=np.float64)
    pos = 0
    while pos < n:
        dur = int(rng.uniform(0.12, 0.35) * rate)
        gap = int(rng.uniform(0.02, 0.12) * rate)
        t = np.arange(dur) / rate
        f0 = rng.uniform(100, 240) * (1 + rng.uniform(-0.2, 0.2) * t / max(t[-1], 1e-3))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        formants = rng.uniform([500, 1200, 2400], [900, 2000, 3200])
        syl = np.zeros(dur)
        for h in range(1, 25):
            fh = f0.mean() * h
            if fh > rate / 2 - 500:
                break
            gain = sum(1.0 / (1.0 + ((fh - f) / 150.0) ** 2) for f in formants) / h**0.5
            syl += gain * np.sin(h * phase)
        syl *= np.hanning(dur)
        syl += 0.02 * rng.standard_normal(dur)
        end = min(n, pos + dur)
        out[pos:end] = syl[: end - pos]
        pos = end + gap
    out += 0.003 * rng.standard_normal(n)
    out *= 0.1 / max(float(np.sqrt(np.mean(out**2))), 1e-9)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


class LockstepSource:
    """A live 16 kHz source that feeds the next hop only after the previous window is finished.

    `audio` is looped until `total` samples were fed, so a long benchmark does not hold (or let
    RSS count) minutes of audio.
    """

    live = True
    rate = RATE
    warnings: list[str] = []

    def __init__(self, audio: np.ndarray, hop_samples: int, window_samples: int, total: int | None = None):
        self.audio = np.asarray(audio, dtype=np.float32)
        self.total = len(self.audio) if total is None else int(total)
        self.hop = int(hop_samples)
        self.window = int(window_samples)
        self.pipeline: Pipeline | None = None
        self.collector: MemoryPublisher | None = None

    def _finished(self) -> int:
        c = self.pipeline.counters
        return len(self.collector.messages) + c.neutral_suppressed + c.errors + c.dropped

    def blocks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        fed, expected = 0, 0
        while fed < self.total and (stop is None or not stop.is_set()):
            at = fed % len(self.audio)
            block = self.audio[at : at + min(self.hop, self.total - fed)]
            fed += len(block)
            if fed >= self.window:
                expected += 1
            self.collector.arrived.clear()
            yield block[:, None]
            deadline = time.monotonic() + 60.0
            while self._finished() < expected and time.monotonic() < deadline:
                self.collector.arrived.wait(0.005)
                self.collector.arrived.clear()

    def stats(self) -> dict[str, int]:
        return {"overruns": 0, "reopens": 0}

    def close(self) -> None:
        pass


def machine() -> str:
    """One line: CPU model, cores, OS, Python (for the `machine` field of each record)."""
    cpu = platform.processor() or platform.machine()
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                found.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    # x86 names the CPU in "model name"; a Raspberry Pi names the board in "Model" / "Hardware"
    cpu = found.get("model name") or found.get("hardware") or found.get("model") or cpu
    if found.get("model name") and found.get("model") and not found["model"].isdigit():
        cpu = f"{found['model']} ({found['model name']})"
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, " \
           f"Python {platform.python_version()}"


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc (Linux) or getrusage."""
    cur = peak = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(cur if cur is not None else peak, 1), round(peak, 1)


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def bench_model(model: Classifier, *, seconds: float = 60.0, settings: Settings | None = None,
                warmup: int = 3, backend: str | None = None, precision: str | None = None,
                threads: int | None = None, command: str = "", seed: int = 0) -> dict[str, Any]:
    """Stream `seconds` of synthetic speech through the real Pipeline with `model`; one latency record.

    `model` is any Classifier (id, labels, window_samples, predict, close), so benchmark scripts
    can time other runtimes (e.g. plain PyTorch) through the very same pipeline.
    cpu_pct is the CPU time the process spent per second of audio (100 = one core busy all the
    time at the configured hop): what continuous speech costs; rtf is wall time per window / hop.
    """
    settings = settings or Settings()
    hop, window = settings.window.hop_samples, settings.window.window_samples
    for _ in range(warmup):  # first calls allocate tensors and JIT kernels
        model.predict(speechlike(settings.window.window_s, seed=seed + 99))
    loop = speechlike(LOOP_S, seed=seed)  # looped: content does not change these models' compute
    source = LockstepSource(loop, hop, window, total=to_samples(seconds))
    collector = MemoryPublisher()
    # The synthetic speech is nobody's voice, so a foreground head may call every window background;
    # such a window has run both heads all the same, so the background gate is off here and every
    # inferred window's latency is published.
    timed = replace(settings, output=replace(settings.output, stats_interval_s=0),
                    gate=replace(settings.gate, background_threshold=0.0))
    pipeline = Pipeline(timed, model, [collector])
    source.pipeline, source.collector = pipeline, collector
    load_before = os.getloadavg()[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pipeline.run(source)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    lat = [float(m["latency_ms"]) for m in collector.messages if not m["gated"]]
    if not lat:
        raise RuntimeError(f"model {model.id}: no window was inferred (all {len(collector.messages)} gated)")
    infer = list(pipeline.counters.infer_ms)
    n = len(lat)
    entry = getattr(model, "entry", None)
    _, peak = rss_mb()
    audio_s = (n - 1) * settings.window.hop_s + settings.window.window_s
    return {
        "model": model.id,
        "backend": backend or _backend_of(entry),
        "precision": precision or (entry.quantization if entry is not None else "float32"),
        "threads": threads,
        "p50_ms": _pct(lat, 50),
        "p95_ms": _pct(lat, 95),
        "p99_ms": _pct(lat, 99),
        "infer_p50_ms": _pct(infer, 50),
        "rss_mb": peak,
        "cpu_pct": round(100.0 * cpu_s / max(n * settings.window.hop_s, 1e-9), 1),
        # CPU seconds per window: with 1 thread, about the latency an idle core would give, so a useful
        # comparison when the machine is shared (wall-clock latency then includes waiting for a core)
        "cpu_ms_per_window": round(1000.0 * cpu_s / n, 1),
        "machine": machine(),
        "cores": os.cpu_count(),
        "command": command,
        "version": _version(),
        "n_windows": n,
        "mean_ms": round(float(np.mean(lat)), 2),
        "rtf": round(float(np.mean(lat)) / 1000.0 / settings.window.hop_s, 4),
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall_s, 2),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "latencies_ms": [round(x, 3) for x in lat],
    }


def _version() -> str:
    from . import __version__

    return __version__


def _backend_of(entry: Any) -> str:
    if entry is None:
        return "?"
    kinds = [f.file.rsplit(".", 1)[-1].lower() for _, f in entry.files()]
    kinds = list(dict.fromkeys("onnxruntime" if k == "onnx" else k for k in kinds))
    return "+".join(kinds)


def run(model_ids: list[str | None], *, seconds: float, threads: tuple[int, ...] = (1,),
        settings: Settings | None = None, command: str = "") -> list[dict[str, Any]]:
    """Load each model at each thread count and benchmark it (one process: RSS grows with each model)."""
    from .model import load_model

    settings = settings or Settings()
    records = []
    for model_id in model_ids:
        for t in threads:
            ms: ModelSettings = replace(settings.model, id=model_id, threads=t)
            model = load_model(ms)
            records.append(bench_model(model, seconds=seconds, settings=replace(settings, model=ms),
                                       threads=t, command=command))
    return records


TABLE_COLS = (("model", "model"), ("backend", "backend"), ("precision", "prec"), ("threads", "thr"),
              ("n_windows", "windows"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
              ("infer_p50_ms", "infer p50"), ("cpu_ms_per_window", "CPU ms/win"), ("rtf", "RTF"),
              ("cpu_pct", "CPU %"), ("rss_mb", "RSS MB"))


def format_table(records: list[dict[str, Any]], markdown: bool = False) -> str:
    """Records as an aligned text table (or a Markdown table)."""
    rows = [[h for _, h in TABLE_COLS]]
    rows += [["" if r.get(k) is None else str(r.get(k)) for k, _ in TABLE_COLS] for r in records]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths, strict=True))) for r in rows)


def cli_bench(model_ids: tuple[str, ...], seconds: float, threads: tuple[int, ...], config_path: str | None,
              as_json: bool, command: str = "") -> None:
    """What `edge-ser bench` runs: benchmark, then print a table (or JSON lines)."""
    import json
    import logging

    import click

    from .config import load_settings
    from .errors import UserError

    settings = load_settings(config_path)
    min_s = settings.window.window_s + settings.window.hop_s
    # written so that NaN fails too (every comparison with NaN is false)
    if not min_s <= seconds <= MAX_SECONDS:
        raise UserError(f"--seconds must be from {min_s:g} (two windows at the configured window/hop) "
                        f"to {MAX_SECONDS:g}")
    lo, hi = setting_range(ModelSettings, "threads")
    if any(not lo <= t <= hi for t in threads):
        raise UserError(f"--threads must be from {lo} to {hi}")
    logging.getLogger("edge_ser").setLevel(logging.WARNING)
    records = run(list(model_ids) or [settings.model.id], seconds=seconds, threads=threads or (1, 2),
                  settings=settings, command=command)
    for r in records:
        r.pop("latencies_ms", None)
    loads = [records[0]["load_1min"][0], records[-1]["load_1min"][1]]
    warning = load_warning(loads, os.cpu_count())
    if warning:  # stderr, so that --json output stays one record per line
        click.echo(warning, err=True)
    if as_json:
        for r in records:
            click.echo(json.dumps(r))
        return
    click.echo(f"machine: {machine()}; 1-minute load average before / after: {loads[0]} / {loads[1]}")
    click.echo("latency = last sample of a 2 s window -> result message published (ms); "
               "RTF = mean latency / hop; CPU % = process CPU per second of continuous speech")
    click.echo(format_table(records))
