"""Whole models (waveform or log-mel in, probabilities out) -> .tflite variants, parity reports, manifest.

Shared by `convert vggish`, `convert logmel-cnn` and the YAMNet fine-tuning export: the caller
builds the TensorFlow function and a float reference; this module quantizes, checks, writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from artefact import eval_data, parity
from artefact.manifest import DEFAULT_MANIFEST, QUANT_SUFFIX, file_ref, write_entry
from artefact.parity import Result
from edge_ser.manifest import ModelEntry

from . import tflite214_check
from .tflite_export import export_concrete, runner


def convert_whole(
    fn,
    input_name: str,
    reference: Callable[[np.ndarray], np.ndarray],
    data: eval_data.EvalData,
    name: str,
    out_dir: Path,
    variants: Sequence[str],
    entry: ModelEntry,
    kind: str,
    source: str,
    manifest: Path = DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    register_manifest: bool = True,
    latency_runs: int = 30,
    default: str | None = None,
    targets: parity.Targets = parity.HEAD_TARGETS,
) -> list[Result]:
    """Convert `fn` (one input -> {"output_0": probs}) to each variant and check it against `reference`.

    reference(x [1, ...]) -> probs [1, n]: the float model the file must agree with.
    entry: the manifest entry's template; id, head, quantization and parity_report are filled in here.
    int8 here is full-integer where the converter can, float elsewhere (log-mel frontends).
    """
    ref_probs = np.concatenate([reference(x[None]) for x in data.test_x])
    x1 = data.test_x[:1]
    ref_ms = parity.median_ms(lambda: reference(x1), runs=latency_runs, warmup=2)
    results, float_size = [], None
    for q in variants:
        blob = export_concrete(
            fn,
            [input_name],
            ["probs"],
            q,
            representative=data.representative(100) if q == "int8" else None,
            allow_float_fallback=True,
        )
        if float_size is None:
            float_size = (
                len(blob) if q == "float32" else len(export_concrete(fn, [input_name], ["probs"], "float32"))
            )
        run = runner(blob, threads=1)
        probs = np.concatenate([run(x[None])[0] for x in data.test_x])
        verdict = parity.compare(ref_probs, probs, data.test_y, targets)
        ms = parity.median_ms(lambda run=run: run(x1), runs=latency_runs, warmup=2)
        model_id = f"{name}-{QUANT_SUFFIX[q]}"
        path = out_dir / f"{model_id}.tflite"
        keep = verdict["passed"] or keep_anyway
        report = {
            "model_id": model_id,
            "kind": kind,
            "source": source,
            "quantization": q,
            "artifact": str(path) if keep else None,
            "data": data.source,
            "labels": list(data.labels),
            "parity": verdict,
            "size_bytes": len(blob),
            "float_size_bytes": float_size,
            "latency_ms_median": {"float_reference": round(ref_ms, 3), f"tflite_{q}": round(ms, 3)},
            "latency_note": f"one input of shape {list(x1.shape)}, 1 thread, median of {latency_runs}; "
            f"{parity.machine()}",
            "command": command,
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if keep:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            report["tflite_runtime_2_14"] = tflite214_check.check(path)
        jpath, _ = parity.write_report(model_id, report, reports_dir)
        if keep and register_manifest:
            e = dataclasses.replace(
                entry,
                id=model_id,
                description=f"{entry.description or name}, {q} TFLite",
                head=file_ref(path, manifest, input=input_name, output="probs"),
                quantization=q,
                extra=entry.extra | {"parity_report": str(jpath)},
            )
            write_entry(manifest, e, make_default=(q == default))
        results.append(Result(model_id, path if keep else None, jpath, verdict["passed"]))
    return results
