"""convert vggish: a narrow random VGGish + head -> one waveform-in TFLite file; frontend parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from convert import frontend_tf, vggish  # noqa: E402
from edge_ser.backends.tflite import TFLiteBackend  # noqa: E402
from edge_ser.errors import UserError  # noqa: E402
from edge_ser.logmel import log_mel  # noqa: E402
from edge_ser.manifest import load_manifest  # noqa: E402


def test_tf_frontend_matches_numpy_and_the_daemon() -> None:
    x = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    want = frontend_tf.log_mel_np(x, 0.001)
    assert np.abs(frontend_tf.log_mel_tf(x[None], 0.001).numpy() - want).max() < 1e-4
    assert np.abs(log_mel(x) - want).max() < 1e-4  # same frontend as edge_ser.logmel


def test_tiny_vggish_converts_and_runs_in_the_daemon_backend(tmp_path: Path) -> None:
    results = vggish.convert_vggish(
        None,
        None,
        tmp_path / "models" / "heads",
        "vg",
        None,
        ("dynamic", "int8"),
        tmp_path / "models" / "manifest.yaml",
        random_tiny=True,
        reports_dir=tmp_path / "reports",
        latency_runs=2,
        command="test",
    )
    assert all(r.passed and r.path.is_file() for r in results)
    report = json.loads(results[0].report.read_text())
    assert report["parity"]["argmax_agreement"] >= 0.99 and report["size_bytes"] < report["float_size_bytes"]

    model, _, _ = vggish.build(None, None, random_tiny=True)
    x = np.random.default_rng(3).normal(0, 0.1, 32000).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(vggish.examples_np(x))).numpy()
    be = TFLiteBackend(results[0].path)
    assert be.input_names() == ["waveform"] and be.output_names() == ["probs"]
    assert np.abs(be.run({"waveform": x[None]})["probs"] - want).max() < 0.02

    e = load_manifest(tmp_path / "models" / "manifest.yaml").get("vg-dyn")
    assert e.backbone is None and e.frontend == "waveform" and e.quantization == "dynamic"


def test_bad_vggish_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checkpoint not found"):
        vggish.load_vggish(tmp_path / "missing.pth", False)
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="is not a VGGish state_dict"):
        vggish.load_vggish(tmp_path / "bad.pth", False)
    # torchvggish's key names and shapes (vggish-10086976.pth), checked without writing 290 MB
    shapes = {k: tuple(v.shape) for k, v in vggish.VGGish().state_dict().items()}
    assert [k for k in shapes if k.endswith("weight")] == [
        *(f"features.{i}.weight" for i in (0, 3, 6, 8, 11, 13)),
        *(f"embeddings.{i}.weight" for i in (0, 2, 4)),
    ]
    assert shapes["embeddings.0.weight"] == (4096, 12288) and shapes["embeddings.4.weight"] == (128, 4096)


def test_narrow_pth_and_tf_slim_checkpoint_load(tmp_path: Path) -> None:
    ref = vggish.VGGish(**vggish.TINY).eval()
    torch.save(ref.state_dict(), tmp_path / "narrow.pth")
    model, _ = vggish.load_vggish(tmp_path / "narrow.pth", False)
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x))

    # the same weights written as the TF-slim original names them (HWIO kernels, [in, out] dense)
    tf = pytest.importorskip("tensorflow")
    g = tf.Graph()
    with g.as_default():
        names = dict(zip(vggish._CONV_KEYS, vggish._SLIM_CONV, strict=True))
        variables = []
        for k, name in names.items():
            conv = ref.features[k]
            variables += [
                tf.compat.v1.Variable(
                    conv.weight.detach().numpy().transpose(2, 3, 1, 0), name=f"vggish/{name}/weights"
                ),
                tf.compat.v1.Variable(conv.bias.detach().numpy(), name=f"vggish/{name}/biases"),
            ]
        for k, name in zip(vggish._FC_KEYS, vggish._SLIM_FC, strict=True):
            fc = ref.embeddings[k]
            variables += [
                tf.compat.v1.Variable(fc.weight.detach().numpy().T, name=f"vggish/{name}/weights"),
                tf.compat.v1.Variable(fc.bias.detach().numpy(), name=f"vggish/{name}/biases"),
            ]
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(sess, str(tmp_path / "vggish_model.ckpt"))
    slim, _ = vggish.load_vggish(tmp_path / "vggish_model.ckpt", False)
    with torch.no_grad():  # identical up to the final ReLU, which the TF original does not have
        assert torch.allclose(torch.relu(slim(x)), ref(x), atol=1e-6)
        assert isinstance(slim.embeddings[5], torch.nn.Identity)
