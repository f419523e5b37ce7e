"""Ship a trained head into models/: the head folder (head.pt + head.json, for convert/), the
adaptation reference statistics, and optionally an ONNX export registered in the manifest.

The ONNX path is the fallback when convert/ is not available: `features` [1, D] float32 ->
`probs` [1, C], standardisation folded in, softmax inside.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from artefact.heads import load_head
from artefact.manifest import training_provenance, write_entry
from artefact.onnx_head import export_onnx_head
from edge_ser.errors import UserError
from edge_ser.manifest import ModelEntry, ModelFile, load_manifest, sha256_of

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


def ship_folder(src: Path, name: str, models: Path = MODELS) -> Path:
    """Copy head.pt/head.json (+ record.json) to models/heads/<name>/ and write <name>.norm.json."""
    src = Path(src)
    spec, _ = load_head(src)
    fused = (spec.get("fuse") or {}).get("backbone")
    if fused not in (None, "yamnet"):
        raise UserError(f"{src} is a head with {fused} features fused in; the daemon can add YAMNet to a "
                        "backbone, nothing else, so it is for measurement only")
    dst = models / "heads" / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("head.pt", "head.json", "record.json"):
        if (src / f).is_file():
            shutil.copy(src / f, dst / f)
    norm = models / "heads" / f"{name}.norm.json"
    norm.write_text(json.dumps({"mean": spec["feature_mean"], "std": spec["feature_std"],
                                "pooling": spec["pooling"], "backbone": spec.get("backbone", "yamnet"),
                                "note": "training-set feature statistics (edge_ser.adaptation reference)"})
                    + "\n")
    return dst


def export_onnx(src: Path, out: Path) -> Path:
    """Head folder -> ONNX file (features -> probs), checked against torch on one typical row."""
    spec, model = load_head(Path(src))
    if spec["arch"] == "attn":
        raise UserError("attn heads pool frames themselves; only linear/mlp heads export to `features`")
    dim = int(spec["input_dim"])
    probe = np.random.default_rng(0).standard_normal((1, dim)).astype(np.float32)
    probe = probe * np.asarray(spec["feature_std"], np.float32) + np.asarray(spec["feature_mean"], np.float32)
    blob = export_onnx_head(model, dim, probe)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return out


def register_onnx(onnx_path: Path, name: str, spec: dict, default: bool,
                  manifest: Path = MODELS / "manifest.yaml") -> None:
    """Upsert a manifest entry for an exported ONNX head (backbone: the shared YAMNet file)."""
    m = load_manifest(manifest)
    yam = next((e.backbone for e in m.models.values() if e.backbone and "yamnet" in e.backbone.file), None)
    if yam is None:
        raise UserError("no YAMNet backbone entry in the manifest to copy")
    rel = Path(onnx_path).resolve().relative_to(Path(manifest).resolve().parent).as_posix()
    norm = f"heads/{name}.norm.json"
    entry = ModelEntry(
        id=name,
        description=f"YAMNet + {spec['arch']} head trained on {spec.get('data', '?')} (merged classes), ONNX",
        frontend="waveform", window_s=2.0, labels=tuple(spec["labels"]),
        backbone=yam,
        pooling=spec["pooling"],
        head=ModelFile(file=rel, sha256=sha256_of(onnx_path), size=Path(onnx_path).stat().st_size,
                       input="features", output="probs", input_dim=int(spec["input_dim"])),
        quantization="float32",
        license=spec.get("license", ""),
        adaptation=ModelFile(file=norm, sha256=sha256_of(Path(manifest).parent / norm)),
        extra={"training": training_provenance(spec, test=spec.get("test", {}))},
    )
    write_entry(manifest, entry, make_default=default)
