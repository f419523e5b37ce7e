"""Encoder files a `whisper-model` conversion reuses instead of writing another copy.

Heads trained on the same checkpoint and states share one encoder graph, and the export is
deterministic: a second model (an ONNX head for an existing entry, a retrained head) would otherwise
add a byte-identical 10+ MB file under models/heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_ser.errors import UserError
from edge_ser.manifest import sha256_of

from . import whisper_quant

INT8_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QLinearMatMul",
                      "MatMulNBits"})
"""Ops that only the quantized encoder variants contain."""


@dataclass(frozen=True)
class Encoder:
    """An encoder file the entry may use and the variant it is (convert.whisper_quant)."""

    path: Path
    variant: str
    owned: bool = True
    """Written by this conversion (so it may delete it); False for a file that was there before."""

    @property
    def int8(self) -> bool:
        return self.variant not in (whisper_quant.FALLBACK, FP32)

    @property
    def text(self) -> str:
        """What the manifest description says of the file."""
        return {whisper_quant.FALLBACK: "float16-stored", FP32: "FP32"}.get(self.variant, "INT8")


FP32 = "fp32"
"""Variant name of an encoder file with neither quantized ops nor float16 weights."""


def same_file(path: Path, folder: Path) -> Path | None:
    """Another file in `folder` with exactly `path`'s bytes (the first by name), or None."""
    path = Path(path)
    size, digest = path.stat().st_size, None
    for other in sorted(Path(folder).glob(f"*{path.suffix}")):
        if other.resolve() == path.resolve() or other.stat().st_size != size:
            continue
        digest = digest or sha256_of(path)
        if sha256_of(other) == digest:
            return other
    return None


def existing_encoder(path: Path, manifest: Path) -> tuple[Encoder, Path | None]:
    """(the encoder, its conversion report) for a file converted before: variant and report from a
    manifest entry whose backbone has the file's sha256, else the variant read from the graph."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"encoder file not found: {path}")
    digest = sha256_of(path)
    models = {}
    if Path(manifest).is_file():
        models = (yaml.safe_load(Path(manifest).read_text()) or {}).get("models") or {}
    for entry in models.values():
        if ((entry or {}).get("backbone") or {}).get("sha256") == digest:
            enc = ((entry.get("conversion") or {}).get("encoder")) or {}
            if enc.get("variant"):
                report = enc.get("report")
                return Encoder(path, str(enc["variant"]), owned=False), Path(report) if report else None
    return Encoder(path, _variant_of(path), owned=False), None


def _variant_of(path: Path) -> str:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        raise UserError(f"{path} is not an ONNX file: {exc}") from None
    if any(n.op_type in INT8_OPS for n in graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer):
        return whisper_quant.FALLBACK
    return FP32
