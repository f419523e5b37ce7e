"""Graph surgery on yamnet.tflite: a trunk for the feature cache, and the fine-tuned export.

- `trunk_bytes`: log-mel patches [n, 96, 64, 1] -> activations after layer 14's depthwise conv
  [n, 3, 2, 1024], i.e. the frozen part of the fine-tuned model, run by ai_edge_litert (INT8 hybrid
  kernels, XNNPACK). The fine-tuning cache (training/finetune/cache.py) stores its output so a 2-core CPU
  only has to train the last pointwise convolution (1.05 M of YAMNet's 3.2 M backbone weights)
  and the heads.
- `export_finetuned`: the original file with layer 14's pointwise conv replaced by the fine-tuned
  weights (float16 behind a DEQUANTIZE op) and the AudioSet dense layer replaced by the emotion
  head, followed by a mean over frames and a softmax: one file, float32 waveform in,
  probabilities [1, n_labels] out. Frontend, layers 1-13 and layer 14's depthwise conv stay
  byte-identical (dynamic-range INT8), so the export computes what the cache fed the training.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edge_ser.errors import ModelError

TRUNK_LAST_CONV = 25  # conv ops in order: layer1, (dw, pw) x 13; index 25 = layer 14 depthwise
LAYER14_DW, LAYER14_PW = 25, 26


def _load(path: str | Path) -> schema.ModelT:
    try:
        raw = Path(path).read_bytes()
        return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(raw, 0))
    except (OSError, ValueError, IndexError) as exc:
        raise ModelError(f"cannot read TFLite model {path}: {exc}") from exc


def _save(model: schema.ModelT) -> bytes:
    builder = flatbuffers.Builder(1 << 22)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opname(model: schema.ModelT, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    c = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == c)


def _conv_positions(model: schema.ModelT) -> list[int]:
    ops = model.subgraphs[0].operators
    pos = [i for i, op in enumerate(ops) if _opname(model, op) in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    if len(pos) != 27:
        raise ModelError(f"not a YAMNet graph: {len(pos)} convolutions")
    return pos


def trunk_bytes(path: str | Path) -> bytes:
    """yamnet.tflite cut to: patches [n, 96, 64, 1] -> layer-14 depthwise output [n, 3, 2, 1024]."""
    model = _load(path)
    g = model.subgraphs[0]
    pos = _conv_positions(model)
    first, last = pos[0], pos[TRUNK_LAST_CONV]
    g.inputs = np.array([g.operators[first].inputs[0]], dtype=np.int32)
    g.outputs = np.array([g.operators[last].outputs[0]], dtype=np.int32)
    g.operators = g.operators[first:last + 1]
    for t in (g.inputs[0], g.outputs[0]):  # let the batch axis be resized
        tensor = g.tensors[t]
        tensor.shapeSignature = np.array([-1, *tensor.shape[1:]], dtype=np.int32)
    return _save(model)


def quantize_per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 per channel along `axis` (zero point 0), as TFLite's dynamic-range weights."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.maximum(np.abs(w).max(axis=red), 1e-12) / 127.0
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def _set_tensor(model: schema.ModelT, index: int, data: np.ndarray, axis: int | None = None) -> None:
    """Replace a constant tensor's data (float32, or INT8 per channel along `axis`)."""
    g = model.subgraphs[0]
    tensor = g.tensors[index]
    if axis is None:
        data = np.ascontiguousarray(data, dtype=np.float32)
        tensor.type = schema.TensorType.FLOAT32
        tensor.quantization = None
    else:
        data, scale = quantize_per_channel(np.asarray(data, dtype=np.float32), axis)
        tensor.type = schema.TensorType.INT8
        q = schema.QuantizationParametersT()
        q.scale = scale.tolist()
        q.zeroPoint = [0] * scale.size
        q.quantizedDimension = axis
        tensor.quantization = q
    tensor.shape = np.array(data.shape, dtype=np.int32)
    tensor.shapeSignature = None
    old = tensor.buffer
    buf = schema.BufferT()
    buf.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
    model.buffers.append(buf)  # a fresh buffer: the old one may be shared with another tensor
    tensor.buffer = len(model.buffers) - 1
    if not any(t.buffer == old for t in g.tensors):
        model.buffers[old].data = None


def _opcode(model: schema.ModelT, builtin: int, version: int = 1) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(model: schema.ModelT, name: str, shape: list[int], ttype: int,
                data: np.ndarray | None = None) -> int:
    g = model.subgraphs[0]
    t = schema.TensorT()
    t.name = name.encode()
    t.shape = np.array(shape, dtype=np.int32)
    t.type = ttype
    buf = schema.BufferT()
    if data is not None:
        buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    g.tensors.append(t)
    return len(g.tensors) - 1


def _set_float16_weight(model: schema.ModelT, op, position: int, data: np.ndarray) -> None:
    """Feed `op` a float16 constant through a DEQUANTIZE op (the TFLite converter's float16 pattern)."""
    g = model.subgraphs[0]
    name = g.tensors[op.inputs[position]].name.decode()
    shape = list(data.shape)
    half = _new_tensor(model, f"{name}_fp16", shape, schema.TensorType.FLOAT16, data.astype(np.float16))
    full = _new_tensor(model, f"{name}_dequantized", shape, schema.TensorType.FLOAT32)
    deq = schema.OperatorT()
    deq.opcodeIndex = _opcode(model, schema.BuiltinOperator.DEQUANTIZE, version=3)
    deq.inputs = np.array([half], dtype=np.int32)
    deq.outputs = np.array([full], dtype=np.int32)
    old = int(op.inputs[position])
    inputs = np.array(op.inputs, dtype=np.int32)  # the parsed array is read-only
    inputs[position] = full
    op.inputs = inputs
    g.operators.insert(next(i for i, o in enumerate(g.operators) if o is op), deq)
    if not any(int(i) == old for o in g.operators for i in o.inputs):
        model.buffers[g.tensors[old].buffer].data = None


