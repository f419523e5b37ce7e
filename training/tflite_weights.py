"""Read YAMNet's weights out of the published `yamnet.tflite` (no TensorFlow needed).

The TF Hub export stores dynamic-range INT8 weights ("pseudo_qconst": int8 values + per-channel
float scales, zero point 0) for most convolutions and both matrix products, float32 for the few
small ones, and batch-norm already folded into each convolution's weights and bias. We walk the
graph's operators in execution order and hand the dequantized tensors to the torch rebuild
(training/yamnet_model.py) in its own layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edge_ser.errors import ModelError

_NUMPY_TYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT8: np.int8,
}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Op:
    """One operator of the graph with its constant inputs already decoded."""

    kind: str
    """Builtin operator name, e.g. CONV_2D."""
    inputs: tuple
    """Per input: a float32/int32 numpy array for constants, None for activations."""
    options: object
    """The operator's builtin options object (strides, padding, ...)."""


def _dequantize(data: np.ndarray, tensor) -> np.ndarray:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return data.astype(np.float32)
    scale = np.asarray(q.scale, dtype=np.float32)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else 0, dtype=np.float32)
    if scale.size > 1:  # per-channel: broadcast along the quantized dimension
        shape = [1] * data.ndim
        shape[q.quantizedDimension] = scale.size
        scale = scale.reshape(shape)
        if zero.size > 1:
            zero = zero.reshape(shape)
    return ((data.astype(np.float32) - zero) * scale).astype(np.float32)


def read_ops(path: str | Path) -> list[Op]:
    """All operators of subgraph 0 in execution order, constants dequantized to float32."""
    try:
        raw = Path(path).read_bytes()
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    except (OSError, ValueError, IndexError) as exc:
        raise ModelError(f"cannot read TFLite model {path}: {exc}") from exc
    graph = model.subgraphs[0]

    def const(index: int):
        if index < 0:
            return None
        tensor = graph.tensors[index]
        buf = model.buffers[tensor.buffer]
        if buf.data is None or len(buf.data) == 0 or tensor.type not in _NUMPY_TYPES:
            return None
        data = np.frombuffer(bytes(buf.data), dtype=_NUMPY_TYPES[tensor.type])
        data = data.reshape([int(d) for d in tensor.shape])
        return _dequantize(data, tensor) if tensor.type == schema.TensorType.INT8 else data

    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = _OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ops.append(Op(kind, tuple(const(i) for i in op.inputs), op.builtinOptions))
    return ops


def yamnet_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The rebuild's parameters by name, in torch layout (see YAMNet.load_tflite)."""
    ops = read_ops(path)
    out: dict[str, np.ndarray] = {}
    convs = [op for op in ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    dense = [op for op in ops if op.kind == "FULLY_CONNECTED"]
    muls = [op for op in ops if op.kind == "MUL" and op.inputs[1] is not None and op.inputs[1].ndim == 1
            and op.inputs[1].size == 400]
    if len(convs) != 27 or len(dense) != 2 or len(muls) != 1:
        raise ModelError(f"{path} does not look like YAMNet: {len(convs)} convolutions, {len(dense)} dense")
    out["frontend.window"] = muls[0].inputs[1]
    out["frontend.mel"] = dense[0].inputs[1].T.copy()  # [257 bins, 64 mel]
    out["frontend.mel_bias"] = dense[0].inputs[2]  # the log offset 0.001, stored as a bias
    # layer 1 is a full 3x3 conv; layers 2..14 are (depthwise, pointwise) pairs.
    names = ["layer1.conv"] + [f"layer{i}.{part}" for i in range(2, 15) for part in ("dw", "pw")]
    for name, op in zip(names, convs, strict=True):
        weight = op.inputs[1]
        if op.kind == "CONV_2D":  # TFLite [out, kh, kw, in] -> torch [out, in, kh, kw]
            weight = weight.transpose(0, 3, 1, 2)
        else:  # depthwise [1, kh, kw, ch] -> torch grouped [ch, 1, kh, kw]
            weight = weight.transpose(3, 0, 1, 2)
        out[f"backbone.{name}.weight"] = np.ascontiguousarray(weight)
        out[f"backbone.{name}.bias"] = op.inputs[2]
    out["logits.weight"] = dense[1].inputs[1]
    out["logits.bias"] = dense[1].inputs[2]
    return out
