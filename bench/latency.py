"""Latency of every model side by side, through the real listen pipeline: bench/results/latency.json.

    nice -n 5 python3 -m bench.latency                       # everything, threads 1 and 2
    python3 -m bench.latency --configs yamnet-dev --seconds 20 --out /tmp/lat.json

Each configuration (model x runtime x threads) runs in its own fresh process, so `rss_mb` is that
configuration's own peak RSS and one model's threads or allocator state cannot slow the next. All
configurations run in one invocation, one after the other, with the 1-minute load average noted in
each record (the machine is shared).

Configurations:
- every model of models/manifest.yaml (edge_ser.model.load_model, as the daemon runs it);
- `yamnet-backbone`: the YAMNet TFLite file alone (+ mean pooling, no head), the floor of that path;
- HuBERT-base (hubert-base config, RANDOM weights: latency only, see bench/hubert_random.py):
  `hubert-torch-pipeline` transformers pipeline("audio-classification") in float32 (how the paper
  served it), `hubert-torch` the bare PyTorch module call, `hubert-onnx-fp32` and `hubert-onnx-int8`
  (MatMul-only dynamic INT8) through edge_ser's own onnxruntime backend and EmotionModel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.options import run
from edge_ser.audio import MODEL_RATE

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
HUBERT_CONFIGS = ("hubert-torch-pipeline", "hubert-torch", "hubert-onnx-fp32", "hubert-onnx-int8")


def manifest_ids() -> list[str]:
    """Every model of models/manifest.yaml (YAMNet + heads, single-file models), as the daemon loads them."""
    from edge_ser.manifest import load_manifest

    return list(load_manifest().models)


# -- model objects with EmotionModel's interface ------------------------------------------------------

class _YamnetBackbone:
    """YAMNet TFLite + mean pooling, a constant head: what the backbone alone costs per window."""

    labels = ("anger_disgust", "fear_surprise", "happiness", "sadness")
    window_samples = 32000
    has_speech_score = True
    id = "yamnet-backbone"

    def __init__(self, threads: int):
        from edge_ser.backends import open_backend
        from edge_ser.manifest import shared_weights_dir

        self._bb = open_backend(shared_weights_dir() / "yamnet" / "yamnet.tflite", threads=threads)

    def predict(self, window: np.ndarray):
        from edge_ser.model import Prediction
        from edge_ser.pooling import pool_frames

        t0 = time.perf_counter()
        out = self._bb.run({"waveform": np.asarray(window, np.float32)})
        pool_frames(out["Identity_1"], "mean")
        speech = float(out["Identity"][:, 0].max())
        return Prediction({k: 0.25 for k in self.labels}, speech, (time.perf_counter() - t0) * 1000)

    def close(self) -> None:
        """Nothing to save."""


class _HubertTorch:
    """Random-weight HuBERT-base classifier in PyTorch float32, bare module or transformers pipeline."""

    labels = ("anger_disgust", "fear_surprise", "happiness", "sadness")
    window_samples = 32000
    has_speech_score = False

    def __init__(self, threads: int, use_pipeline: bool):
        import torch
        from transformers import HubertForSequenceClassification, pipeline

        from bench.hubert_random import torch_dir

        torch.set_num_threads(threads)
        self._torch = torch
        self.id = "hubert-base-random"
        self._model = HubertForSequenceClassification.from_pretrained(torch_dir()).eval()
        self._pipe = None
        if use_pipeline:
            # the folder's preprocessor_config.json: hubert-base-ls960's normalising feature extractor
            self._pipe = pipeline("audio-classification", model=str(torch_dir()), device=-1)

    def predict(self, window: np.ndarray):
        from edge_ser.model import Prediction

        t0 = time.perf_counter()
        x = np.asarray(window, np.float32)
        if self._pipe is not None:
            out = self._pipe({"raw": x, "sampling_rate": MODEL_RATE}, top_k=None)
            probs = {d["label"]: float(d["score"]) for d in out}
        else:
            with self._torch.inference_mode():
                logits = self._model(self._torch.from_numpy(x)[None]).logits
                p = self._torch.softmax(logits, dim=-1)[0].numpy()
            probs = dict(zip(self.labels, map(float, p), strict=True))
        return Prediction(probs, None, (time.perf_counter() - t0) * 1000)

    def close(self) -> None:
        """Nothing to save."""


def _hubert_onnx(threads: int, precision: str):
    """edge_ser's EmotionModel over the random HuBERT-base ONNX file that convert/ made (see
    bench/hubert_random.py), loaded from its own manifest exactly as the daemon loads a model."""
    from bench.hubert_random import MANIFEST, export_onnx
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    fp32, int8 = export_onnx()
    return load_model(ModelSettings(id=fp32 if precision == "fp32" else int8, manifest=str(MANIFEST),
                                    threads=threads)), "convert.hubert.convert_hubert"


def build(config: str, threads: int) -> tuple[Any, dict[str, Any]]:
    """(model object, record fields that describe it) for one configuration name."""
    if config == "yamnet-backbone":
        return _YamnetBackbone(threads), {"backend": "tflite", "precision": "dynamic-int8 (as published)"}
    if config == "hubert-torch-pipeline":
        return _HubertTorch(threads, True), {"backend": "transformers-pipeline", "precision": "float32",
                                             "weights": "random (latency only)"}
    if config == "hubert-torch":
        return _HubertTorch(threads, False), {"backend": "torch", "precision": "float32",
                                              "weights": "random (latency only)"}
    if config in ("hubert-onnx-fp32", "hubert-onnx-int8"):
        precision = config.rsplit("-", 1)[1]
        model, origin = _hubert_onnx(threads, precision)
        return model, {"backend": "onnxruntime", "precision": "float32" if precision == "fp32" else
                       "int8 dynamic (MatMul only)",
                       "weights": "random (latency only)", "export": origin}
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    return load_model(ModelSettings(id=config, threads=threads)), {}


def run_one(config: str, threads: int, seconds: float, command: str) -> dict[str, Any]:
    """Benchmark one configuration in this process (called in a child process by main)."""
    import logging

    from edge_ser.benchmark import bench_model

    logging.getLogger("edge_ser").setLevel(logging.WARNING)
    model, fields = build(config, threads)
    record = bench_model(model, seconds=seconds, threads=threads, command=command,
                         backend=fields.pop("backend", None), precision=fields.pop("precision", None))
    record["config"] = config
    record.update(fields)
    return record


@dataclass(frozen=True)
class LatencyOptions:
    """What one latency sweep runs (the options of `python -m bench latency`)."""

    configs: tuple[str, ...] = ()
    """Configurations (empty: every YAMNet one, then HuBERT)."""
    threads: tuple[int, ...] = (1, 2)
    """Inference thread counts, each configuration runs with each."""
    seconds: float = 302.0
    """Seconds of synthetic speech per manifest configuration (windows = seconds - 1)."""
    hubert_seconds: float = 102.0
    """The same for HuBERT configurations (each window costs ~0.5-1 s here)."""
    out: str = str(RESULTS / "latency.json")
    """Where the records go."""
    no_hubert: bool = False
    """Leave out the HuBERT configurations."""
    merge: bool = False
    """Keep the records of `out` for configurations not run now (replace the others)."""
    one: str | None = None
    """Child process: run this one configuration and print its record."""
    command: str = ""
    """The command line, recorded in each record."""


@click.command(help=__doc__.splitlines()[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--configs", multiple=True, metavar="CONFIG...",
              help="Configurations (default: all YAMNet ones, then HuBERT).")
@click.option("--threads", type=int, multiple=True, default=LatencyOptions.threads, show_default=True,
              metavar="N...")
@click.option("--seconds", type=float, default=LatencyOptions.seconds, show_default=True,
              help="Seconds of synthetic speech per manifest configuration (windows = seconds - 1).")
@click.option("--hubert-seconds", type=float, default=LatencyOptions.hubert_seconds, show_default=True,
              help="The same for HuBERT configurations (each window costs ~0.5-1 s here).")
@click.option("--out", default=LatencyOptions.out, show_default=True)
@click.option("--no-hubert", is_flag=True)
@click.option("--merge", is_flag=True,
              help="Keep the records of --out for configurations not run now (replace the others).")
@click.option("--one", hidden=True)
def command(**options: Any) -> int:
    argv = click.get_current_context().obj or ()
    return sweep(LatencyOptions(**options, command="python3 -m bench.latency " + " ".join(argv)))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench latency ARGS` and `python -m bench.latency ARGS`."""
    return run(command, argv, "python -m bench latency", "--configs", "--threads")


