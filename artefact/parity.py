"""Parity of a converted model with its float original: agreement, probability error, accuracy, speed.

Each conversion writes convert/reports/<model id>.json (+ .txt, a short human summary). Targets:
quantized heads agree with the float model on >= 99 % of test rows and lose <= 0.5 pt accuracy;
quantized HuBERT loses <= 1 pt. A conversion that misses its target is refused unless the user
passes --keep-anyway.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPORTS_DIR = Path(__file__).resolve().parent.parent / "convert" / "reports"


@dataclass(frozen=True)
class Result:
    """One converted model or variant, as every converter returns it."""

    model_id: str
    """Manifest id (<name>-int8, ...)."""

    path: Path | None
    """The written file, or None when it missed its parity target and was not kept."""

    report: Path
    """The JSON parity report."""

    passed: bool
    """Whether the parity target was met."""


@dataclass(frozen=True)
class Targets:
    """What a converted model must achieve against its float original."""

    min_agreement: float = 0.99
    """Minimum fraction of test rows with the same argmax."""

    max_accuracy_drop_pt: float = 0.5
    """Maximum accuracy loss, percentage points."""


HEAD_TARGETS = Targets(0.99, 0.5)
HUBERT_TARGETS = Targets(0.0, 1.0)
"""HuBERT: only the accuracy loss is bounded."""


def median_ms(fn: Callable[[], object], runs: int = 100, warmup: int = 5) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def compare(ref_probs: np.ndarray, probs: np.ndarray, y: np.ndarray | None, targets: Targets) -> dict:
    """Agreement, probability error and accuracies of `probs` against `ref_probs` on labels y
    (y None: unlabelled rows; accuracies are None and only the agreement target applies)."""
    ref_probs, probs = np.asarray(ref_probs, np.float64), np.asarray(probs, np.float64)
    diff = np.abs(ref_probs - probs)
    agree = float(np.mean(ref_probs.argmax(1) == probs.argmax(1)))
    acc_ref = acc = drop = None
    if y is not None:
        acc_ref = float(np.mean(ref_probs.argmax(1) == y))
        acc = float(np.mean(probs.argmax(1) == y))
        drop = (acc_ref - acc) * 100.0
    return {
        "n_test": int(len(ref_probs)),
        "argmax_agreement": round(agree, 5),
        "max_abs_prob_diff": round(float(diff.max()), 6),
        "mean_abs_prob_diff": round(float(diff.mean()), 6),
        "accuracy_float": None if acc_ref is None else round(acc_ref, 5),
        "accuracy": None if acc is None else round(acc, 5),
        "accuracy_drop_pt": None if drop is None else round(drop, 3),
        "targets": asdict(targets),
        "passed": bool(agree >= targets.min_agreement
                       and (drop is None or drop <= targets.max_accuracy_drop_pt)),
    }


def machine() -> str:
    """One line naming where latencies were measured."""
    return f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip()


def write_report(model_id: str, report: dict, out_dir: Path = REPORTS_DIR) -> tuple[Path, Path]:
    """convert/reports/<model_id>.json and .txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, tpath = out_dir / f"{model_id}.json", out_dir / f"{model_id}.txt"
    jpath.write_text(json.dumps(report, indent=1) + "\n")
    tpath.write_text(summary(model_id, report) + "\n")
    return jpath, tpath


def summary(model_id: str, r: dict) -> str:
    """A few lines a person reads: verdict, agreement, accuracy, size, latency, old-runtime check."""
    p = r["parity"]
    lat = r.get("latency_ms_median", {})
    lines = [
        f"{model_id}: {'PASS' if p['passed'] else 'FAIL'} "
        f"({r.get('quantization')}, {r.get('artifact') or 'no artifact'})",
        f"  test rows {p['n_test']} from {r.get('data')}",
        f"  argmax agreement with float {p['argmax_agreement'] * 100:.2f} % ("
        + (
            f"target >= {p['targets']['min_agreement'] * 100:.0f} %"
            if p["targets"]["min_agreement"]
            else "no target"
        )
        + f"); prob diff max {p['max_abs_prob_diff']:.4f} "
        f"mean {p['mean_abs_prob_diff']:.5f}",
        f"  accuracy float {p['accuracy_float'] * 100:.2f} % -> converted {p['accuracy'] * 100:.2f} % "
        f"(drop {p['accuracy_drop_pt']:.2f} pt, limit {p['targets']['max_accuracy_drop_pt']} pt)"
        if p["accuracy"] is not None else "  accuracy not measured (unlabelled rows)",
        f"  size {r.get('size_bytes')} B (float file {r.get('float_size_bytes')} B)",
        "  median latency ms: " + ", ".join(f"{k} {v:.3f}" for k, v in lat.items()),
        f"  tflite-runtime 2.14: {r.get('tflite_runtime_2_14', {}).get('result', 'not applicable')}",
        f"  command: {r.get('command')}",
    ]
    return "\n".join(lines)