def _apply_layer14(model, layer14: dict[str, np.ndarray], pw_dtype: str) -> None:
    """Write fine-tuned layer-14 weights (torch layout) into the parsed model, in place."""
    g = model.subgraphs[0]
    pos = _conv_positions(model)
    dw, pw = g.operators[pos[LAYER14_DW]], g.operators[pos[LAYER14_PW]]
    if "dw_weight" in layer14:
        _set_tensor(model, dw.inputs[1], layer14["dw_weight"].transpose(1, 2, 3, 0), axis=3)  # [1, kh, kw, c]
        _set_tensor(model, dw.inputs[2], layer14["dw_bias"])
    pw_weight = layer14["pw_weight"].transpose(0, 2, 3, 1)  # torch [o, i, kh, kw] -> [o, kh, kw, i]
    if pw_dtype == "int8":
        _set_tensor(model, pw.inputs[1], pw_weight, axis=0)
    elif pw_dtype == "float16":
        _set_float16_weight(model, pw, 1, pw_weight)
    else:
        _set_tensor(model, pw.inputs[1], pw_weight)
    _set_tensor(model, pw.inputs[2], layer14["pw_bias"])


def export_layer14(src: str | Path, layer14: dict[str, np.ndarray], pw_dtype: str = "float16") -> bytes:
    """yamnet.tflite with fine-tuned layer 14 only: a backbone with the original inputs and outputs
    (`Identity_1` embeddings, `Identity` AudioSet scores), for a separate head file."""
    model = _load(src)
    _apply_layer14(model, layer14, pw_dtype)
    return _save(model)


def export_finetuned(src: str | Path, layer14: dict[str, np.ndarray], head_w: np.ndarray,
                     head_b: np.ndarray, pw_dtype: str = "float16") -> bytes:
    """yamnet.tflite with fine-tuned layer 14 + head -> bytes of the single-file emotion model.

    layer14: torch-layout arrays pw_weight [1024, 1024, 1, 1], pw_bias and optionally dw_weight
    [1024, 1, 3, 3], dw_bias (left as stored when absent); head_w [n_labels, 1024], head_b
    [n_labels] (applied per frame, then averaged over frames: identical to applying the linear
    head to the frame-mean embedding).

    The fine-tuned pointwise conv is stored as float16 by default (2 MB, dequantized once at
    load): INT8 per-channel weights (pw_dtype="int8", 1 MB) flipped the argmax of 1.4 % of the
    test clips of a model whose probabilities are flat (measured on si-all+). The 5x1024 head
    stays float32 (20 kB). Every other weight keeps the file's own INT8 storage.
    """
    model = _load(src)
    g = model.subgraphs[0]
    _apply_layer14(model, layer14, pw_dtype)
    fcs = [op for op in g.operators if _opname(model, op) == "FULLY_CONNECTED"]
    fc = fcs[-1]  # the AudioSet classifier on the frame embeddings (the first one is the mel matrix)
    n = int(head_w.shape[0])
    _set_tensor(model, fc.inputs[1], head_w)  # float32: a 5x1024 head is not worth 8 bits
    _set_tensor(model, fc.inputs[2], head_b)
    logits = fc.outputs[0]
    g.tensors[logits].shape = np.array([1, n], dtype=np.int32)
    g.tensors[logits].shapeSignature = np.array([-1, n], dtype=np.int32)
    # drop the sigmoid (and everything that consumed the AudioSet scores)
    g.operators = [op for op in g.operators if _opname(model, op) != "LOGISTIC"]
    axis = _new_tensor(model, "frames_axis", [1], schema.TensorType.INT32, np.array([0], dtype=np.int32))
    pooled = _new_tensor(model, "mean_logits", [1, n], schema.TensorType.FLOAT32)
    probs = _new_tensor(model, "probs", [1, n], schema.TensorType.FLOAT32)
    mean = schema.OperatorT()
    mean.opcodeIndex = _opcode(model, schema.BuiltinOperator.MEAN)
    mean.inputs = np.array([logits, axis], dtype=np.int32)
    mean.outputs = np.array([pooled], dtype=np.int32)
    mean.builtinOptionsType = schema.BuiltinOptions.ReducerOptions
    mean.builtinOptions = schema.ReducerOptionsT()
    mean.builtinOptions.keepDims = True
    soft = schema.OperatorT()
    soft.opcodeIndex = _opcode(model, schema.BuiltinOperator.SOFTMAX)
    soft.inputs = np.array([pooled], dtype=np.int32)
    soft.outputs = np.array([probs], dtype=np.int32)
    soft.builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    soft.builtinOptions = schema.SoftmaxOptionsT()
    soft.builtinOptions.beta = 1.0
    g.operators += [mean, soft]
    g.outputs = np.array([probs], dtype=np.int32)
    if model.signatureDefs:  # the old signature names the removed outputs
        model.signatureDefs = []
    return _save(model)
