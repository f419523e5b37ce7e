"""Footprint of the daemon per model: peak RSS and CPU share of `edge-ser listen --input FILE --realtime`.

    nice -n 5 python3 -m bench.footprint                     # every manifest model + random HuBERT INT8
    python3 -m bench.footprint --models yamnet-dev --seconds 20 --out /tmp/fp.json
    python3 -m bench.footprint --models A B --no-hubert --seconds 30 --merge  # only A, B replaced in --out

For each model, two runs of the real CLI in a child process, paced like a microphone (--realtime):
- `silent`: a quiet room (pink noise at RMS 0.002, below the 0.01 gate): every window is gated, the
  model never runs; what the daemon costs while nobody speaks.
- `speech`: synthetic speech that never stops (edge_ser.benchmark.speechlike): every window is inferred
  (with the background gate off: run_config).

peak_rss_mb is the child's maximum resident set (os.wait4 rusage, whole run: imports, model load,
streaming). cpu_pct is CPU time (user + system, from /proc/<pid>/stat) over wall time in the steady
state, from `--settle` seconds after start to the end, so start-up (imports, model load) is excluded;
100 = one core. HuBERT without real weights runs through a manifest written under cache/bench/ that
points at bench/hubert_random.py's ONNX files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import soundfile as sf

from bench.options import run
from edge_ser.audio import MODEL_RATE as RATE

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CACHE = REPO / "cache" / "bench"
TICK = os.sysconf("SC_CLK_TCK")


def audio_files(seconds: float) -> dict[str, Path]:
    """The silent-room and never-ending-speech WAVs (cached)."""
    from bench.stream_eval import pink_noise
    from edge_ser.benchmark import speechlike

    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind in ("silent", "speech"):
        path = CACHE / f"footprint_{kind}_{seconds:g}s.wav"
        if not path.exists():
            n = int(seconds * RATE)
            x = (0.002 * pink_noise(n, np.random.default_rng(1)) if kind == "silent"
                 else speechlike(seconds, seed=1))
            sf.write(path, x, RATE, subtype="PCM_16")
        out[kind] = path
    return out


def hubert_config() -> tuple[Path, list[str]]:
    """A config naming the manifest of the random-weight HuBERT ONNX files (bench/hubert_random.py)."""
    import yaml

    from bench.hubert_random import MANIFEST, export_onnx

    ids = export_onnx()
    config = CACHE / "hubert_config.yaml"
    config.write_text(yaml.safe_dump({"model": {"manifest": str(MANIFEST)}}))
    return config, [ids[1], ids[0]]


def run_config(base: Path | None, kind: str) -> Path | None:
    """The config of one run: `base` (or none), and for `speech` the background gate off. The synthetic
    speech is nobody's voice, so a foreground head would call every window background after the model
    has run on it: the same cost, but no window would count as inferred."""
    if kind != "speech":
        return base
    import yaml

    data = (yaml.safe_load(base.read_text()) or {}) if base is not None else {}
    data["gate"] = {**data.get("gate", {}), "background_threshold": 0.0}
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"footprint_speech_{base.stem if base is not None else 'default'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)


def measure(model: str, wav: Path, config: Path | None, settle: float) -> dict[str, Any]:
    """Run `edge-ser listen --input wav --realtime` once; peak RSS, steady CPU %, windows published."""
    # this interpreter's own package, not whichever `edge-ser` PATH finds first
    cmd = [sys.executable, "-m", "edge_ser", "listen", "--input", str(wav), "--realtime", "--model", model]
    if config is not None:
        cmd += ["--config", str(config)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        proc.returncode, usage, cpu, steady = watch(proc, t0, settle)
        out.seek(0)
        err.seek(0)
        lines = [json.loads(ln) for ln in out.read().decode().splitlines() if ln.startswith("{")]
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-800:]}")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_pct": None if cpu is None else round(cpu, 1),
            "steady_s": round(steady, 1), "wall_s": round(time.monotonic() - t0, 1),
            "published": len(lines), "inferred": sum(1 for m in lines if not m.get("gated")),
            "command": " ".join(["edge-ser", *cmd[3:]])}


def watch(proc: subprocess.Popen, t0: float, settle: float) -> tuple[int, Any, float | None, float]:
    """Wait for `proc`, sampling its CPU time: (exit code, rusage, CPU % of one core after the first
    `settle` seconds or None when it ended sooner, seconds that share covers)."""
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
    cpu = None if c1 is None or t2 <= t1 else 100 * (c2 - c1) / (t2 - t1)
    return os.waitstatus_to_exitcode(status), usage, cpu, (t2 - t1) if t1 else 0.0


@dataclass(frozen=True)
class FootprintOptions:
    """What one footprint run measures (the options of `python -m bench footprint`)."""

    models: tuple[str, ...] = ()
    """Manifest ids (empty: every manifest model, plus the random HuBERT INT8)."""
    seconds: float = 40.0
    """Audio per run (paced in real time)."""
    settle: float = 10.0
    """Seconds excluded from the CPU share."""
    no_hubert: bool = False
    """Leave out the random HuBERT INT8."""
    merge: bool = False
    """Keep the other models' records in `out` (a measured model's record is replaced)."""
    out: str = str(RESULTS / "footprint.json")
    """Where the records go."""
    command: str = ""
    """The command line, recorded in each record."""


@click.command(help=__doc__.splitlines()[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", multiple=True, metavar="ID...",
              help="Manifest ids (default: all, plus random HuBERT INT8).")
@click.option("--seconds", type=float, default=FootprintOptions.seconds, show_default=True,
              help="Audio per run (paced in real time).")
@click.option("--settle", type=float, default=FootprintOptions.settle, show_default=True,
              help="Seconds excluded from the CPU share.")
@click.option("--no-hubert", is_flag=True, help="Leave out the random HuBERT INT8.")
@click.option("--out", default=FootprintOptions.out, show_default=True)
@click.option("--merge", is_flag=True,
              help="Keep the other models' records in --out (a measured model's record is replaced).")
def command(**options: Any) -> int:
    argv = click.get_current_context().obj or ()
    return footprint(FootprintOptions(**options, command="python3 -m bench.footprint " + " ".join(argv)))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench footprint ARGS` and `python -m bench.footprint ARGS`."""
    return run(command, argv, "python -m bench footprint", "--models")


