"""`python -m convert yamnet-head`: a trained head folder -> TFLite float32/float16/INT8 + parity report.

The daemon runs YAMNet (the shared backbone file) and then this head on the pooled embeddings, so
only the head is converted here: `features` [1, input_dim] float32 -> `probs` [1, n_labels].
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_ser.errors import UserError

from . import eval_data, head_model, old_runtime, parity, register
from .tflite_export import TensorIO, export_torch, runner

DEFAULT_OUT = register.REPO / "models" / "heads"


@dataclass(frozen=True)
class Result:
    """One converted variant."""

    model_id: str
    """Manifest id (<name>-int8, ...)."""

    path: Path | None
    """The written file, or None when parity failed and it was not kept."""

    report: Path
    """The JSON parity report."""

    passed: bool
    """Whether the parity targets were met."""


def convert_head(
    folder: Path,
    features: Path | None,
    out_dir: Path = DEFAULT_OUT,
    name: str | None = None,
    variants: tuple[str, ...] = ("int8", "float16", "float32"),
    manifest: Path = register.DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    default: str | None = None,
    backbone: str | None = None,
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    latency_runs: int = 200,
    register_manifest: bool = True,
) -> list[Result]:
    """Convert every variant; write the passing ones (all with keep_anyway), their reports and entries.

    default: the quantization whose entry becomes the manifest's default model (None: leave it).
    """
    torch.set_num_threads(1)
    folder = Path(folder)
    spec, model = head_model.load_float_model(folder)
    backbone = backbone or spec.get("backbone", "yamnet")
    if backbone != "yamnet":
        raise UserError(
            f"yamnet-head converts heads on YAMNet embeddings; this head's backbone is {backbone!r}"
        )
    head_model.check_input_dim(spec, backbone)
    labels, dim = list(spec["labels"]), int(spec["input_dim"])
    features = Path(features) if features else folder / eval_data.EVAL_NAME
    data = eval_data.load_eval(features, labels, dim)
    name = name or folder.name
    ref_probs = _reference_probs(folder, data.test_x)
    with torch.no_grad():
        folded = model(torch.from_numpy(data.test_x)).numpy()
    if np.abs(folded - ref_probs).max() > 1e-4:
        raise UserError(
            f"folding the standardisation changed the outputs by {np.abs(folded - ref_probs).max():.3g}"
        )
    one = torch.from_numpy(data.test_x[:1])
    with torch.no_grad():
        torch_ms = parity.median_ms(lambda: model(one), runs=latency_runs)

    results = []
    float_size = None
    for q in variants:
        blob = export_torch(
            model,
            [TensorIO("features", (1, dim))],
            ["probs"],
            q,
            representative=data.representative() if q == "int8" else None,
            check_inputs=[data.test_x[:1]],
        )
        if float_size is None:  # the reference the smaller variants report their size against
            float_size = (
                len(blob)
                if q == "float32"
                else len(export_torch(model, [TensorIO("features", (1, dim))], ["probs"], "float32"))
            )
        run = runner(blob, threads=1)
        probs = np.concatenate([run(x[None])[0] for x in data.test_x])
        targets = parity.HEAD_TARGETS
        verdict = parity.compare(ref_probs, probs, data.test_y, targets)
        x1 = data.test_x[:1]
        tfl_ms = parity.median_ms(lambda run=run, x1=x1: run(x1), runs=latency_runs)
        model_id = f"{name}-{register.QUANT_SUFFIX[q]}"
        path = out_dir / f"{model_id}.tflite"
        keep = verdict["passed"] or keep_anyway
        report = {
            "model_id": model_id,
            "kind": "yamnet-head",
            "source": str(folder),
            "quantization": q,
            "artifact": _display(path) if keep else None,
            "data": data.source,
            "labels": labels,
            "parity": verdict,
            "size_bytes": len(blob),
            "float_size_bytes": float_size,
            "latency_ms_median": {"torch_float": round(torch_ms, 4), f"tflite_{q}": round(tfl_ms, 4)},
            "latency_note": f"one row, 1 thread, median of {latency_runs}, ai_edge_litert; "
            f"{parity.machine()}",
            "command": command,
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if keep:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            report["tflite_runtime_2_14"] = old_runtime.check(path)
        jpath, _ = parity.write_report(model_id, report, reports_dir)
        if keep and register_manifest:
            entry = _entry(spec, path, q, manifest, jpath, command)
            register.upsert(manifest, model_id, entry, make_default=(q == default))
        results.append(Result(model_id, path if keep else None, jpath, verdict["passed"]))
    return results


def _reference_probs(folder: Path, x: np.ndarray) -> np.ndarray:
    """Probabilities of the training code's own float inference model (the parity reference)."""
    from training.heads import load_head

    _, ref = load_head(folder)
    with torch.no_grad():
        return ref(torch.from_numpy(x)).numpy()


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(register.REPO))
    except ValueError:
        return str(path)


def _entry(spec: dict, path: Path, q: str, manifest: Path, report: Path, command: str) -> dict:
    metrics = {k: spec[k] for k in ("val", "test", "metrics") if k in spec}
    return {
        "description": f"YAMNet + {spec['arch']} head ({spec.get('data', 'trained head')}), {q} TFLite",
        "frontend": "waveform",
        "sample_rate": 16000,
        "window_s": float(spec.get("window_s", 2.0)),
        "labels": list(spec["labels"]),
        "backbone": register.yamnet_backbone(manifest),
        "pooling": spec.get("pooling", "mean"),
        "head": register.file_ref(
            path, manifest, input="features", output="probs", input_dim=int(spec["input_dim"])
        ),
        "quantization": q,
        "license": spec.get("license", "inherits the training corpora's terms; YAMNet Apache-2.0"),
        "training": {
            "command": spec.get("command", ""),
            "data": spec.get("data", ""),
            "split": spec.get("split", ""),
        }
        | metrics,
        "conversion": {"command": command},
        "parity_report": _display(report),
    }
