"""`python -m convert yamnet-head`: a trained head folder -> TFLite float32/float16/INT8 + parity report.

The daemon runs YAMNet (the shared backbone file) and then this head on the pooled embeddings, so
only the head is converted here: `features` [1, input_dim] float32 -> `probs` [1, n_labels].
The `onnx-float32` variant is the same graph as a float32 ONNX file (artefact.onnx_head), for
backbones that are ONNX themselves: the daemon then needs no TFLite runtime at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import torch

from artefact import eval_data, parity
from artefact.manifest import (
    DEFAULT_MANIFEST,
    HEADS_DIR,
    ONNX_HEAD,
    QUANT_SUFFIX,
    REPO,
    file_ref,
    training_provenance,
    write_entry,
    yamnet_backbone,
)
from artefact.onnx_head import export_onnx_head, onnx_runner
from artefact.parity import Result
from edge_ser.errors import UserError
from edge_ser.manifest import ModelEntry

from . import head_model, tflite214_check
from .tflite_export import TensorIO, export_torch, runner

DEFAULT_OUT = HEADS_DIR
CALIBRATION_ROWS = 1000
"""Training rows the INT8 ranges are calibrated on (all of them in training's eval.npz)."""
STRETCH = 2.0
"""Headroom of the calibrated ranges beyond the training extremes (see EvalData.representative)."""
INT8_CANDIDATES = (("int8", 1.0), ("int16x8", 1.0), ("int16x8", STRETCH))
"""(mode, calibration stretch) tried for `int8`, fastest first; the best on the holdout is kept."""
MODE_TEXT = {
    "int8": "int8 weights, int8 activations",
    "int16x8": "int8 weights, int16 activations (TFLite 16x8 full-integer mode)",
    ONNX_HEAD: "float32 ONNX (onnxruntime)",
}


def head_format(variant: str) -> tuple[str, str]:
    """(file suffix, manifest quantization) of a head variant."""
    return (".onnx", "float32") if variant == ONNX_HEAD else (".tflite", variant)


def _export(model: torch.nn.Module, dim: int, mode: str, representative, x1: np.ndarray):
    """(file bytes, runner: features [1, dim] -> probs) of one head variant."""
    if mode == ONNX_HEAD:
        blob = export_onnx_head(model, dim, x1)
        return blob, onnx_runner(blob, threads=1)
    blob = export_torch(model, [TensorIO("features", (1, dim))], ["probs"], mode,
                        representative=representative, check_inputs=[x1])
    run = runner(blob, threads=1)
    return blob, (lambda x: run(x)[0])




def convert_head(
    folder: Path,
    features: Path | eval_data.EvalData | None,
    out_dir: Path = DEFAULT_OUT,
    name: str | None = None,
    variants: tuple[str, ...] = ("int8", "float16", "float32"),
    manifest: Path = DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    default: str | None = None,
    backbone: str | None = None,
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    latency_runs: int = 200,
    register_manifest: bool = True,
    backbone_file: Path | None = None,
    pooled_dim: int | None = None,
) -> list[Result]:
    """Convert every variant; write the passing ones (all with keep_anyway), their reports and entries.

    features: eval .npz (default <folder>/eval.npz), or the rows themselves (EvalData; test_y None:
    unlabelled rows, parity by agreement only, no int8).
    default: the quantization whose entry becomes the manifest's default model (None: leave it).
    backbone_file: a YAMNet file other than the shared one (a fine-tuned backbone from
    `python -m training finetune export-backbone`) that the head was trained on; the entry names it.
    pooled_dim: the feature size of a head on another backbone (the Whisper route), which the
    caller has worked out; the head is then not checked against YAMNet and no YAMNet entry is
    written (pass register_manifest=False and write the entries yourself).
    """
    torch.set_num_threads(1)
    folder = Path(folder)
    spec, model = head_model.load_float_model(folder)
    backbone = backbone or spec.get("backbone", "yamnet")
    if pooled_dim is not None:
        if int(spec["input_dim"]) != pooled_dim:
            raise UserError(f"head input_dim {spec['input_dim']} does not match the backbone's {pooled_dim} "
                            "pooled features")
    elif backbone != "yamnet":
        raise UserError(
            f"yamnet-head converts heads on YAMNet embeddings; this head's backbone is {backbone!r}"
        )
    else:
        head_model.check_input_dim(spec, backbone)
    labels, dim = list(spec["labels"]), int(spec["input_dim"])
    if isinstance(features, eval_data.EvalData):
        data = features
        if data.test_y is None and "int8" in variants:
            raise UserError(f"an int8 head needs labelled training rows to calibrate on: no "
                            f"{eval_data.EVAL_NAME} in {folder}; pass --features PATH")
    else:
        if features is None and not (folder / eval_data.EVAL_NAME).is_file():
            raise UserError(
                f"no {eval_data.EVAL_NAME} in {folder}: pass --features PATH (training writes it "
                "beside the head it trains, runs/heads/<name>/eval.npz)"
            )
        features = Path(features) if features else folder / eval_data.EVAL_NAME
        data = eval_data.load_eval(features, labels, dim)
    name = name or folder.name
    ref_probs = _reference_probs(folder, data.test_x)
    with torch.no_grad():
        mine = model(torch.from_numpy(data.test_x)).numpy()
    if np.abs(mine - ref_probs).max() > 1e-4:
        raise UserError(
            f"the export form of {folder} differs from training's model by "
            f"{np.abs(mine - ref_probs).max():.3g}"
        )
    x1 = data.test_x[:1]
    with torch.no_grad():
        torch_ms = parity.median_ms(lambda: model(torch.from_numpy(x1)), runs=latency_runs)
    float_size = len(export_torch(model, [TensorIO("features", (1, dim))], ["probs"], "float32"))

    # INT8 candidates are calibrated on 80 % of the training rows and chosen by their agreement
    # with float on the other 20 %, so the test rows only measure the chosen file, never pick it.
    calib, holdout = _split_train(data)
    with torch.no_grad():
        hold_ref = model(torch.from_numpy(holdout)).numpy().argmax(1)

    results = []
    for q in variants:
        tried = {}
        for mode, stretch in INT8_CANDIDATES if q == "int8" else ((q, 1.0),):
            key = mode if stretch == 1.0 else f"{mode}+stretch{stretch:g}"
            representative = calib.representative(CALIBRATION_ROWS, stretch=stretch) if q == "int8" else None
            blob, run = _export(model, dim, mode, representative, x1)
            hold = float(np.mean(np.concatenate([run(x[None]) for x in holdout]).argmax(1) == hold_ref))
            probs = np.concatenate([run(x[None]) for x in data.test_x])
            verdict = parity.compare(ref_probs, probs, data.test_y, parity.HEAD_TARGETS)
            ms = parity.median_ms(lambda run=run: run(x1), runs=latency_runs)
            tried[key] = (blob, verdict, ms, hold, mode)
        key = max(tried, key=lambda k: tried[k][3])  # first (fastest) on ties
        mode = tried[key][4]
        blob, verdict, tfl_ms, hold, _ = tried[key]
        model_id = f"{name}-{QUANT_SUFFIX[q]}"
        suffix, manifest_q = head_format(q)
        path = out_dir / f"{model_id}{suffix}"
        keep = verdict["passed"] or keep_anyway
        report = {
            "model_id": model_id,
            "kind": "yamnet-head" if pooled_dim is None else f"{backbone}-head",
            "source": str(folder),
            "quantization": manifest_q,
            "format": suffix[1:],
            "mode": MODE_TEXT.get(mode, mode),
            "artifact": _display(path) if keep else None,
            "data": data.source,
            "labels": labels,
            "parity": verdict,
            "size_bytes": len(blob),
            "float_size_bytes": float_size,
            "latency_ms_median": {"torch_float": round(torch_ms, 4),
                                  f"{suffix[1:]}_{mode.removeprefix('onnx-')}": round(tfl_ms, 4)},
            "latency_note": f"one row, 1 thread, median of {latency_runs}, "
            f"{'onnxruntime' if suffix == '.onnx' else 'ai_edge_litert'}; "
            f"{parity.machine()}",
            "command": command,
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if len(tried) > 1:
            report["candidates"] = {
                k: {
                    "holdout_agreement": round(t[3], 5),
                    "parity": t[1],
                    "size_bytes": len(t[0]),
                    "latency_ms_median": round(t[2], 4),
                }
                for k, t in tried.items()
            }
            report["chosen"] = key
        if keep:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            if suffix == ".tflite":
                report["tflite_runtime_2_14"] = tflite214_check.check(path)
        jpath, _ = parity.write_report(model_id, report, reports_dir)
        if keep and register_manifest:
            entry = _entry(model_id, spec, path, manifest_q, manifest, jpath, command, backbone_file,
                           MODE_TEXT.get(mode, mode))
            write_entry(manifest, entry, make_default=(q == default))
        results.append(Result(model_id, path if keep else None, jpath, verdict["passed"]))
    return results


def _split_train(data: eval_data.EvalData, holdout: float = 0.2) -> tuple[eval_data.EvalData, np.ndarray]:
    """(data with the calibration rows as train_x, held-out training rows), seeded."""
    idx = np.random.default_rng(1).permutation(len(data.train_x))
    n_hold = max(1, int(len(idx) * holdout)) if len(idx) > 1 else 0
    hold, cal = data.train_x[idx[:n_hold]], data.train_x[idx[n_hold:]]
    return dataclasses.replace(data, train_x=cal), (hold if n_hold else data.train_x)


def _reference_probs(folder: Path, x: np.ndarray) -> np.ndarray:
    """Probabilities of the training code's own float inference model (the parity reference)."""
    from artefact.heads import load_head

    _, ref = load_head(folder)
    with torch.no_grad():
        return ref(torch.from_numpy(x)).numpy()


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _entry(model_id: str, spec: dict, path: Path, q: str, manifest: Path, report: Path, command: str,
           backbone_file: Path | None, mode: str) -> ModelEntry:
    metrics = {k: spec[k] for k in ("val", "test", "metrics") if k in spec}
    backbone = (yamnet_backbone(manifest) if backbone_file is None else file_ref(
        backbone_file, manifest, input="waveform", output="Identity_1", scores_output="Identity"))
    return ModelEntry(
        id=model_id,
        description=f"{'fine-tuned YAMNet' if backbone_file else 'YAMNet'} + {spec['arch']} head "
        f"({spec.get('data', 'trained head')}), {q} {'ONNX' if path.suffix == '.onnx' else 'TFLite'}"
        + ("; windows level-set on and pooled over their speech frames"
           if spec.get("window_level", "raw") == "speech" else ""),
        frontend="waveform",
        window_s=float(spec.get("window_s", 2.0)),
        labels=tuple(spec["labels"]),
        backbone=backbone,
        pooling=spec.get("pooling", "mean"),
        window_level=str(spec.get("window_level", "raw")),
        head=file_ref(path, manifest, input="features", output="probs", input_dim=int(spec["input_dim"])),
        quantization=q,
        license=spec.get("license", "inherits the training corpora's terms; YAMNet Apache-2.0"),
        extra={
            "training": training_provenance(spec, **metrics),
            "conversion": {"command": command},
            "parity_report": _display(report),
            "quantization_mode": mode,
        },
    )
