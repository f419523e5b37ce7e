"""`python -m convert whisper-model HEAD_FOLDER --checkpoint DIR`: a head on Whisper states -> daemon model.

Writes, into models/heads/ by default:
- the encoder graph returning exactly the states of the head's pooling (`"pooling": "mean_std@2"`
  -> state 2 only; later blocks are not in the graph): `<name>-encoder-int8.onnx`, the INT8
  variant chosen by `convert.whisper_export` (report `<name>-encoder`), when the entry built on it
  passes the end-to-end check below; else `<name>-encoder-fp16w.onnx` (float32 compute, weights
  stored as float16: half the FP32 file, FP32 decisions). Dynamic INT8 quantizes each activation
  with one scale per call, which moved 4-8 % of a trained head's decisions on real windows
  (convert/README.md, "Whisper"), so the check, not the hidden-state cosine, decides;
- `<name>-int8.tflite`, `<name>-fp16.tflite` ...: the head through the same export as YAMNet heads
  (`convert.head_export.convert_head`: TFLite, parity on the head folder's eval.npz), since that
  route already calibrates and checks INT8/float16 heads; the daemon picks the runtime per file, so
  an ONNX backbone with a TFLite head is an ordinary entry. Variant `onnx-float32` writes
  `<name>-onnx-fp32.onnx` instead: the float32 head as ONNX, so the entry runs on onnxruntime alone
  and the process never loads the TFLite runtime (less peak memory);
- with `encoder_file`, no encoder is exported: the entry uses that file (an encoder converted
  before for the same checkpoint and states), still only after the end-to-end check. An exported
  encoder byte-identical to a file already in the output folder is replaced by that file;
- a head trained on fused features (head.json `fuse`: Whisper states followed by YAMNet's frames of
  the same window, `training --fuse`) gets YAMNet as the entry's `fused_backbone`, and the float
  pipeline below appends YAMNet's pooled frames (the published TFLite file, as training ran it);
- one manifest entry per head variant (`frontend: whisper_logmel`, backbone = the INT8 encoder,
  pooling = the head's method), registered only after an end-to-end check: the entry is loaded
  with the daemon's own `edge_ser.model.load_model` and classifies real 2 s windows of
  test-speaker clips; its argmax must agree with the float pipeline (whisper_log_mel -> torch
  encoder -> pool_states -> torch head) on >= 99 % of them. The result is added to the head
  variant's parity report under `pipeline` (with every encoder tried).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from artefact import eval_data, parity
from artefact.heads import head_kind
from artefact.manifest import (
    DEFAULT_MANIFEST,
    HEADS_DIR,
    file_ref,
    training_provenance,
    write_entry,
    yamnet_backbone,
)
from artefact.parity import Result
from edge_ser.backends import open_backend
from edge_ser.errors import ModelError, UserError
from edge_ser.manifest import ModelEntry, ModelFile, shared_weights_dir
from edge_ser.model import pool_fused
from edge_ser.pooling import parse_state_pooling, pool_states, pooled_dim
from edge_ser.speech_level import prepare, speech_frames
from edge_ser.whisper_mel import whisper_log_mel

from . import head_model, whisper_quant
from .head_export import _display, convert_head
from .whisper_encoder import encoder_states, run_torch
from .whisper_export import convert_encoder
from .whisper_reuse import Encoder, existing_encoder, same_file

PIPELINE_MIN_AGREEMENT = 0.99
KEEP_FP32_BELOW = 10_000_000
"""The FP32 encoder is kept beside the INT8 one only when smaller than this (bytes)."""


def read_whisper_head(folder: Path) -> tuple[dict, str, tuple[int, ...]]:
    """(head.json, pooling method, states) of a head trained on Whisper hidden states."""
    spec = head_model.read_spec(folder)
    backbone = str(spec.get("backbone", ""))
    if not backbone.startswith("whisper"):
        raise UserError(f"{folder}: head backbone is {backbone or 'not given'!r}, not a Whisper encoder "
                        "(head.json needs e.g. \"backbone\": \"whisper-tiny.en\")")
    try:
        method, states = parse_state_pooling(str(spec.get("pooling", "")))
    except ValueError as exc:
        raise UserError(f"{folder}/head.json: {exc}") from None
    return spec, method, states


class FusedYamnet:
    """The second backbone of a head trained on fused features (head.json `fuse`, backbone yamnet):
    the published YAMNet TFLite file, its frame embeddings pooled as the fused cache pooled them."""

    def __init__(self, fuse: dict, manifest: Path):
        if fuse.get("backbone") != "yamnet":
            raise UserError(f"a fused head can add YAMNet to Whisper, not {fuse.get('backbone')!r}")
        self.pooling = str(fuse.get("pooling", "mean"))
        ref = yamnet_backbone(manifest)
        self.file = ModelFile(file=ref.file, sha256=ref.sha256, size=ref.size, url=ref.url,
                              input=ref.input, output=ref.output)
        path = shared_weights_dir() / ref.file
        if not path.is_file():
            raise UserError(f"the fused head needs YAMNet at {path}")
        self._backend = open_backend(path, threads=1)

    def features(self, samples: np.ndarray, speech: np.ndarray | None) -> np.ndarray:
        return pool_fused(self._backend.run({self.file.input: samples})[self.file.output], speech,
                          self.pooling)


def read_fused(spec: dict, manifest: Path) -> FusedYamnet | None:
    """The head's fused backbone (None for a head on Whisper states alone)."""
    return FusedYamnet(spec["fuse"], manifest) if spec.get("fuse") else None


