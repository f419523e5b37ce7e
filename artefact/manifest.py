"""Manifest entries of trained and converted models: one typed builder and one writer.

training/ and convert/ describe what they produced as an `edge_ser.manifest.ModelEntry` (files as
`ModelFile`s from `file_ref`) and write it with `write_entry`; the daemon only reads the manifest.
`entry_mapping` is the inverse of `edge_ser.manifest.parse_entry`: parsing what it writes gives the
same entry back.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from edge_ser.errors import ModelError
from edge_ser.manifest import (
    ModelEntry,
    ModelFile,
    parse_entry,
    readable_mode,
    sha256_of,
    shared_weights_dir,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = REPO / "models" / "manifest.yaml"
HEADS_DIR = REPO / "models" / "heads"
"""Where converted files of the project's own models are written by default."""
YAMNET_FILE = "yamnet/yamnet.tflite"
QUANT_SUFFIX = {"float32": "fp32", "float16": "fp16", "dynamic": "dyn", "int8": "int8",
                "onnx-float32": "onnx-fp32"}
"""File/model-id suffix of each quantization (`onnx-float32`: a float32 head in ONNX instead of TFLite)."""
ONNX_HEAD = "onnx-float32"
"""The head variant written as ONNX; its manifest quantization is float32."""

NO_FILE = ModelFile(file="", sha256="")
"""The head of an entry template whose file is not written yet (filled in before writing)."""


def file_ref(path: Path, manifest: Path, **extra: Any) -> ModelFile:
    """The file as `manifest` names it: path relative to the manifest's folder, sha256, size, extra."""
    path = Path(path).resolve()
    try:
        rel = os.path.relpath(path, Path(manifest).resolve().parent)
    except ValueError:
        rel = str(path)
    if rel.startswith(".."):
        rel = str(path)  # outside the models folder: an absolute path still resolves
    return ModelFile(file=rel, sha256=sha256_of(path), size=path.stat().st_size, **extra)


def yamnet_backbone(manifest: Path) -> ModelFile:
    """The YAMNet backbone: copied from an existing entry (keeps its URL), else from shared/."""
    if Path(manifest).is_file():
        data = yaml.safe_load(Path(manifest).read_text()) or {}
        for entry in (data.get("models") or {}).values():
            bb = (entry or {}).get("backbone") or {}
            if bb.get("file") == YAMNET_FILE:
                return ModelFile(**bb)
    path = shared_weights_dir() / YAMNET_FILE
    found = {"sha256": sha256_of(path), "size": path.stat().st_size} if path.is_file() else {"sha256": ""}
    return ModelFile(file=YAMNET_FILE, input="waveform", output="Identity_1", scores_output="Identity",
                     **found)


def training_provenance(spec: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An entry's `training` block from its head folder's head.json: command, data, split (and more)."""
    return {"command": spec.get("command", ""), "data": spec.get("data", ""),
            "split": spec.get("split", "")} | more


def _file_mapping(ref: ModelFile) -> dict[str, Any]:
    """The file's keys in manifest order, without the unset ones."""
    return {f.name: getattr(ref, f.name) for f in fields(ModelFile) if getattr(ref, f.name) is not None}


def entry_mapping(entry: ModelEntry) -> dict[str, Any]:
    """The `models.<id>` mapping of `entry`: its fields in manifest order, then its extra keys."""
    out: dict[str, Any] = {
        "description": entry.description,
        "frontend": entry.frontend,
        "sample_rate": entry.sample_rate,
        "window_s": float(entry.window_s),
        "labels": list(entry.labels),
    }
    if entry.backbone is not None:
        out["backbone"] = _file_mapping(entry.backbone)
        out["pooling"] = entry.pooling  # pools the backbone's frames; nothing to pool without one
        if entry.fused_backbone is not None:
            out["fused_backbone"] = _file_mapping(entry.fused_backbone)
            out["fused_pooling"] = entry.fused_pooling
    elif entry.pooling != "mean":
        out["pooling"] = entry.pooling
    if entry.window_level != "raw":
        out["window_level"] = entry.window_level
    out["head"] = _file_mapping(entry.head)
    if entry.foreground_head is not None:
        out["foreground_head"] = _file_mapping(entry.foreground_head)
        if entry.foreground_labels:
            out["foreground_labels"] = list(entry.foreground_labels)
    out["quantization"] = entry.quantization
    out["license"] = entry.license
    if entry.adaptation is not None:
        ref = _file_mapping(entry.adaptation)
        out["adaptation"] = {"reference": ref.pop("file"), **ref}
    return out | dict(entry.extra)


def write_entry(manifest: str | Path, entry: ModelEntry, make_default: bool = False) -> None:
    """Add or replace `entry` in the manifest (checked by edge_ser's parser before the file changes)."""
    upsert_entry(manifest, entry.id, entry_mapping(entry), make_default=make_default)


# --- the file -----------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Block mappings, but short lists of scalars on one line: `labels: [a, b, c]`."""


def _repr_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(x, (str, int, float, bool)) or x is None for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _repr_list)
_Dumper.add_representer(tuple, _repr_list)


def upsert_entry(manifest_path: str | Path, model_id: str, entry: dict[str, Any],
                 make_default: bool = False) -> None:
    """Add or replace `models.<model_id>` (validated first), keeping the file's header comments.

    `entry` is the mapping as it appears in the file; `write_entry` builds it from a ModelEntry.
    """
    p = Path(manifest_path)
    header, data = "", {"version": 1, "default": None, "models": {}}
    if p.exists():
        text = p.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        header = "".join(ln for ln in _leading_comments(lines))
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ModelError(f"model manifest {p} must be a mapping")
        data.update(loaded)
        data["models"] = dict(loaded.get("models") or {})
    entry = dict(entry)
    parse_entry(model_id, entry, p)  # refuse a bad entry before touching the file
    data["models"][model_id] = entry
    if make_default or not data.get("default"):
        data["default"] = model_id
    ordered = {"version": data.get("version", 1), "default": data["default"], "models": data["models"]}
    body = yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    # A blank line before each model so a reviewer sees one block per model.
    out_lines, in_models = [], False
    for ln in body.splitlines():
        if ln.startswith("models:"):
            in_models = True
        elif in_models and ln.startswith("  ") and not ln.startswith("   ") and out_lines[-1] != "models:":
            out_lines.append("")
        out_lines.append(ln)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".manifest-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(header + "\n".join(out_lines) + "\n")
    os.chmod(tmp, readable_mode(p))
    os.replace(tmp, p)


def _leading_comments(lines: list[str]) -> list[str]:
    out = []
    for ln in lines:
        if ln.startswith("#") or (out and not ln.strip()):
            out.append(ln)
        else:
            break
    return out


