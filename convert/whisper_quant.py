"""INT8 variants of a Whisper encoder graph, measured side by side: size, latency, hidden-state cosine.

onnxruntime's dynamic quantization stores weights in int8 and quantizes activations per call. The
candidates differ in which ops are quantized and how; `fp16rest` additionally stores the float
initializers that stay float (the two convolutions, the position table) as float16 with a Cast
in front: onnxruntime folds Cast(constant) when the session loads, so the file shrinks by about
2 MB for tiny.en at no cost per window. Measured on tiny.en (convert/README.md, "Whisper"):
quantized convolutions (ConvInteger) are smaller but slower than float ones, and per-channel
weights without reduced range lose accuracy on x86 (u8 x s8 products saturate in 16 bits).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from .whisper_encoder import MEL_INPUT

CANDIDATES: dict[str, dict] = {
    "matmul-s8": {"op_types_to_quantize": ["MatMul"]},
    "matmul-s8-fp16rest": {"op_types_to_quantize": ["MatMul"], "fp16_rest": True},
    "matmul-u8": {"op_types_to_quantize": ["MatMul"], "weight_type": "QUInt8"},
    "matmul-u8-fp16rest": {"op_types_to_quantize": ["MatMul"], "weight_type": "QUInt8", "fp16_rest": True},
    "matmul-s8-perchannel": {"op_types_to_quantize": ["MatMul"], "per_channel": True},
    "matmul-s8-perchannel-rr": {"op_types_to_quantize": ["MatMul"], "per_channel": True,
                                "reduce_range": True},
    "matmul-s8-perchannel-rr-fp16rest": {"op_types_to_quantize": ["MatMul"], "per_channel": True,
                                         "reduce_range": True, "fp16_rest": True},
    "matmul-s8-attn": {"op_types_to_quantize": ["MatMul"], "extra_options": {"MatMulConstBOnly": False}},
    "matmul-conv-s8": {"op_types_to_quantize": ["MatMul", "Conv"]},
    "matmul-gemm-s8": {"op_types_to_quantize": ["MatMul", "Gemm"]},
    "fp16-weights": {"no_int8": True, "fp16_rest": True},
    "weightonly-8bit-b32": {"nbits": 8, "block_size": 32, "fp16_rest": True},
}
"""onnxruntime.quantization.quantize_dynamic settings (+ fp16_rest: see the module doc). `fp16-weights`
is no INT8 at all: every large weight stored as float16 and computed in float32 (half the FP32 file,
FP32 speed and accuracy), the fallback when no INT8 variant keeps a head's decisions."""
FALLBACK = "fp16-weights"
NOT_INT8 = (FALLBACK,)
"""Measured for comparison, never chosen as the INT8 file."""
DEFAULT_CANDIDATES = ("matmul-s8", "matmul-s8-fp16rest", "matmul-s8-perchannel-rr-fp16rest", "fp16-weights")
"""Measured at every conversion (the full table is in convert/README.md; pass --candidate for more)."""
MIN_COSINE_MEAN = 0.995
MIN_COSINE_MIN = 0.97
"""Hidden-state parity an INT8 variant must keep against the FP32 graph (per frame, over the windows)."""
TIE = 0.10
"""Variants within this fraction of the fastest latency count as equally fast; the smallest wins."""


def quantize(src: Path, dst: Path, name: str) -> Path:
    """Write the INT8 variant `name` of the FP32 graph src."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = dict(CANDIDATES[name])
    fp16_rest = settings.pop("fp16_rest", False)
    if settings.pop("no_int8", False) or "nbits" in settings:
        import onnx

        model = onnx.load(str(src))
        if "nbits" in settings:  # int8 weights in blocks, float activations (MatMulNBits)
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            q = MatMulNBitsQuantizer(model, bits=settings["nbits"], block_size=settings["block_size"],
                                     is_symmetric=True, accuracy_level=4)
            q.process()
            model = q.model.model
        float16_initializers(model)
        onnx.save(model, str(dst))
        return Path(dst)
    weight_type = getattr(QuantType, settings.pop("weight_type", "QInt8"))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process targets static (calibrated) quantization
    try:
        quantize_dynamic(str(src), str(dst), weight_type=weight_type, **settings)
    finally:
        root.setLevel(level)
    if fp16_rest:
        import onnx

        model = onnx.load(str(dst))
        float16_initializers(model)
        onnx.save(model, str(dst))
    return Path(dst)


def float16_initializers(model, min_elements: int = 4096) -> int:
    """Store large float32 initializers and Constant nodes as float16 behind a Cast (in place).

    Returns how many tensors were changed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    casts, changed = [], 0
    for node in model.graph.node:  # torch exports non-persistent buffers (the position table) as Constants
        if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name != "value":
            continue
        t = node.attribute[0].t
        if t.data_type != TensorProto.FLOAT or int(np.prod(t.dims)) < min_elements:
            continue
        arr = numpy_helper.to_array(t)
        if np.abs(arr).max() > 6.0e4:
            continue
        out = node.output[0]
        node.attribute[0].t.CopyFrom(numpy_helper.from_array(arr.astype(np.float16)))
        node.output[0] = out + "_fp16"
        casts.append((node, helper.make_node("Cast", [out + "_fp16"], [out], to=TensorProto.FLOAT,
                                             name=out + "_cast")))
        changed += 1
    for node, cast in casts:
        idx = list(model.graph.node).index(node)
        model.graph.node.insert(idx + 1, cast)
    casts = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max() > 6.0e4:  # outside float16's range: keep it exact
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT,
                                      name=name + "_cast"))
        changed += 1
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    return changed