def sweep(args: LatencyOptions) -> int:
    """Every configuration x thread count, each in a fresh process; writes args.out."""
    command = args.command
    if args.one:  # child process: one configuration, record as JSON on stdout
        rec = run_one(args.one, args.threads[0], args.seconds, command=os.environ.get("BENCH_COMMAND", ""))
        print("RECORD " + json.dumps(rec))
        return 0

    configs = args.configs or (["yamnet-backbone", *manifest_ids()]
                               + ([] if args.no_hubert else list(HUBERT_CONFIGS)))
    if any(c.startswith("hubert") for c in configs):
        from bench.hubert_random import export_onnx

        export_onnx()  # once, before timing anything
    records = []
    for config in configs:
        for t in args.threads:
            secs = args.hubert_seconds if config.startswith("hubert") else args.seconds
            cmd = [sys.executable, "-m", "bench.latency", "--one", config, "--threads", str(t),
                   "--seconds", str(secs)]
            env = dict(os.environ, OMP_NUM_THREADS=str(t), TOKENIZERS_PARALLELISM="false",
                       BENCH_COMMAND=command)
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RECORD ")), None)
            if proc.returncode != 0 or line is None:
                print(f"FAILED {config} threads={t}:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rec = json.loads(line[len("RECORD "):])
            records.append(rec)
            print(f"{config:24s} t={t} n={rec['n_windows']:4d} p50={rec['p50_ms']:8.2f} "
                  f"p95={rec['p95_ms']:8.2f} p99={rec['p99_ms']:8.2f} infer50={rec['infer_p50_ms']:8.2f} "
                  f"rss={rec['rss_mb']:6.1f} cpu={rec['cpu_pct']:5.1f}% load={rec['load_1min']} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    from edge_ser.benchmark import load_warning

    loaded = [load_warning(r["load_1min"], r.get("cores")) for r in records]
    if any(loaded):
        print(f"{sum(map(bool, loaded))} of {len(records)} records measured under load; "
              + next(w for w in loaded if w), file=sys.stderr)
    write(records, Path(args.out), merge=args.merge)
    return 0


def record_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a record unique in latency.json: a model measured in an interleaved `run`
    (bench.compare) sits beside its record of the sequential sweep instead of replacing it."""
    return r.get("config", r["model"]), r["threads"], r.get("run")


def sample_key(r: dict[str, Any]) -> str:
    """Key of a record's per-window latencies in <stem>_windows.json: config|threads[|run]."""
    return "|".join(str(k) for k in record_key(r) if k is not None)


def write(records: list[dict[str, Any]], out: Path, merge: bool = False) -> None:
    """latency.json: a list of records (definitions in bench/README.md); <stem>_windows.json: the
    per-window latencies of each record, for the histograms."""
    out.parent.mkdir(parents=True, exist_ok=True)
    samples = {sample_key(r): r.pop("latencies_ms") for r in records}
    windows = out.parent / (out.stem + "_windows.json")
    if merge and out.exists():
        new = {record_key(r) for r in records}
        old = [r for r in json.loads(out.read_text()) if record_key(r) not in new]
        old_samples = json.loads(windows.read_text()) if windows.exists() else {}
        samples = {**{k: v for k, v in old_samples.items() if k not in samples}, **samples}
        records = old + records
    out.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    windows.write_text(json.dumps(samples) + "\n")
    print(f"wrote {out} ({len(records)} records)")


if __name__ == "__main__":
    sys.exit(main())
