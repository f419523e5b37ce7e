"""TFLite backend: ai_edge_litert (LiteRT 2.x) first, tflite_runtime as a fallback.

tflite-runtime 2.14 (its last release) lacks newer op versions (e.g. FULLY_CONNECTED v12 in the YAMNet
export), so a load failure is turned into one line that names the file, the op and the fix.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

FIX = "pip install 'ai-edge-litert>=2'"
"""What a user runs when no TFLite runtime (or only an old one) is installed."""


def _import_interpreter() -> tuple[Any, str]:
    """Return (Interpreter class, 'package version') of the best TFLite runtime installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {_version('tflite-runtime')}"
    except ImportError:
        pass
    raise ModelError(f"no TFLite runtime is installed (needed for .tflite models); fix: {FIX}")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "(unknown version)"


def load_error(path: str | Path, runtime: str, err: BaseException) -> ModelError:
    """Condense a runtime's (often multi-line) load failure into one actionable ModelError."""
    text = str(err)
    m = re.search(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'", text)
    if m:
        op = f"op {m.group(1)} version {m.group(2)}"
    else:
        m = re.search(r"Encountered unresolved custom op: (\w+)", text)
        op = f"custom op {m.group(1)}" if m else None
    # tflite-runtime stopped at 2.14: its fix is the successor package; LiteRT itself just needs updating.
    fix = FIX if runtime.startswith("tflite-runtime") else "pip install -U ai-edge-litert"
    if op:
        return ModelError(f"cannot load {path}: {runtime} does not support {op}; fix: {fix}")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(err).__name__)
    return ModelError(f"cannot load {path} with {runtime}: {first}; if the file is intact, fix: {fix}")


_NATIVE_INFO = re.compile(r"^INFO: (Created TensorFlow Lite XNNPACK delegate|Initialized TensorFlow Lite)")
_NATIVE_ANY = re.compile(r"^(INFO|ERROR): ")
"""After a failed load the runtime's own lines only repeat what the ModelError says in one line."""


@contextmanager
def _native_info_filtered() -> Iterator[None]:
    """Drop the runtime's native "INFO: Created ... XNNPACK delegate" line from stderr (fd 2), and
    its ERROR lines when the load fails.

    C++ code prints these straight to fd 2 on every load, so a CLI error would no longer be the only
    line on stderr. Everything else written meanwhile (warnings, other threads) is passed on.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    noise = _NATIVE_INFO
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            noise = _NATIVE_ANY
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True)
                    if not noise.match(ln.decode("utf-8", "replace"))]
            if kept:
                os.write(2, b"".join(kept))


class TFLiteBackend:
    """A .tflite file behind the Backend protocol; resizes variable-length inputs on demand."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = str(path)
        interpreter_cls, self.runtime = _import_interpreter()
        try:
            with _native_info_filtered():
                self._it = interpreter_cls(model_path=self.path, num_threads=threads)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise load_error(self.path, self.runtime, e) from None
        self._inputs = {d["name"]: d for d in self._it.get_input_details()}
        self._outputs = {d["name"]: d for d in self._it.get_output_details()}

    def input_names(self) -> list[str]:
        return list(self._inputs)

    def output_names(self) -> list[str]:
        return list(self._outputs)

    def input_shape(self, name: str) -> list[int]:
        """Shape signature of an input; -1 marks a dimension that may vary."""
        d = self._inputs[name]
        sig = d.get("shape_signature")
        return [int(x) for x in (sig if sig is not None and len(sig) else d["shape"])]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        resized = False
        for name, value in inputs.items():
            d = self._inputs.get(name)
            if d is None:
                raise ModelError(f"{self.path} has no input {name!r} (inputs: {', '.join(self._inputs)})")
            if tuple(d["shape"]) != value.shape:
                try:
                    self._it.resize_tensor_input(d["index"], list(value.shape), strict=True)
                except (ValueError, RuntimeError) as e:
                    raise ModelError(
                        f"{self.path}: input {name!r} cannot take shape {list(value.shape)}: {e}"
                    ) from None
                resized = True
        if resized:
            self._it.allocate_tensors()
            self._inputs = {d["name"]: d for d in self._it.get_input_details()}
            self._outputs = {d["name"]: d for d in self._it.get_output_details()}
        for name, value in inputs.items():
            d = self._inputs[name]
            self._it.set_tensor(d["index"], _quantize(value, d))
        self._it.invoke()
        return {name: _dequantize(self._it.get_tensor(d["index"]), d) for name, d in self._outputs.items()}


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the tensor's dtype (fully-integer models take int8/uint8 inputs)."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer) and np.issubdtype(value.dtype, np.floating):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        q = np.round(value / (scale or 1.0)) + zero
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(value, dtype=dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(value.dtype, np.integer) and scale:
        return (value.astype(np.float32) - zero) * scale
    return value
