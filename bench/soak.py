"""Soak test: one hour of audio through the real pipeline at an accelerated rate, broker bounced.

    python3 bench/soak.py --out bench/results/soak.json

What runs is what `edge-ser listen --input FILE --mqtt HOST:PORT` runs (settings from load_settings,
the manifest's default model, FileSource, Pipeline, MqttPublisher), in this process so that its
counters and RSS can be read exactly. The audio is an hour of TESS utterances with pauses and
longer silences, written once as 48 kHz stereo FLAC under cache/soak/ (so the soundfile decoder,
the mix-down and the 48 -> 16 kHz resampler run the whole hour too). A real mosquitto on loopback is
stopped and restarted `--bounces` times during the run; a subscriber in a separate process (so its
memory does not count) holds a persistent QoS 1 session and counts what arrives.

Reported: windows processed (gated / inferred), dropped, published, delivered to the subscriber,
RSS after warm-up (10 % of the audio) and at the end. Exit 1 on any loss (a dropped window, an
error, a result the broker never delivered) or RSS growth >= --max-growth-mb (default 5).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the mosquitto helper shared with the test suite

from mosquitto import Mosquitto  # noqa: E402

from bench.options import run  # noqa: E402
from edge_ser.audio import MODEL_RATE as RATE  # noqa: E402
from edge_ser.config import load_settings  # noqa: E402
from edge_ser.model import load_model  # noqa: E402
from edge_ser.pipeline import Pipeline  # noqa: E402
from edge_ser.publish.mqtt import MqttPublisher  # noqa: E402

TESS = REPO.parent / "shared" / "corpora" / "tess" / "TESS Toronto emotional speech set data"
CACHE = REPO / "cache" / "soak"
OUT_RATE = 48000


# -- the hour of audio ------------------------------------------------------------------------------

def soak_audio(seconds: float, seed: int = 0) -> Path:
    """48 kHz stereo FLAC of TESS utterances, 0.2-4 s pauses, a 20-40 s silence every ~5 min (cached)."""
    path = CACHE / f"soak_{int(seconds)}s_seed{seed}_48k_stereo.flac"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    folders = sorted(p for p in TESS.iterdir() if p.is_dir())
    lists = [sorted(f.glob("*.opus")) for f in folders]
    tmp = path.with_suffix(".part")
    resampler = soxr.ResampleStream(RATE, OUT_RATE, 1, dtype="float32")
    total = int(seconds * RATE)
    written = 0
    next_silence = rng.uniform(240, 360) * RATE
    i = 0
    with sf.SoundFile(tmp, "w", samplerate=OUT_RATE, channels=2, subtype="PCM_16", format="FLAC") as out:
        while written < total:
            if written >= next_silence:
                seg = _noise(rng, rng.uniform(20, 40))
                next_silence = written + rng.uniform(240, 360) * RATE
            else:
                files = lists[i % len(lists)]
                clip, sr = sf.read(files[(i // len(lists)) % len(files)], dtype="float32")
                i += 1
                assert sr == RATE, sr
                clip = clip if clip.ndim == 1 else clip.mean(axis=1)
                seg = np.concatenate([clip * rng.uniform(0.5, 1.5), _noise(rng, rng.uniform(0.2, 4.0))])
            seg = seg[: total - written]
            written += len(seg)
            y = resampler.resample_chunk(seg.astype(np.float32), last=written >= total)
            # A mic's two channels are never identical: right is quieter and slightly noisier.
            right = 0.8 * y + rng.standard_normal(len(y)).astype(np.float32) * 1e-4
            out.write(np.stack([y, right], axis=1))
    tmp.rename(path)
    return path


def _noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Room noise far below the 0.01 RMS gate."""
    return (rng.standard_normal(int(seconds * RATE)) * 0.002).astype(np.float32)


# -- the subscriber (separate process) --------------------------------------------------------------