def footprint(args: FootprintOptions) -> int:
    """Peak RSS and CPU share of each model, silent room and non-stop speech; writes args.out."""
    command = args.command
    from edge_ser import __version__
    from edge_ser.benchmark import load_warning, machine
    from edge_ser.manifest import load_manifest

    files = audio_files(args.seconds)
    plan: list[tuple[str, Path | None]] = [(m, None) for m in (args.models or list(load_manifest().models))]
    if not args.no_hubert and not args.models:
        config, ids = hubert_config()
        plan.append((ids[0], config))
    records = []
    for model, config in plan:
        rec: dict[str, Any] = {"model": model, "machine": machine(), "cores": os.cpu_count(),
                               "command": command, "version": __version__,
                               "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for kind, wav in files.items():
            load = os.getloadavg()[0]
            r = measure(model, wav, run_config(config, kind), args.settle)
            rec[kind] = {**r, "load_1min": round(load, 2), "load_1min_after": round(os.getloadavg()[0], 2)}
            warning = load_warning([load, rec[kind]["load_1min_after"]], os.cpu_count())
            if warning:
                print(warning, file=sys.stderr, flush=True)
            print(f"{model:28s} {kind:6s} peak RSS {r['peak_rss_mb']:7.1f} MB  CPU {r['cpu_pct']}% "
                  f"({r['published']} published, {r['inferred']} inferred, load {load:.2f})", flush=True)
        rec["peak_rss_mb"] = max(rec["silent"]["peak_rss_mb"], rec["speech"]["peak_rss_mb"])
        rec["cpu_pct_silent"] = rec["silent"]["cpu_pct"]
        rec["cpu_pct_speech"] = rec["speech"]["cpu_pct"]
        records.append(rec)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        from bench.stream_eval import merged

        # the models measured side by side in this run stay next to each other, at the end
        records = merged(out, records)
    out.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
