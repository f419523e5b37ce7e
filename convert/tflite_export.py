"""Torch module or tf.function -> .tflite bytes in float32, float16, dynamic-range or full-integer INT8.

The reusable entry points:

- `export_torch(module, inputs, quantization, representative=...)`: torch module -> TFLite bytes,
  via `torch2tf` and the official TFLite converter (tensorflow-cpu, the [convert] extra).
- `export_concrete(fn, ...)`: the same for a tf.function someone built directly (e.g. in Keras).

Tensor names in the file are set to the names given (e.g. `features` -> `probs`), because the
daemon's TFLite backend addresses inputs and outputs by name. Full-integer INT8 keeps float32 at the
boundary (a QUANTIZE op in, DEQUANTIZE out), so callers never handle scales.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_ser.errors import ModelError

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
"""float16: weights stored as fp16 (dequantized at load); dynamic: int8 weights, float activations;
int8: weights and activations int8 (calibrated on a representative dataset), float32 in/out;
int16x8: int8 weights, int16 activations (integer-only, for inputs int8 cannot resolve)."""


@dataclass(frozen=True)
class TensorIO:
    """Name, shape (None = variable) of one model input."""

    name: str
    """Tensor name in the .tflite file."""

    shape: tuple[int | None, ...]
    """Shape; None marks a dimension that may vary at run time (e.g. the number of samples)."""


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ModelError("TFLite export needs tensorflow-cpu: pip install -e '.[convert]'") from exc
    tf.get_logger().setLevel("ERROR")
    return tf


def export_torch(
    module,
    inputs: Sequence[TensorIO],
    output_names: Sequence[str],
    quantization: str,
    representative: Iterable[Sequence[np.ndarray]] | None = None,
    check_inputs: Sequence[np.ndarray] | None = None,
    atol: float = 1e-4,
) -> bytes:
    """Convert a torch module (fx-traceable, layers as in torch2tf) to .tflite bytes.

    check_inputs: one example per input; the TensorFlow translation must match torch on it within
    atol before anything is converted (a wrong translation must never reach a quantizer).
    """
    tf = _tf()
    from . import torch2tf

    specs = [tf.TensorSpec(list(i.shape), tf.float32, name=i.name) for i in inputs]
    fn = torch2tf.tf_function(module, specs)
    if check_inputs is not None:
        torch2tf.check_close(module, fn, list(check_inputs), atol=atol)
    return export_concrete(fn, [i.name for i in inputs], output_names, quantization, representative)


def export_concrete(
    fn,
    input_names: Sequence[str],
    output_names: Sequence[str],
    quantization: str,
    representative: Iterable[Sequence[np.ndarray]] | None = None,
    allow_float_fallback: bool = False,
) -> bytes:
    """Convert a concrete tf.function whose outputs are a dict with sorted keys (one per output).

    allow_float_fallback: for int8, let ops without an int8 kernel stay float (mixed model) instead
    of failing; heads never need it, whole backbones with a log-mel frontend may.
    """
    tf = _tf()
    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}")
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if quantization == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization in ("int8", "int16x8"):
        if representative is None:
            raise ModelError(f"{quantization} quantization needs a representative dataset")
        samples = [list(map(lambda a: np.asarray(a, np.float32), s)) for s in representative]
        if not samples:
            raise ModelError(f"the representative dataset for {quantization} quantization is empty")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: iter(samples)
        ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if quantization == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if allow_float_fallback:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        conv.target_spec.supported_ops = ops
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # "Statistics for quantized inputs were expected": float I/O by design
            blob = conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types; one line for the user
        lines = [ln for ln in str(exc).splitlines() if "error" in ln.lower()] or str(exc).splitlines() or [""]
        raise ModelError(f"TFLite conversion ({quantization}) failed: {lines[0].strip()[:300]}") from exc
    return rename_io(blob, input_names, output_names)


def rename_io(blob: bytes, input_names: Sequence[str], output_names: Sequence[str]) -> bytes:
    """Give the main subgraph's input and output tensors these names (in order)."""
    _tf()
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.convert_bytearray_to_object(bytearray(blob))
    sg = model.subgraphs[0]
    if len(sg.inputs) != len(input_names) or len(sg.outputs) != len(output_names):
        raise ModelError(
            f"converted model has {len(sg.inputs)} inputs/{len(sg.outputs)} outputs, "
            f"expected {len(input_names)}/{len(output_names)}"
        )
    io_tensors = list(sg.inputs) + list(sg.outputs)
    for idx, name in zip(io_tensors, list(input_names) + list(output_names), strict=True):
        sg.tensors[idx].name = name.encode()
    # A signature def (if the converter wrote one) would keep the old names; the daemon uses names.
    model.signatureDefs = []
    return bytes(fbu.convert_object_to_bytearray(model))


def interpreter(blob_or_path: bytes | str, threads: int = 1):
    """An allocated ai_edge_litert Interpreter for a model file or bytes."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(blob_or_path, (bytes, bytearray)):
        it = Interpreter(model_content=bytes(blob_or_path), num_threads=threads)
    else:
        it = Interpreter(model_path=str(blob_or_path), num_threads=threads)
    it.allocate_tensors()
    return it


def runner(blob_or_path: bytes | str, threads: int = 1) -> Callable[..., list[np.ndarray]]:
    """f(*inputs) -> outputs (float32), resizing variable-length inputs as needed."""
    it = interpreter(blob_or_path, threads)
    state = {"shapes": [tuple(d["shape"]) for d in it.get_input_details()]}

    def run(*xs: np.ndarray) -> list[np.ndarray]:
        ins = it.get_input_details()
        shapes = [tuple(np.shape(x)) for x in xs]
        if shapes != state["shapes"]:
            for d, s in zip(ins, shapes, strict=True):
                it.resize_tensor_input(d["index"], list(s), strict=True)
            it.allocate_tensors()
            state["shapes"] = shapes
            ins = it.get_input_details()
        for d, x in zip(ins, xs, strict=True):
            it.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]))
        it.invoke()
        return [np.array(it.get_tensor(d["index"]), dtype=np.float32) for d in it.get_output_details()]

    return run
