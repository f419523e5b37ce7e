"""TFLite and onnxruntime backends: named inputs/outputs, variable-length input, parity, load errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edge_ser.backends import open_backend
from edge_ser.backends import tflite as tflite_mod
from edge_ser.backends.onnx import OnnxBackend
from edge_ser.backends.tflite import TFLiteBackend
from edge_ser.errors import ModelError

try:
    import devhead
except ImportError:  # tests/ imported as a package
    from tests import devhead


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The same random 1024 -> 5 softmax head as TFLite and as ONNX."""
    d = tmp_path_factory.mktemp("heads")
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(1024, 5)) * 0.05).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    return devhead.write_tflite(w, b, d / "h.tflite"), devhead.write_onnx(w, b, d / "h.onnx"), w, b


def test_open_backend_by_extension(tiny_head):
    tfl, onx, _, _ = tiny_head
    assert isinstance(open_backend(tfl), TFLiteBackend)
    assert isinstance(open_backend(onx), OnnxBackend)


def test_unsupported_extension_is_a_model_error(tmp_path):
    p = tmp_path / "head.pt"
    p.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"unsupported model file .*head\.pt.*\.tflite, \.onnx"):
        open_backend(p)


def test_tflite_and_onnx_give_the_same_probabilities(tiny_head):
    tfl, onx, w, b = tiny_head
    x = np.random.default_rng(1).normal(size=(1, 1024)).astype(np.float32)
    a = open_backend(tfl, threads=2).run({"features": x})["probs"]
    c = open_backend(onx, threads=2).run({"features": x})["probs"]
    z = x @ w + b
    ref = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert a.shape == c.shape == (1, 5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    np.testing.assert_allclose(a, ref, atol=1e-5)


def test_yamnet_outputs_by_name_and_input_resized():
    bb = open_backend(devhead.YAMNET, threads=1)
    assert bb.input_names() == ["waveform"]
    assert set(bb.output_names()) >= {"Identity", "Identity_1", "Identity_2"}
    two_s = bb.run({"waveform": np.zeros(32000, np.float32)})
    assert two_s["Identity"].shape == (4, 521)  # 0.96 s frames, 0.48 s hop
    assert two_s["Identity_1"].shape == (4, 1024)
    # Another length re-allocates; going back gives the same result as before.
    assert bb.run({"waveform": np.zeros(48000, np.float32)})["Identity_1"].shape[0] > 4
    again = bb.run({"waveform": np.zeros(32000, np.float32)})
    np.testing.assert_array_equal(again["Identity_1"], two_s["Identity_1"])


def test_onnx_threads_and_sequential_execution(tiny_head):
    import onnxruntime as ort

    be = OnnxBackend(tiny_head[1], threads=3)
    opts = be._sess.get_session_options()
    assert opts.intra_op_num_threads == 3
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


class _OldRuntime:
    """Stands in for tflite-runtime 2.14 failing on the YAMNet export (its real message)."""

    def __init__(self, model_path: str, num_threads: int = 1):
        raise ValueError(
            "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this "
            "builtin might be supported. Are you using an old TFLite binary with a newer model?\n"
            "Registration failed.\n"
        )


def test_runtime_that_cannot_load_gives_one_clear_line(tiny_head, monkeypatch):
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = _OldRuntime
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # only tflite-runtime installed
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    with pytest.raises(ModelError) as e:
        TFLiteBackend(tiny_head[0])
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tiny_head[0]) in msg
    assert "FULLY_CONNECTED version 12" in msg
    assert "tflite-runtime" in msg and "pip install 'ai-edge-litert>=2'" in msg


def test_corrupt_files_are_model_errors(tmp_path):
    for name in ("bad.tflite", "bad.onnx"):
        p = tmp_path / name
        p.write_bytes(b"not a model at all")
        with pytest.raises(ModelError) as e:
            open_backend(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_falls_back_to_tflite_runtime(monkeypatch):
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = _OldRuntime
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import -> ImportError
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    cls, name = tflite_mod._import_interpreter()
    assert cls is _OldRuntime and name.startswith("tflite-runtime")


def test_no_tflite_runtime_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(ModelError, match=r"no TFLite runtime .*ai-edge-litert>=2"):
        tflite_mod._import_interpreter()


def test_unknown_input_name_is_a_model_error(tiny_head):
    with pytest.raises(ModelError, match="no input 'wave'"):
        open_backend(tiny_head[0]).run({"wave": np.zeros((1, 1024), np.float32)})


def test_native_info_line_is_dropped_other_stderr_kept(capfd):
    import os

    with tflite_mod._native_info_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: something real\n")
    with pytest.raises(ValueError), tflite_mod._native_info_filtered():
        os.write(2, b"ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'.\n")
        raise ValueError("load failed")
    open_backend(devhead.YAMNET)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "FULLY_CONNECTED" not in err and "WARNING: something real" in err