def torch_features(model, method: str, windows: np.ndarray, window_level: str = "raw",
                   fused: FusedYamnet | None = None) -> np.ndarray:
    """Pooled features [n, dim] of the float pipeline: whisper_log_mel -> torch encoder states ->
    pool_states (window_level speech: edge_ser.speech_level.prepare first, speech frames pooled),
    followed by the fused backbone's pooled frames of the same window when there is one."""
    rows = []
    for w in windows:
        prepared = prepare(w) if window_level == "speech" else None
        samples = w if prepared is None else prepared.samples
        states = run_torch(model, whisper_log_mel(samples))
        if prepared is not None:
            states = speech_frames(states, prepared.speech)
        row = pool_states(states, method)
        if fused is not None:
            speech = None if prepared is None else prepared.speech
            row = np.concatenate([row, fused.features(samples, speech)])
        rows.append(row)
    return np.stack(rows).astype(np.float32)


def torch_pipeline(model, head: torch.nn.Module, method: str, windows: np.ndarray,
                   window_level: str = "raw", fused: FusedYamnet | None = None) -> np.ndarray:
    """Float reference: torch_features -> torch head -> probs."""
    with torch.no_grad():
        feats = torch_features(model, method, windows, window_level, fused)
        return head(torch.from_numpy(feats)).numpy()


def daemon_model(entry_id: str, manifest: Path, files_in: tuple[Path, ...] = ()):
    """The manifest entry loaded by edge_ser.model as the daemon loads it, one thread.

    files_in: folders holding the entry's files (a trial manifest elsewhere names them by absolute
    path, which the daemon resolves only inside its search path).
    """
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    try:
        return load_model(ModelSettings(id=entry_id, manifest=str(manifest), threads=1,
                                        search_path=tuple(str(f) for f in files_in)))
    except ModelError as exc:  # e.g. an --encoder file that returns other states than the head's
        raise UserError(f"the converted entry {entry_id} does not load: {exc}") from None


def daemon_probs(entry_id: str, manifest: Path, windows: np.ndarray,
                 files_in: tuple[Path, ...] = ()) -> tuple[np.ndarray, float]:
    """(probs [n, labels], median ms per window) of the manifest entry run by edge_ser.model
    (daemon_model)."""
    model = daemon_model(entry_id, manifest, files_in)
    preds = [model.predict(w) for w in windows]
    probs = np.array([[p.probs[lb] for lb in model.labels] for p in preds])
    return probs, float(np.median([p.infer_ms for p in preds]))


