"""A head over pooled features as one float32 ONNX graph: `features` [1, D] -> `probs` [1, C].

Used by training/ship.py (the fallback export of a trained head) and by convert/ (the `onnx-float32`
head variant). The module passed in already holds the whole head: standardisation, layers and
softmax, so the daemon feeds the pooled features as they come and reads probabilities.

onnxruntime is the runtime the daemon loads for its ONNX backbones anyway; a head in the same format
keeps a second runtime (the TFLite interpreter) out of the process.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edge_ser.errors import UserError

OPSET = 17
INPUT, OUTPUT = "features", "probs"
MAX_ABS_DIFF = 1e-4
"""The exported graph must give the torch module's probabilities within this (float32 both sides)."""


def export_onnx_head(model: torch.nn.Module, input_dim: int, probe: np.ndarray | None = None) -> bytes:
    """The ONNX file's bytes, checked against `model` on `probe` rows ([n, input_dim]; default: one
    standard-normal row)."""
    x = torch.zeros(1, int(input_dim))
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), (x,), buf, input_names=[INPUT], output_names=[OUTPUT],
                          opset_version=OPSET, dynamo=False)
    blob = buf.getvalue()
    if probe is None:
        probe = np.random.default_rng(0).standard_normal((1, int(input_dim)))
    probe = np.asarray(probe, np.float32).reshape(-1, int(input_dim))
    run = onnx_runner(blob)
    got = np.concatenate([run(row[None]) for row in probe])
    with torch.no_grad():
        want = model(torch.from_numpy(probe)).numpy()
    diff = float(np.abs(got - want).max())
    if diff > MAX_ABS_DIFF:
        raise UserError(f"ONNX export of the head differs from torch by {diff:.2g} (limit {MAX_ABS_DIFF:g})")
    return blob


def onnx_runner(model: bytes | str | Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """features [1, D] -> probs [1, C] through onnxruntime (file path or bytes), `threads` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    src = str(model) if isinstance(model, (str, Path)) else model
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run([OUTPUT], {INPUT: np.asarray(x, np.float32)})[0]

    return run