SUBSCRIBER = r"""
import json, signal, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, prefix, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()
state = {"received": 0, "unique": 0, "duplicates": 0, "status": [], "stats": 0, "connects": 0}
seen = set()
def on_connect(c, u, f, reason, p):
    if not reason.is_failure:
        state["connects"] += 1
        c.subscribe(prefix + "/#", qos=1)
def on_message(c, u, m):
    with lock:
        if m.topic.endswith("/emotion"):
            key = json.loads(m.payload)["window_start"]
            state["received"] += 1
            if key in seen:
                state["duplicates"] += 1
            else:
                seen.add(key)
                state["unique"] += 1
        elif m.topic.endswith("/status"):
            state["status"].append(m.payload.decode())
        elif m.topic.endswith("/stats"):
            state["stats"] += 1
def dump():
    with lock:
        text = json.dumps(state)
    with open(out + ".tmp", "w") as f:
        f.write(text)
    import os; os.replace(out + ".tmp", out)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-ser-soak-subscriber", clean_session=False)
c.on_connect, c.on_message = on_connect, on_message
c.reconnect_delay_set(0.1, 0.5)
c.connect(host, port, keepalive=10)
c.loop_start()
while not stop.wait(0.25):
    dump()
dump()
c.disconnect(); c.loop_stop()
"""


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# -- measurement ------------------------------------------------------------------------------------

