"""Models side by side in one process, interleaved, and where each one's time per window goes.

    python3 -m bench.compare --model yamnet-mlp-allplus-int8 --model logmel-cnn-allplus-fp16 \\
        --seconds 60 --threads 1 --rounds 10 --blas-threads default --blas-threads 1

Latency: the models are loaded once into this process and `edge_ser.benchmark.bench_model` streams
`--seconds` of synthetic speech through each variant per round (a variant is a model with numpy's
BLAS thread pool at its default size or limited with threadpoolctl, `--blas-threads`); the order
rotates every round, so on a shared machine load that comes and goes hits every variant alike. The
pooled windows of all rounds give one record per variant, merged into bench/results/latency.json under
the run's name (the sequential records of `bench.latency` are kept).

Breakdown: each stage of one 2 s window, timed one call at a time, stages and variants interleaved,
wall, process CPU and calling-thread CPU time: for a log-mel model the numpy frontend
(`edge_ser.logmel.log_mel`) and the TFLite invoke on its spectrogram, for a backbone model the backbone
invoke (YAMNet's frontend is inside its TFLite graph) and the head; then the whole `predict`. Written to
bench/results/latency_breakdown.json, one record per variant.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_ser.audio import MODEL_RATE

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment that sets numpy's BLAS thread pool; recorded because it changes the process CPU time."""


@dataclass
class Variant:
    """A loaded model, run with numpy's BLAS pool at its default size (blas None) or limited to `blas`."""

    model: Any
    blas: int | None = None

    @property
    def id(self) -> str:
        return self.model.id if self.blas is None else f"{self.model.id}, BLAS {self.blas} thread(s)"

    @property
    def blas_label(self) -> str | int:
        return "default" if self.blas is None else self.blas

    @contextlib.contextmanager
    def limits(self) -> Iterator[None]:
        """numpy's BLAS pool limited to `blas` threads inside the block (threadpoolctl), else untouched."""
        if self.blas is None:
            yield
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas, user_api="blas"):
            yield


def thread_env() -> str:
    """The BLAS thread settings of this process, as NAME=value words ("" when none is set)."""
    return " ".join(f"{k}={os.environ[k]}" for k in THREAD_ENV if k in os.environ)


def run_name(model_ids: list[str], threads: int, blas: list[str | int] | None = None) -> str:
    """Names one interleaved run in latency.json; the BLAS thread settings are part of it, because
    numpy's helper threads compete with the inference thread for the cores."""
    env = thread_env()
    pools = "" if not blas or blas == ["default"] else "; numpy BLAS threads: " + ", ".join(map(str, blas))
    return (f"interleaved in one process, {threads} thread(s): " + " vs ".join(model_ids) + pools
            + (f", {env}" if env else ""))


def canonical_command(model_ids: tuple[str, ...] | list[str], seconds: float, threads: int, rounds: int,
                      repeat: int, blas: list[str | int] | None = None) -> str:
    """The command line that reruns this measurement (what `bench all` runs), however it was invoked:
    BLAS thread settings first, then every option that changes the result."""
    env = thread_env()
    opts = " ".join(f"--model {m}" for m in model_ids)
    pools = "".join(f" --blas-threads {b}" for b in blas or [] if blas != ["default"])
    return ((f"{env} " if env else "") + f"python3 -m bench.compare {opts} --seconds {seconds:g} "
            f"--threads {threads} --rounds {rounds} --repeat {repeat}{pools}")


def interleaved(variants: list[Variant], seconds: float, threads: int, rounds: int, command: str,
                run: str) -> list[dict[str, Any]]:
    """One pooled latency record per variant over `rounds` rounds, the order rotating each round."""
    from edge_ser.benchmark import bench_model

    per: dict[str, list[dict[str, Any]]] = {v.id: [] for v in variants}
    for r in range(rounds):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            with v.limits():
                rec = bench_model(v.model, seconds=seconds, threads=threads, command=command, warmup=1)
            per[v.id].append(rec)
    return [dict(pool(per[v.id], run), config=v.id, blas_threads=v.blas_label) for v in variants]