def convert_whisper_model(
    head_folder: Path,
    checkpoint: Path,
    windows: np.ndarray,
    windows_source: str,
    out_dir: Path = HEADS_DIR,
    name: str | None = None,
    quants: tuple[str, ...] = ("float16",),
    manifest: Path = DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    make_default: bool = False,
    candidates: tuple[str, ...] = (),
    keep_fp32_encoder: bool = False,
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    register_manifest: bool = True,
    latency_runs: int = 200,
    encoder_file: Path | None = None,
    features: Path | None = None,
) -> list[Result]:
    """Encoder + head files, reports and (after the end-to-end check) manifest entries.

    features: the head's eval .npz (default <head folder>/eval.npz). Without one (a shipped head
    folder keeps only head.pt + head.json) the head variants are checked on the pooled float
    features of `windows`, unlabelled: agreement with the float head only, and no int8 variant.
    """
    torch.set_num_threads(1)
    head_folder, out_dir = Path(head_folder), Path(out_dir)
    spec, method, states = read_whisper_head(head_folder)
    name = name or head_folder.name
    model, info = encoder_states(checkpoint, states)
    fused = read_fused(spec, manifest)
    want = len(states) * pooled_dim(int(info["d_model"]), method)
    if fused is not None:
        want += len(fused.features(np.zeros(int(spec.get("window_s", 2.0) * 16000), np.float32), None))
    if int(spec["input_dim"]) != want:
        raise UserError(f"head input_dim {spec['input_dim']} does not match {checkpoint}: "
                        f"{len(states)} state(s) of width {info['d_model']} pooled {method}"
                        f"{' and the fused YAMNet' if fused else ''} give {want}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if encoder_file is not None:
        reused, enc_report = existing_encoder(encoder_file, manifest)
        encoders = [reused]
    else:
        encoders, enc_report = _export_encoders(checkpoint, states, out_dir, name, windows, windows_source,
                                                candidates, reports_dir, command, keep_fp32_encoder)
    _, head = head_model.load_float_model(head_folder)
    feats = torch_features(model, method, windows, str(spec.get("window_level", "raw")), fused)
    with torch.no_grad():
        ref = head(torch.from_numpy(feats)).numpy()
    if features is None and not (head_folder / eval_data.EVAL_NAME).is_file():
        features = eval_data.EvalData(
            feats, feats, None, tuple(spec["labels"]),
            f"pooled float features (torch encoder) of the end-to-end windows, unlabelled "
            f"(no {eval_data.EVAL_NAME} in {_display(head_folder)}): {windows_source}")
    heads = convert_head(head_folder, features, out_dir, name, quants, manifest, keep_anyway, None,
                         str(spec["backbone"]), command, reports_dir, latency_runs,
                         register_manifest=False, pooled_dim=want)
    live = [r for r in heads if r.path is not None]
    # The smallest, fastest encoder whose decisions agree with float for every head variant wins:
    # INT8 first, then the float16-stored FP32 graph (dynamic INT8 can move near-tie windows).
    attempts: list[dict] = []
    checks: dict[str, dict] = {}
    chosen = encoders[-1]
    for e in encoders:
        checks = {}
        for r in live:
            q = json.loads(r.report.read_text())["quantization"]
            with tempfile.TemporaryDirectory() as tmp:
                trial = Path(tmp) / "manifest.yaml"
                write_entry(trial, _entry(spec, method, states, q, e, r, trial, command, info, enc_report,
                                          fused))
                probs, ms = daemon_probs(r.model_id, trial, windows,
                                         files_in=(e.path.parent, Path(r.path).parent))
            checks[r.model_id] = _pipeline_parity(ref, probs, windows_source, ms, e.variant)
        attempts.append({"encoder": e.variant, "file": e.path.name,
                         "argmax_agreement": {k: c["argmax_agreement"] for k, c in checks.items()}})
        chosen = e
        if all(c["passed"] for c in checks.values()):
            break
    for e in encoders:
        if e is not chosen and e.owned:
            e.path.unlink()
    twin = same_file(chosen.path, out_dir) if chosen.owned else None
    if twin is not None:
        chosen.path.unlink()
        chosen = Encoder(twin, chosen.variant, owned=False)
    results, default_done = [], not make_default
    for r in heads:
        if r.path is None:
            results.append(r)
            continue
        check = checks[r.model_id] | {"encoders_tried": attempts}
        report = json.loads(r.report.read_text()) | {
            "pipeline": check, "encoder_report": enc_report and _display(enc_report),
            "encoder_file": _display(chosen.path)}
        r.report.write_text(json.dumps(report, indent=1) + "\n")
        r.report.with_suffix(".txt").write_text(parity.summary(r.model_id, report) + "\n"
                                                + _pipeline_text(check) + "\n")
        ok = r.passed and check["passed"]
        if not (ok or keep_anyway):
            r.path.unlink()
        elif register_manifest:
            q = report["quantization"]
            entry = _entry(spec, method, states, q, chosen, r, manifest, command, info, enc_report, fused)
            write_entry(manifest, entry, make_default=ok and not default_done)
            default_done = default_done or ok
        results.append(Result(r.model_id, r.path if (ok or keep_anyway) else None, r.report, ok))
    if not any(x.passed for x in results) and not keep_anyway and chosen.owned:
        chosen.path.unlink(missing_ok=True)
    return results


def _export_encoders(checkpoint: Path, states: tuple[int, ...], out_dir: Path, name: str,
                     windows: np.ndarray, source: str, candidates: tuple[str, ...], reports_dir: Path,
                     command: str, keep_fp32: bool) -> tuple[list[Encoder], Path]:
    """(the encoders to try, smallest first: chosen INT8 then the float16-stored one; their report)."""
    enc = convert_encoder(checkpoint, states, out_dir / f"{name}-encoder-fp32.onnx", windows, source,
                          candidates=candidates, name=f"{name}-encoder", reports_dir=reports_dir,
                          command=command, int8_out=out_dir / f"{name}-encoder-int8.onnx")
    encoders = [Encoder(enc.int8, enc.chosen)] if enc.int8 else []
    fallback = out_dir / f"{name}-encoder-fp16w.onnx"
    encoders.append(Encoder(whisper_quant.quantize(enc.fp32, fallback, whisper_quant.FALLBACK),
                            whisper_quant.FALLBACK))
    if not (keep_fp32 or enc.fp32.stat().st_size < KEEP_FP32_BELOW):
        enc.fp32.unlink()
    return encoders, enc.report


def _pipeline_parity(ref: np.ndarray, probs: np.ndarray, source: str, ms: float, encoder: str) -> dict:
    agree = float(np.mean(ref.argmax(1) == probs.argmax(1)))
    diff = np.abs(ref - probs)
    return {
        "reference": "float pipeline: edge_ser.whisper_mel -> torch encoder (FP32) -> pool_states -> "
        "torch head",
        "converted": f"the manifest entry through edge_ser.model.load_model (encoder {encoder} + "
        "converted head)",
        "windows": source,
        "n": int(len(ref)),
        "argmax_agreement": round(agree, 5),
        "max_abs_prob_diff": round(float(diff.max()), 6),
        "mean_abs_prob_diff": round(float(diff.mean()), 6),
        "daemon_ms_per_window_median": round(ms, 3),
        "target_min_agreement": PIPELINE_MIN_AGREEMENT,
        "passed": agree >= PIPELINE_MIN_AGREEMENT,
    }


def _pipeline_text(c: dict) -> str:
    return (f"  end to end ({c['n']} windows, daemon entry vs float torch pipeline): argmax agreement "
            f"{c['argmax_agreement'] * 100:.2f} % (target >= {c['target_min_agreement'] * 100:.0f} %) "
            f"{'PASS' if c['passed'] else 'FAIL'}; prob diff max {c['max_abs_prob_diff']:.4f} mean "
            f"{c['mean_abs_prob_diff']:.5f}; daemon {c['daemon_ms_per_window_median']:.1f} ms per window "
            f"(encoder + pooling + head, 1 thread)\n  windows: {c['windows']}")


def _entry(spec: dict, method: str, states: tuple[int, ...], q: str, enc: Encoder, head: Result,
           manifest: Path, command: str, info: dict, enc_report: Path,
           fused: FusedYamnet | None = None) -> ModelEntry:
    metrics = {k: spec[k] for k in ("val", "test", "metrics") if k in spec}
    source = {k: info[k] for k in ("format", "weights", "weights_sha256", "ct2_model_bin_sha256", "origin")
              if k in info}
    corpora = spec.get("license") or "inherits the training corpora's terms"
    return ModelEntry(
        id=head.model_id,
        description=f"Whisper encoder ({spec['backbone']}, state {'+'.join(map(str, states))}, "
        f"{enc.text} ONNX) {'and YAMNet, fused, ' if fused else ''}+ {head_kind(spec)} "
        f"({spec.get('data', 'trained head')}), "
        f"{q} {'ONNX' if Path(head.path).suffix == '.onnx' else 'TFLite'}",
        frontend="whisper_logmel",
        window_s=float(spec.get("window_s", 2.0)),
        labels=tuple(spec["labels"]),
        backbone=file_ref(enc.path, manifest, input="mel", output="hidden"),
        pooling=method,
        fused_backbone=fused.file if fused else None,
        fused_pooling=fused.pooling if fused else "mean",
        window_level=str(spec.get("window_level", "raw")),
        head=file_ref(head.path, manifest, input="features", output="probs",
                      input_dim=int(spec["input_dim"])),
        quantization=q,
        license=f"{corpora}; Whisper encoder MIT (OpenAI)" + ("; YAMNet Apache-2.0" if fused else ""),
        extra={
            "training": training_provenance(spec, **metrics),
            "conversion": {"command": command, "source": source,
                           "encoder": {"states": list(states), "variant": enc.variant,
                                       "report": enc_report and _display(enc_report)}},
            "backbone_quantization": f"dynamic int8 ({enc.variant})" if enc.int8
            else "float32 compute, weights stored as float16 (fp16-weights)"
            if enc.variant == whisper_quant.FALLBACK else "float32",
            "parity_report": _display(head.report),
        },
    )