def rss_mb() -> float:
    """Resident set size of this process in MB (after a full garbage collection)."""
    gc.collect()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_until(cond: Any, timeout_s: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def _version() -> str:
    from edge_ser import __version__

    return __version__


@dataclass(frozen=True)
class SoakOptions:
    """What one soak run does (the options of `python -m bench soak`)."""

    audio_s: float = 3600.0
    """Seconds of audio (default one hour)."""
    bounces: int = 4
    """Broker stop/start cycles during the run."""
    down_s: float = 3.0
    """Seconds the broker stays down each time."""
    model: str | None = None
    """Model id (default: the manifest's default)."""
    threads: int = 1
    """Inference threads."""
    max_growth_mb: float = 5.0
    """RSS growth that fails the run."""
    seed: int = 0
    """Seed of the synthetic audio."""
    out: Path | None = None
    """Write the JSON result here (e.g. bench/results/soak.json)."""
    argv: tuple[str, ...] = ()
    """The arguments as given (recorded in the result)."""


@click.command(help=__doc__.split("\n\n")[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--audio-s", type=float, default=SoakOptions.audio_s, show_default=True,
              help="Seconds of audio (default one hour).")
@click.option("--bounces", type=int, default=SoakOptions.bounces, show_default=True,
              help="Broker stop/start cycles during the run.")
@click.option("--down-s", type=float, default=SoakOptions.down_s, show_default=True,
              help="Seconds the broker stays down each time.")
@click.option("--model", default=None, help="Model id (default: the manifest's default).")
@click.option("--threads", type=int, default=SoakOptions.threads, show_default=True,
              help="Inference threads.")
@click.option("--max-growth-mb", type=float, default=SoakOptions.max_growth_mb, show_default=True,
              help="RSS growth that fails the run.")
@click.option("--seed", type=int, default=SoakOptions.seed, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON result here (e.g. bench/results/soak.json).")
def command(**options: Any) -> int:
    return soak(SoakOptions(**options, argv=tuple(click.get_current_context().obj or ())))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench soak ARGS` and `python -m bench.soak ARGS`."""
    return run(command, argv, "python -m bench soak")


def soak(args: SoakOptions) -> int:
    """One soak run; 0 when nothing was lost and memory stayed flat, else 1."""
    audio = soak_audio(args.audio_s, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="edge-ser-soak-"))
    broker = Mosquitto(tmp).start()
    site = "soak"
    prefix = f"edge_ser/{site}"
    sub_out = tmp / "subscriber.json"
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port), prefix,
                            str(sub_out)])
    if not wait_until(lambda: read_json(sub_out).get("connects", 0) >= 1, 20):
        raise SystemExit("soak: the subscriber did not connect")

    overrides: dict[str, Any] = {
        "site": site, "audio.input": str(audio), "mqtt.host": broker.host, "mqtt.port": broker.port,
        "mqtt.qos": 1, "mqtt.reconnect_min_s": 0.5, "mqtt.reconnect_max_s": 2.0,
        "output.stats_interval_s": 10.0, "output.log_level": "WARNING", "model.threads": args.threads,
    }
    if args.model:
        overrides["model.id"] = args.model
    settings = load_settings(None, overrides)
    import logging

    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(settings.output.log_level)

    from edge_ser.listen import open_source

    model = load_model(settings.model)
    publisher = MqttPublisher(settings.mqtt, settings.site)
    pipeline = Pipeline(settings, model, [publisher])
    source = open_source(settings)
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(pipeline.run(source)), name="soak-pipeline")

    load_before = os.getloadavg()[0]
    rss_start = rss_mb()
    samples: list[tuple[float, float]] = []  # (audio seconds, RSS MB)
    bounces: list[dict[str, float]] = []
    bounce_at = [args.audio_s * (k + 1) / (args.bounces + 1) for k in range(args.bounces)]
    warm_at = 0.1 * args.audio_s
    rss_warm: float | None = None
    t0 = time.monotonic()
    runner.start()
    next_sample = 0.0
    while runner.is_alive():
        runner.join(0.2)
        done_s = pipeline.counters.audio_s
        if done_s >= next_sample:
            samples.append((round(done_s, 1), round(rss_mb(), 2)))
            next_sample += args.audio_s / 20
        if rss_warm is None and done_s >= warm_at:
            rss_warm = rss_mb()
        if bounce_at and done_s >= bounce_at[0]:
            bounce_at.pop(0)
            before = publisher.stats()
            t_stop = time.monotonic()
            broker.stop()
            time.sleep(args.down_s)
            broker.start()
            bounces.append({"audio_s": round(done_s, 1), "wall_s": round(t_stop - t0, 1),
                            "down_s": round(time.monotonic() - t_stop, 2),
                            "queued_before": before["queued"]})
    wall = time.monotonic() - t0
    source.close()
    drained = wait_until(lambda: publisher.stats()["queued"] == 0, 120)
    rss_end = rss_mb()
    samples.append((round(pipeline.counters.audio_s, 1), round(rss_end, 2)))
    pub_stats = publisher.stats()
    publisher.close()
    stats = result or pipeline.stats()
    expected = stats["published"]
    wait_until(lambda: read_json(sub_out).get("unique", 0) >= expected
               and "offline" in read_json(sub_out).get("status", []), 30)
    sub.send_signal(signal.SIGTERM)
    sub.wait(10)
    received = read_json(sub_out)
    broker.stop()

    rss_warm = rss_warm if rss_warm is not None else rss_start
    growth = rss_end - rss_warm
    problems = []
    if stats["dropped"]:
        problems.append(f"{stats['dropped']} windows dropped")
    if stats["errors"]:
        problems.append(f"{stats['errors']} window/publisher errors")
    if stats["windows"] != stats["gated"] + stats["inferred"] - stats.get("gated_after_inference", 0):
        problems.append("windows != gated + inferred - gated_after_inference")
    if not drained or pub_stats["queued"]:
        problems.append(f"{pub_stats['queued']} results still queued for the broker")
    if pub_stats["dropped"]:
        problems.append(f"{pub_stats['dropped']} results dropped by the MQTT queue")
    if received.get("unique", 0) != expected:
        problems.append(f"subscriber got {received.get('unique', 0)} of {expected} results")
    if growth >= args.max_growth_mb:
        problems.append(f"RSS grew {growth:.2f} MB (limit {args.max_growth_mb} MB)")
    if len(bounces) != args.bounces:
        problems.append(f"only {len(bounces)} of {args.bounces} broker bounces happened")

    report = {
        "command": "python3 bench/soak.py " + " ".join(args.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "cores": os.cpu_count(),
        "version": _version(),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "model": model.id,
        "audio_file": str(audio.relative_to(REPO)),
        "audio_s": stats["audio_s"],
        "wall_s": round(wall, 1),
        "speedup_x": round(stats["audio_s"] / wall, 1) if wall else None,
        "windows": stats["windows"],
        "gated": stats["gated"],
        "inferred": stats["inferred"],
        "gated_after_inference": stats.get("gated_after_inference", 0),
        "neutral_suppressed": stats["neutral_suppressed"],
        "dropped": stats["dropped"],
        "errors": stats["errors"],
        "published": expected,
        "mqtt": pub_stats,
        "delivered": received.get("unique", 0),
        "duplicates": received.get("duplicates", 0),
        "status_seen": received.get("status", []),
        "stats_messages": received.get("stats", 0),
        "infer_ms_p50": stats.get("infer_ms_p50"),
        "bounces": bounces,
        "rss_mb": {"start": round(rss_start, 2), "after_warmup": round(rss_warm, 2),
                   "end": round(rss_end, 2), "growth": round(growth, 2),
                   "max": round(max(r for _, r in samples), 2)},
        "rss_samples": " ".join(f"{a:.0f}s:{r:.1f}MB" for a, r in samples),
        "ok": not problems,
        "problems": problems,
    }
    text = json.dumps(report, indent=2)
    print(text)
    from edge_ser.benchmark import load_warning

    warning = load_warning(report["load_1min"], os.cpu_count())
    if warning:
        print(warning, file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
