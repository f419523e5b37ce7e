"""convert logmel-cnn: a small log-mel CNN (conv, batch-norm, pooling) -> TFLite INT8 and float16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from convert import logmel_cnn  # noqa: E402
from convert.synthetic import build_tiny_cnn, make_cnn_folder  # noqa: E402
from edge_ser.backends.tflite import TFLiteBackend  # noqa: E402
from edge_ser.errors import UserError  # noqa: E402
from edge_ser.manifest import load_manifest  # noqa: E402


def test_cnn_converts_to_int8_within_target(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    folder = make_cnn_folder(tmp_path / "cnn", frames=48, n_train=60, n_test=40, epochs=3)
    results = logmel_cnn.convert_logmel_cnn(
        folder,
        None,
        tmp_path / "models" / "heads",
        "cnn",
        ("int8", "float16"),
        tmp_path / "models" / "manifest.yaml",
        builder=build_tiny_cnn,
        default="int8",
        reports_dir=tmp_path / "reports",
        latency_runs=2,
    )
    assert all(r.passed and r.path.is_file() for r in results)
    assert json.loads(results[0].report.read_text())["parity"]["argmax_agreement"] >= 0.99

    _, model = logmel_cnn.load(folder, build_tiny_cnn)
    x = np.random.default_rng(2).normal(-6, 1, (1, 1, 48, 64)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    be = TFLiteBackend(results[1].path)
    assert be.input_names() == ["logmel"]
    assert np.abs(be.run({"logmel": x})["probs"] - want).max() < 1e-3

    m = load_manifest(tmp_path / "models" / "manifest.yaml")
    assert m.default == "cnn-int8" and m.get("cnn-int8").frontend == "logmel"


def test_unknown_architecture_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "head.json").write_text(
        json.dumps({"arch": "resnet9000", "labels": ["sadness"], "input_dim": 64})
    )
    torch.save({}, folder / "head.pt")
    with pytest.raises(UserError, match="unknown head arch 'resnet9000'"):
        logmel_cnn.load(folder)
    with pytest.raises(UserError, match="cannot import builder"):
        logmel_cnn.load(folder, "no.such.module:build")