def session(path: Path, threads: int = 1):
    """An onnxruntime session set up like the daemon's OnnxBackend."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_all(sess, mels: np.ndarray) -> np.ndarray:
    """[n, n_states, frames, d] hidden states of each mel [n, 80, T]."""
    return np.stack([sess.run(None, {MEL_INPUT: m[None].astype(np.float32)})[0] for m in mels])


def frame_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of every frame vector of a with the same frame of b (last axis = features)."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def cosine_stats(a: np.ndarray, b: np.ndarray, states: tuple[int, ...] | None = None) -> dict:
    """Per state (keyed "state_<k>"): min and mean frame cosine (a and b [n, n_states, frames, d])."""
    out = {}
    for i in range(a.shape[1]):
        c = frame_cosine(a[:, i], b[:, i])
        out[f"state_{states[i] if states else i}"] = {"min": round(float(c.min()), 6),
                                                      "mean": round(float(c.mean()), 6)}
    return out


def latencies(sessions: dict, mel: np.ndarray, rounds: int = 30) -> dict[str, float]:
    """Median ms per call of each session, measured interleaved (round-robin) so that load from
    other processes hits every variant alike."""
    x = {MEL_INPUT: mel[None].astype(np.float32)}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, x)
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, x)
            times[k].append((time.perf_counter() - t) * 1000.0)
    return {k: round(float(np.median(v)), 3) for k, v in times.items()}


def measure(fp32: Path, mels: np.ndarray, names: tuple[str, ...] = DEFAULT_CANDIDATES, rounds: int = 30,
            keep_dir: Path | None = None,
            states: tuple[int, ...] | None = None) -> tuple[dict, dict[str, Path]]:
    """({"fp32" and each variant: size_bytes, latency_ms_median, cosine per state, passed}, paths).

    Variant files are written into keep_dir (a temporary folder when None; then paths are gone).
    """
    work = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="whisper-q-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": Path(fp32)} | {n: quantize(fp32, work / f"{n}.onnx", n) for n in names}
    sessions = {k: session(p) for k, p in paths.items()}
    ref = run_all(sessions["fp32"], mels)
    lat = latencies(sessions, mels[0], rounds)
    table = {}
    for k, p in paths.items():
        cos = cosine_stats(run_all(sessions[k], mels), ref, states) if k != "fp32" else None
        ok = k == "fp32" or all(c["mean"] >= MIN_COSINE_MEAN and c["min"] >= MIN_COSINE_MIN
                                for c in cos.values())
        table[k] = {"size_bytes": p.stat().st_size, "latency_ms_median": lat[k], "cosine_vs_fp32": cos,
                    "passed": bool(ok)}
    return table, paths


def choose(table: dict) -> str | None:
    """Among the passing INT8 variants within TIE of the fastest, and within TIE of the smallest of
    those, the one with the highest worst-frame cosine (latency under load is noisy; size and
    cosine are not)."""
    ok = {k: v for k, v in table.items() if k not in ("fp32", *NOT_INT8) and v["passed"]}
    if not ok:
        return None
    fastest = min(v["latency_ms_median"] for v in ok.values())
    near = {k: v for k, v in ok.items() if v["latency_ms_median"] <= fastest * (1 + TIE)}
    smallest = min(v["size_bytes"] for v in near.values())
    small = [k for k, v in near.items() if v["size_bytes"] <= smallest * (1 + TIE)]
    return max(small, key=lambda k: (min(c["min"] for c in near[k]["cosine_vs_fp32"].values()),
                                     -near[k]["size_bytes"]))