def pool(rounds: list[dict[str, Any]], run: str) -> dict[str, Any]:
    """Records of one model's rounds -> one record over all their windows."""
    lat = [x for r in rounds for x in r["latencies_ms"]]
    n = len(lat)
    cpu_ms = sum(r["cpu_ms_per_window"] * r["n_windows"] for r in rounds)
    first, last = rounds[0], rounds[-1]
    rec = {k: first[k] for k in ("model", "backend", "precision", "threads", "machine", "cores", "command",
                                  "version", "date_utc")}
    rec.update({
        "config": first["model"],
        "run": run,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        # the median of the rounds' medians: the pipeline does not hand out per-window inference times
        "infer_p50_ms": round(float(np.median([r["infer_p50_ms"] for r in rounds])), 2),
        "cpu_ms_per_window": round(cpu_ms / n, 1),
        "cpu_pct": round(cpu_ms / n / 10.0, 1),  # per 1 s hop of continuous speech
        # one process held every model: this is the peak of all of them together
        "rss_mb": max(r["rss_mb"] for r in rounds),
        "rss_shared": True,
        "n_windows": n,
        "rounds": len(rounds),
        "round_p50_ms": [r["p50_ms"] for r in rounds],
        "mean_ms": round(float(np.mean(lat)), 2),
        "rtf": round(float(np.mean(lat)) / 1000.0, 4),
        "audio_s": round(sum(r["audio_s"] for r in rounds), 1),
        "wall_s": round(sum(r["wall_s"] for r in rounds), 2),
        "load_1min": [first["load_1min"][0], last["load_1min"][1]],
        "latencies_ms": lat,
    })
    return rec


def stages(model: Any) -> dict[str, Any]:
    """name -> zero-argument call, the parts of one predict() on a fixed 2 s window of speech.

    Reaches into EmotionModel's backends on purpose: predict() times only their sum.
    """
    from edge_ser.benchmark import speechlike
    from edge_ser.logmel import log_mel
    from edge_ser.model import _shape_like
    from edge_ser.pooling import pool_frames, pool_states
    from edge_ser.whisper_mel import whisper_log_mel

    x = speechlike(model.window_samples / MODEL_RATE, seed=7)
    head, head_in = model._head.backend, model._head.input
    out: dict[str, Any] = {}
    if model._backbone is not None and model.entry.frontend == "whisper_logmel":
        bb, bb_in, bb_out = model._backbone, model._bb_in, model._bb_out
        mel = whisper_log_mel(x)[None]
        features = pool_states(bb.run({bb_in: mel})[bb_out], model.entry.pooling)[None, :]
        out["frontend: edge_ser.whisper_mel.whisper_log_mel (numpy)"] = lambda: whisper_log_mel(x)
        out["encoder onnxruntime run"] = lambda: bb.run({bb_in: mel})
        out["head invoke"] = lambda: head.run({head_in: features})
    elif model._backbone is not None:
        bb, bb_in, bb_out = model._backbone, model._bb_in, model._bb_out
        frames = bb.run({bb_in: x})[bb_out]
        features = pool_frames(frames.reshape(-1, frames.shape[-1]), model.entry.pooling)[None, :]
        out["backbone TFLite invoke (frontend inside)"] = lambda: bb.run({bb_in: x})
        out["head invoke"] = lambda: head.run({head_in: features})
    elif model.entry.frontend == "logmel":
        spec = _shape_like(log_mel(x), model._head)
        out["frontend: edge_ser.logmel.log_mel (numpy)"] = lambda: log_mel(x)
        out["model TFLite invoke"] = lambda: head.run({head_in: spec})
    out["whole predict()"] = lambda: model.predict(x)
    return out


