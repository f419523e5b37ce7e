"""A development head for tests: numpy softmax regression on YAMNet embeddings of TESS files -> ONNX.

The runtime tests train a tiny one themselves (a few files, about a second); the same code built
`models/heads/yamnet-dev.onnx`, the placeholder head used until training/ ships a real one:

    python3 tests/devhead.py --per-folder 40 --out models/heads/yamnet-dev.onnx \
        --manifest models/manifest.yaml
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import soundfile as sf

from edge_ser.labels import EMOTIONS, NEUTRAL
from edge_ser.manifest import sha256_of
from edge_ser.pooling import pool_frames

try:
    from conftest import SHARED
except ImportError:  # imported as tests.devhead
    from tests.conftest import SHARED

REPO = Path(__file__).resolve().parent.parent
TESS = SHARED / "corpora" / "tess" / "TESS Toronto emotional speech set data"
YAMNET = SHARED / "weights" / "yamnet" / "yamnet.tflite"
YAMNET_SHA256 = "2d5e1e0577beb1fd3b6ba4cf89a7b8813340added8dae72f64fe8cd18731dd4a"
YAMNET_SIZE = 3963312
YAMNET_URL = ("https://raw.githubusercontent.com/CherryPockyOvO/Pokonyan/"
              "1e670b5ca2e2cfa77fd06cdac28a4a32ac770ee8/model/yamnet.tflite")
"""The exact bytes of ../shared/weights/yamnet (a commit-pinned copy of the TF Hub yamnet/tflite export)."""
LABELS = (*EMOTIONS, NEUTRAL)
MERGE = {"angry": "anger_disgust", "disgust": "anger_disgust", "fear": "fear_surprise",
         "pleasant_surprise": "fear_surprise", "pleasant_surprised": "fear_surprise",
         "happy": "happiness", "sad": "sadness", "neutral": NEUTRAL}
"""TESS folder emotion (after OAF_/YAF_) -> merged label."""


def tess_files(per_folder: int, offset: int = 0) -> list[tuple[Path, str]]:
    """`per_folder` files from each TESS folder (sorted, starting at `offset`), with merged labels."""
    out = []
    for folder in sorted(TESS.iterdir()):
        label = MERGE[folder.name.split("_", 1)[1].lower()]
        files = sorted(folder.glob("*.opus"))[offset:offset + per_folder]
        out += [(f, label) for f in files]
    return out


def read_window(path: Path, samples: int = 32000) -> np.ndarray:
    """First 2 s of a 16 kHz corpus file, zero-padded like EmotionModel.predict pads short windows."""
    x, sr = sf.read(path, dtype="float32", frames=samples)
    assert sr == 16000, path
    x = x if x.ndim == 1 else x.mean(axis=1)
    return np.pad(x, (0, samples - len(x)))


def embeddings(paths: list[Path], pooling: str = "mean") -> np.ndarray:
    """Pooled YAMNet embeddings [n, 1024] of each file's first window."""
    from edge_ser.backends.tflite import TFLiteBackend

    bb = TFLiteBackend(YAMNET, threads=1)
    return np.stack([pool_frames(bb.run({"waveform": read_window(p)})["Identity_1"], pooling)
                     for p in paths])


