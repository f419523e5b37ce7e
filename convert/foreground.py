"""Give a model entry a foreground head: a second head on the same backbone and pooled features.

A head trained on room copies with background talkers learns to call a window without a foreground
talker `neutral`. The daemon runs it beside the entry's own head on one window's pooled features (a
head costs a fraction of a millisecond next to the encoder): the entry's head names the emotion, the
foreground head's `neutral` probability feeds the gate (gate.background_threshold). It is either
- another entry's emotion head (`attach`, e.g. one trained with `training --scene room+babble`), or
- a binary head from a training head folder (`attach_head`, `training run --classes foreground`:
  labels foreground, neutral), exported here to a float32 ONNX file and checked end to end: the
  daemon's foreground score must match the float pipeline's (torch encoder -> pooling -> torch head).
Both heads must read exactly the same features, so everything that makes those features is checked.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from artefact.manifest import HEADS_DIR, file_ref, write_entry
from artefact.onnx_head import INPUT, OUTPUT, export_onnx_head
from artefact.parity import REPORTS_DIR
from edge_ser.audio import to_samples
from edge_ser.errors import UserError
from edge_ser.labels import FOREGROUND_LABELS, NEUTRAL
from edge_ser.manifest import ModelEntry, load_manifest

SAME_FEATURES = ("frontend", "sample_rate", "window_s", "labels", "pooling", "fused_pooling", "window_level")
"""Entry fields both heads' features (and outputs) depend on."""


def feature_mismatch(entry: ModelEntry, source: ModelEntry) -> str | None:
    """Why `source`'s head cannot read `entry`'s pooled features (None: it can)."""
    if entry.backbone is None or source.backbone is None:
        return "both entries need a backbone"
    if NEUTRAL not in entry.labels:
        return f"the entry's labels have no {NEUTRAL} (the foreground score is 1 - its probability)"
    for name in SAME_FEATURES:
        if getattr(entry, name) != getattr(source, name):
            return f"{name} differs ({getattr(entry, name)!r} vs {getattr(source, name)!r})"
    for role, a, b in (("backbone", entry.backbone, source.backbone),
                       ("fused_backbone", entry.fused_backbone, source.fused_backbone)):
        if (a is None) != (b is None) or (a is not None and a.sha256 != b.sha256):
            return f"the {role} files differ"
    if entry.head.input_dim != source.head.input_dim:
        return f"head input_dim differs ({entry.head.input_dim} vs {source.head.input_dim})"
    if entry.adaptation is not None:
        return "the entry adapts its features (model.adapt), which the foreground head was not trained on"
    return None


def attach(manifest: Path, model_id: str, source_id: str) -> ModelEntry:
    """Write `model_id`'s entry with `source_id`'s head as its foreground head; the new entry."""
    m = load_manifest(manifest)
    if model_id == source_id:
        raise UserError("--model and --from name the same entry; a head cannot gate itself")
    entry, source = m.get(model_id), m.get(source_id)
    why = feature_mismatch(entry, source)
    if why:
        raise UserError(f"{source_id}'s head cannot be {model_id}'s foreground head: {why}")
    extra = {k: v for k, v in entry.extra.items() if k != "foreground_report"}
    new = dataclasses.replace(entry, foreground_head=source.head, foreground_labels=(),
                              extra={**extra, "foreground_from": source_id})
    write_entry(manifest, new)
    return new


MIN_AGREEMENT = 0.99
"""Share of windows on which the daemon's and the float pipeline's foreground decisions (at 0.5) agree."""
MAX_SCORE_DIFF = 0.02
"""Largest difference of the foreground score between the daemon and the float pipeline."""
TAIL_S = 0.4
"""Each check window is also run with all but its last TAIL_S seconds silent, as a stream cuts the end
of an utterance: clean speech alone would give every window a foreground score near 1."""