def breakdown(variants: list[Variant], threads: int, repeat: int, command: str) -> list[dict[str, Any]]:
    """Median wall and mean CPU milliseconds per stage, calls interleaved across stages and variants."""
    from edge_ser import __version__
    from edge_ser.benchmark import machine

    calls = [(v, name, fn) for v in variants for name, fn in stages(v.model).items()]
    for v, _, fn in calls:  # warm-up: first calls allocate
        with v.limits():
            fn()
    wall: dict[tuple[str, str], list[float]] = {(v.id, n): [] for v, n, _ in calls}
    cpu: dict[tuple[str, str], list[float]] = {(v.id, n): [] for v, n, _ in calls}
    own: dict[tuple[str, str], list[float]] = {(v.id, n): [] for v, n, _ in calls}
    load0 = os.getloadavg()[0]
    for _ in range(repeat):
        for v, name, fn in calls:
            with v.limits():
                c0, o0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
                fn()
                wall[(v.id, name)].append(1000 * (time.perf_counter() - t0))
                cpu[(v.id, name)].append(1000 * (time.process_time() - c0))
                own[(v.id, name)].append(1000 * (time.thread_time() - o0))
    load1 = os.getloadavg()[0]
    records = []
    for v in variants:
        names = [n for w, n, _ in calls if w is v]
        records.append({
            "model": v.model.id, "blas_threads": v.blas_label, "threads": threads,
            "stages": [{"stage": n, "wall_ms_p50": round(float(np.median(wall[(v.id, n)])), 3),
                        "cpu_ms_mean": round(float(np.mean(cpu[(v.id, n)])), 3),
                        "thread_cpu_ms_mean": round(float(np.mean(own[(v.id, n)])), 3)} for n in names],
            "calls_per_stage": repeat, "window_s": v.model.window_samples / MODEL_RATE,
            "machine": machine(), "cores": os.cpu_count(), "command": command, "version": __version__,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_1min": [round(load0, 2), round(load1, 2)],
            "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        })
    return records


def breakdown_key(b: dict[str, Any]) -> tuple[str, str, str]:
    return b["model"], str(b.get("blas_threads", "default")), json.dumps(b.get("env", {}), sort_keys=True)


def parse_blas(values: tuple[str, ...]) -> list[int | None]:
    """--blas-threads values -> None (numpy's default pool) or a thread count, in the given order."""
    out: list[int | None] = []
    for v in values or ("default",):
        if v == "default":
            out.append(None)
        elif v.isdigit() and int(v) >= 1:
            out.append(int(v))
        else:
            raise click.BadParameter(f"{v!r}: expected 'default' or a thread count >= 1",
                                     param_hint="--blas-threads")
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_ids", multiple=True, required=True, metavar="ID",
              help="Manifest model id (repeat it: every model runs in the same process).")
@click.option("--seconds", type=float, default=60.0, show_default=True,
              help="Seconds of synthetic speech per variant and round.")
@click.option("--threads", type=int, default=1, show_default=True, help="Inference threads.")
@click.option("--rounds", type=int, default=5, show_default=True, help="Rounds (order rotates).")
@click.option("--repeat", type=int, default=200, show_default=True, help="Calls per stage in the breakdown.")
@click.option("--blas-threads", "blas", multiple=True, metavar="N|default",
              help="numpy BLAS pool size of a variant of every model (repeatable; default: numpy's own).")
@click.option("--out", type=click.Path(dir_okay=False), default=str(RESULTS / "latency.json"),
              show_default=True)
@click.option("--breakdown-out", type=click.Path(dir_okay=False),
              default=str(RESULTS / "latency_breakdown.json"), show_default=True)
def main(model_ids: tuple[str, ...], seconds: float, threads: int, rounds: int, repeat: int,
         blas: tuple[str, ...], out: str, breakdown_out: str) -> None:
    """Latency of models in one process, interleaved, and the time of each stage of a window."""
    import logging

    from edge_ser.benchmark import load_warning
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    logging.getLogger("edge_ser").setLevel(logging.WARNING)
    pools = parse_blas(blas)
    labels: list[str | int] = ["default" if b is None else b for b in pools]
    command = canonical_command(model_ids, seconds, threads, rounds, repeat, labels)
    models = [load_model(ModelSettings(id=i, threads=threads)) for i in model_ids]
    variants = [Variant(m, b) for b in pools for m in models]
    run = run_name(list(model_ids), threads, labels)
    records = interleaved(variants, seconds, threads, rounds, command, run)
    for r in records:
        click.echo(f"{r['config']:48s} n={r['n_windows']:5d} p50={r['p50_ms']:7.2f} p95={r['p95_ms']:7.2f} "
                   f"CPU/window={r['cpu_ms_per_window']:6.1f} ms rounds p50={r['round_p50_ms']} "
                   f"load={r['load_1min']}")
    costs = breakdown(variants, threads, repeat, command)
    for b in costs:
        for s in b["stages"]:
            click.echo(f"{b['model']:28s} BLAS {b['blas_threads']!s:8s} {s['stage']:45s} wall p50 "
                       f"{s['wall_ms_p50']:7.3f} ms  CPU {s['cpu_ms_mean']:7.3f} ms "
                       f"(calling thread {s['thread_cpu_ms_mean']:7.3f})")
    for loads in [r["load_1min"] for r in records] + [b["load_1min"] for b in costs]:
        warning = load_warning(loads, os.cpu_count())
        if warning:
            click.echo(warning, err=True)
            break
    from bench.latency import write

    write(records, Path(out), merge=True)
    bo = Path(breakdown_out)
    old = json.loads(bo.read_text()) if bo.exists() else []
    new = {breakdown_key(c) for c in costs}
    bo.write_text("[\n" + ",\n".join(json.dumps(b) for b in [b for b in old if breakdown_key(b) not in new]
                                       + costs) + "\n]\n")
    click.echo(f"wrote {bo}")


if __name__ == "__main__":
    main()