def train_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, steps: int = 400,
                  lr: float = 0.5, l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by gradient descent; standardisation folded into (W, b)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    w = np.zeros((x.shape[1], n_classes))
    b = np.zeros(n_classes)
    onehot = np.eye(n_classes)[y]
    for _ in range(steps):
        logits = z @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(z)
        w -= lr * (z.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    w_folded = w / std[:, None]
    return w_folded.astype(np.float32), (b - mean / std @ w).astype(np.float32)


def write_onnx(w: np.ndarray, b: np.ndarray, path: Path) -> Path:
    """MatMul + Add + Softmax: input `features` [1, D] -> output `probs` [1, K]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "W"], ["logits_raw"]),
         helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "emotion_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, d])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, k])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), "W"),
                     numpy_helper.from_array(b.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="edge-ser tests/devhead.py")
    model.ir_version = 8  # readable by onnxruntime >= 1.10 (older Pi images)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_tflite(w: np.ndarray, b: np.ndarray, path: Path) -> Path:
    """The same head as TFLite (FULLY_CONNECTED + SOFTMAX), written with the flatbuffer schema that
    ai-edge-litert ships, so the backends can be compared on one model without TensorFlow."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    d, k = w.shape

    def buffer(a: np.ndarray | None) -> s.BufferT:
        buf = s.BufferT()
        buf.data = None if a is None else np.frombuffer(np.ascontiguousarray(a).tobytes(), np.uint8)
        return buf

    def tensor(name: str, shape: list[int], buf: int) -> s.TensorT:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, s.TensorType.FLOAT32, buf
        return t

    def code(op: int) -> s.OperatorCodeT:
        c = s.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = op, min(op, 127), 1
        return c

    fc = s.OperatorT()
    fc.opcodeIndex, fc.inputs, fc.outputs = 0, [0, 1, 2], [3]
    fc.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    fc.builtinOptions = s.FullyConnectedOptionsT()
    sm = s.OperatorT()
    sm.opcodeIndex, sm.inputs, sm.outputs = 1, [3], [4]
    sm.builtinOptionsType = s.BuiltinOptions.SoftmaxOptions
    sm.builtinOptions = s.SoftmaxOptionsT()
    sm.builtinOptions.beta = 1.0
    sub = s.SubGraphT()
    sub.tensors = [tensor("features", [1, d], 0), tensor("W", [k, d], 1), tensor("b", [k], 2),
                   tensor("logits", [1, k], 0), tensor("probs", [1, k], 0)]
    sub.inputs, sub.outputs, sub.operators, sub.name = [0], [4], [fc, sm], "main"
    model = s.ModelT()
    model.version, model.description = 3, "edge-ser tests/devhead.py"
    model.operatorCodes = [code(s.BuiltinOperator.FULLY_CONNECTED), code(s.BuiltinOperator.SOFTMAX)]
    model.subgraphs = [sub]
    # Buffer 0 is the conventional empty buffer for tensors computed at run time.
    model.buffers = [buffer(None), buffer(w.T.astype(np.float32)), buffer(b.astype(np.float32))]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(builder.Output()))
    return path


def build_head(out: Path, per_folder: int = 4, pooling: str = "mean") -> dict:
    """Train on `per_folder` files of every TESS folder, write ONNX, return a manifest entry."""
    files = tess_files(per_folder)
    x = embeddings([f for f, _ in files], pooling)
    y = np.array([LABELS.index(lb) for _, lb in files])
    w, b = train_softmax(x, y, len(LABELS))
    write_onnx(w, b, out)
    return manifest_entry(out, out.name, w.shape[0], pooling, per_folder)


def manifest_entry(head: Path, head_file: str, dim: int, pooling: str, per_folder: int) -> dict:
    return {
        "description": "YAMNet + development head (softmax regression, TESS only; a placeholder)",
        "frontend": "waveform",
        "sample_rate": 16000,
        "window_s": 2.0,
        "labels": list(LABELS),
        "backbone": {"file": "yamnet/yamnet.tflite", "sha256": YAMNET_SHA256, "size": YAMNET_SIZE,
                     "url": YAMNET_URL, "input": "waveform", "output": "Identity_1",
                     "scores_output": "Identity"},
        "pooling": pooling,
        "head": {"file": head_file, "sha256": sha256_of(head), "size": head.stat().st_size,
                 "input": "features", "output": "probs", "input_dim": dim},
        "quantization": "float32",
        "license": "CC BY-NC-ND 4.0 (trained on TESS); YAMNet Apache-2.0",
        "training": {"command": _command(per_folder, head_file),
                     "data": f"TESS, first {per_folder} files of each of its 14 folders, first 2 s",
                     "split": "none (development placeholder, not evaluated)"},
    }


def _command(per_folder: int, head_file: str) -> str:
    return f"python3 tests/devhead.py --per-folder {per_folder} --out models/{head_file}"


@click.command(help=__doc__.splitlines()[0])
@click.option("--per-folder", type=click.IntRange(1, 1000), default=40, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO / "models" / "heads" / "yamnet-dev.onnx", show_default=True)
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              help="Upsert the entry `yamnet-dev` into this manifest.")
def main(per_folder: int, out: Path, manifest: Path | None) -> None:
    entry = build_head(out, per_folder)
    rel = out.resolve().relative_to((REPO / "models").resolve()).as_posix()
    entry["head"]["file"] = rel
    entry["training"]["command"] = _command(per_folder, rel)
    if manifest:
        import sys

        sys.path.insert(0, str(REPO))  # artefact/ sits beside the package, outside the wheel
        from artefact.manifest import upsert_entry

        upsert_entry(manifest, "yamnet-dev", entry)
    print(f"wrote {out} ({entry['head']['size']} bytes, sha256 {entry['head']['sha256']})")


if __name__ == "__main__":
    main()