def head_mismatch(entry: ModelEntry, spec: dict, method: str) -> str | None:
    """Why a head folder's head (head.json `spec`, pooling `method`) cannot read `entry`'s features."""
    if entry.backbone is None or entry.frontend != "whisper_logmel":
        return "the entry has no Whisper backbone"
    if NEUTRAL not in entry.labels:
        return f"the entry's labels have no {NEUTRAL}"
    labels = tuple(spec.get("labels", ()))
    if labels not in (FOREGROUND_LABELS, entry.labels):
        return f"its labels are {list(labels)}, not {list(FOREGROUND_LABELS)} or the entry's"
    checks = (("pooling", method, entry.pooling), ("window_level", spec.get("window_level", "raw"),
              entry.window_level), ("input_dim", int(spec.get("input_dim", 0)), entry.head.input_dim))
    for name, got, want in checks:
        if got != want:
            return f"{name} differs ({got!r} vs the entry's {want!r})"
    if spec.get("fuse") or entry.fused_backbone is not None:
        return "fused backbones are not supported for a foreground head folder"
    if entry.adaptation is not None:
        return "the entry adapts its features (model.adapt), which the foreground head was not trained on"
    return None


def attach_head(manifest: Path, model_id: str, folder: Path, checkpoint: Path, windows: np.ndarray,
                windows_source: str, out_dir: Path = HEADS_DIR, reports_dir: Path = REPORTS_DIR,
                command: str = "") -> tuple[ModelEntry, dict]:
    """Export the head folder's head as `model_id`'s foreground head after the end-to-end check;
    (the new entry, the check's report)."""
    from .head_export import _display
    from .head_model import load_float_model
    from .whisper_encoder import encoder_states
    from .whisper_model import daemon_model, read_whisper_head, torch_features

    entry = load_manifest(manifest).get(model_id)
    spec, method, states = read_whisper_head(folder)
    why = head_mismatch(entry, spec, method)
    if why:
        raise UserError(f"{folder}'s head cannot be {model_id}'s foreground head: {why}")
    labels = tuple(spec["labels"])
    _, head = load_float_model(folder)
    encoder, _ = encoder_states(checkpoint, states)
    tail = windows.copy()
    tail[:, : tail.shape[1] - to_samples(TAIL_S)] = 0.0
    checks = np.concatenate([windows, tail])
    with torch.no_grad():
        feats = torch_features(encoder, method, checks, entry.window_level)
        want = 1.0 - head(torch.from_numpy(feats)).numpy()[:, labels.index(NEUTRAL)]
    name = f"{Path(folder).name}-onnx-fp32"
    out = Path(out_dir) / f"{name}.onnx"
    blob = export_onnx_head(head, int(spec["input_dim"]), probe=feats[:32])
    with tempfile.TemporaryDirectory() as tmp:
        trial_file = Path(tmp) / out.name
        trial_file.write_bytes(blob)
        trial_manifest = Path(tmp) / "manifest.yaml"
        trial = dataclasses.replace(entry, foreground_head=_head_ref(trial_file, trial_manifest, spec),
                                    foreground_labels=labels)
        shutil.copyfile(manifest, trial_manifest)
        write_entry(trial_manifest, trial)
        daemon = daemon_model(trial.id, trial_manifest, (Path(manifest).parent,))
        got = np.array([daemon.predict(w).foreground for w in checks], dtype=np.float64)
    agree = float(np.mean((got >= 0.5) == (want >= 0.5)))
    diff = float(np.abs(got - want).max())
    report = {"model": model_id, "foreground_head": name, "head_folder": _display(folder),
              "windows": f"{windows_source}; each also with all but its last {TAIL_S} s silent",
              "n_windows": len(checks), "agreement": round(agree, 4), "max_abs_diff": round(diff, 5),
              "min_agreement": MIN_AGREEMENT, "max_abs_diff_limit": MAX_SCORE_DIFF,
              "mean_foreground": round(float(np.mean(got)), 4), "command": command}
    # one report per entry: the same head folder may be attached to several entries
    report_file = reports_dir / f"{model_id}.foreground.json"
    reports_dir.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps(report, indent=1) + "\n")
    if agree < MIN_AGREEMENT or diff > MAX_SCORE_DIFF:
        raise UserError(f"the daemon's foreground score differs from the float pipeline's (agreement "
                        f"{agree:.3f}, max difference {diff:.3g}); the encoder of {model_id} may not "
                        f"return the states {list(states)} the head was trained on")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    new = dataclasses.replace(entry, foreground_head=_head_ref(out, manifest, spec), foreground_labels=labels,
                              extra={**entry.extra, "foreground_from": spec.get("command", str(folder)),
                                     "foreground_report": _display(report_file)})
    write_entry(manifest, new)
    return new, report


def _head_ref(path: Path, manifest: Path, spec: dict):
    return file_ref(path, manifest, input=INPUT, output=OUTPUT, input_dim=int(spec["input_dim"]))
