"""Inference runtimes behind one interface (TFLite via ai-edge-litert or tflite-runtime; onnxruntime)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import Backend

SUFFIXES = (".tflite", ".onnx")
"""Model file types the daemon can run; the suffix picks the backend."""


def open_backend(path: str | Path, threads: int = 1) -> Backend:
    """Load a model file with the runtime its extension names (.tflite or .onnx)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        from .tflite import TFLiteBackend

        return TFLiteBackend(path, threads=threads)
    if suffix == ".onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(path, threads=threads)
    raise ModelError(f"unsupported model file {path}: expected one of {', '.join(SUFFIXES)}")


__all__ = ["Backend", "SUFFIXES", "open_backend"]
