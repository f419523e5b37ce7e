"""Multiply-accumulates of one inference, counted from a model file's own ops and real shapes.

ONNX: every value of the graph is made an output and the model is run once on the given input,
so dynamic shapes (attention over the window's frames) are the real ones. TFLite: shapes of the
interpreter's tensors after allocation. Counted ops: matrix products and convolutions (float or
integer); element-wise ops, softmax and normalisation are not counted (they are a few % of a
transformer's or a CNN's work).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def onnx_macs(path: Path, feed: dict[str, np.ndarray]) -> dict:
    """{"total": MACs, per op type: MACs} of one run of an ONNX model on `feed`."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out and out not in known:
                model.graph.output.append(onnx.ValueInfoProto(name=out))
                known.add(out)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: np.shape(v) for n, v in zip(names, sess.run(names, feed), strict=True)}
    shapes |= {k: np.shape(v) for k, v in feed.items()}
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        op = node.op_type
        if op in ("MatMul", "MatMulInteger"):
            k = shapes[node.input[0]][-1]
            macs = int(np.prod(shapes[node.output[0]])) * int(k)
        elif op in ("Conv", "ConvInteger"):
            w = shapes[node.input[1]]  # [out, in / groups, *kernel]
            macs = int(np.prod(shapes[node.output[0]])) * int(np.prod(w[1:]))
        elif op == "Gemm":
            macs = int(np.prod(shapes[node.output[0]])) * int(shapes[node.input[0]][-1])
        else:
            continue
        counts[op] = counts.get(op, 0) + macs
    return {"total": sum(counts.values()), **counts}


def tflite_macs(path: Path) -> dict:
    """{"total": MACs, per op: MACs} of a TFLite model at the tensor shapes it was saved with.

    For yamnet.tflite that is one 0.96 s patch: its framing makes the patch count dynamic, and
    the interpreter only resolves such shapes while running, so a 2 s window (4 patches) costs
    4 times this count.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    shape = {t["index"]: tuple(t["shape"]) for t in it.get_tensor_details()}
    counts: dict[str, int] = {}
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no per-op view
        name, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        out = shape.get(outs[0], ())
        if name == "CONV_2D":
            w = shape[ins[1]]  # [out, kh, kw, in]
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif name == "DEPTHWISE_CONV_2D":
            w = shape[ins[1]]  # [1, kh, kw, channels]
            macs = int(np.prod(out)) * int(w[1] * w[2])
        elif name == "FULLY_CONNECTED":
            macs = int(np.prod(out)) * int(shape[ins[1]][-1])
        elif name == "BATCH_MATMUL":
            macs = int(np.prod(out)) * int(shape[ins[0]][-1])
        else:
            continue
        counts[name] = counts.get(name, 0) + macs
    return {"total": sum(counts.values()), **counts}
