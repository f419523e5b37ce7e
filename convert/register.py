"""Manifest entries for converted files (models/manifest.yaml via edge_ser.manifest.upsert_entry)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from edge_ser.manifest import sha256_of, shared_weights_dir, upsert_entry

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = REPO / "models" / "manifest.yaml"
YAMNET_FILE = "yamnet/yamnet.tflite"
QUANT_SUFFIX = {"float32": "fp32", "float16": "fp16", "dynamic": "dyn", "int8": "int8"}
"""File/model-id suffix of each quantization."""


def file_ref(path: Path, manifest: Path, **extra) -> dict:
    """{"file": path relative to the manifest's folder, "sha256", "size", ...extra}."""
    path = Path(path).resolve()
    try:
        rel = os.path.relpath(path, Path(manifest).resolve().parent)
    except ValueError:
        rel = str(path)
    if rel.startswith(".."):
        rel = str(path)  # outside the models folder: an absolute path still resolves
    return {"file": rel, "sha256": sha256_of(path), "size": path.stat().st_size, **extra}


def yamnet_backbone(manifest: Path) -> dict:
    """The YAMNet backbone block: copied from an existing entry (keeps its URL), else from shared/."""
    if Path(manifest).is_file():
        data = yaml.safe_load(Path(manifest).read_text()) or {}
        for entry in (data.get("models") or {}).values():
            bb = (entry or {}).get("backbone") or {}
            if bb.get("file") == YAMNET_FILE:
                return dict(bb)
    path = shared_weights_dir() / YAMNET_FILE
    ref = {"file": YAMNET_FILE, "input": "waveform", "output": "Identity_1", "scores_output": "Identity"}
    if path.is_file():
        ref.update(sha256=sha256_of(path), size=path.stat().st_size)
    return ref


def upsert(manifest: Path, model_id: str, entry: dict, make_default: bool = False) -> None:
    """Add or replace the entry (validated by edge_ser.manifest)."""
    upsert_entry(manifest, model_id, entry, make_default=make_default)
