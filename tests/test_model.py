"""EmotionModel end to end: YAMNet + a head the test trains itself, loaded through a temp manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from artefact.manifest import upsert_entry
from edge_ser import manifest as mf
from edge_ser.backends import open_backend
from edge_ser.errors import ModelError
from edge_ser.labels import EMOTIONS
from edge_ser.logmel import log_mel
from edge_ser.model import EmotionModel, Prediction, load_model
from edge_ser.settings import ModelSettings

try:
    import devhead
except ImportError:  # tests/ imported as a package
    from tests import devhead


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv(mf.ENV_MODELS, raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """A softmax head trained on 4 files per TESS folder, as ONNX and TFLite, in a temp manifest."""
    d = tmp_path_factory.mktemp("models")
    entry = devhead.build_head(d / "heads" / "tiny.onnx", per_folder=4)
    entry["head"]["file"] = "heads/tiny.onnx"
    mpath = d / "manifest.yaml"
    upsert_entry(mpath, "tiny-onnx", entry)
    return mpath, entry


def _settings(mpath: Path, mid: str | None = None, **kw) -> ModelSettings:
    return ModelSettings(id=mid, manifest=str(mpath), **kw)


def _held_out(label_folder: str, n: int = 3) -> list[Path]:
    """TESS files never used for training (tess_files takes the first files of each folder)."""
    files = sorted((devhead.TESS / label_folder).glob("*.opus"))
    return files[150:150 + n]


def test_trained_head_through_a_temp_manifest(trained):
    mpath, _ = trained
    model = load_model(_settings(mpath))
    assert isinstance(model, EmotionModel)
    assert model.id == "tiny-onnx" and model.window_samples == 32000
    assert model.labels == (*EMOTIONS, "neutral")
    assert model.has_speech_score
    pred = model.predict(devhead.read_window(_held_out("YAF_angry")[0]))
    assert isinstance(pred, Prediction)
    assert list(pred.probs) == list(model.labels)
    assert abs(sum(pred.probs.values()) - 1.0) < 1e-5
    assert pred.infer_ms > 0
    assert pred.speech is not None and pred.speech > 0.5  # AudioSet "Speech" on a TESS utterance
    assert max(pred.probs, key=pred.probs.__getitem__) == "anger_disgust"  # a held-out angry clip


@pytest.mark.parametrize("folder, label", [("YAF_angry", "anger_disgust"), ("OAF_Sad", "sadness")])
def test_held_out_tess_files_get_their_label(trained, folder, label):
    model = load_model(_settings(trained[0]))
    preds = [model.predict(devhead.read_window(p)) for p in _held_out(folder)]
    top = [max(p.probs, key=p.probs.get) for p in preds]
    assert top.count(label) >= 2, top


def test_silence_has_a_low_speech_score(trained):
    model = load_model(_settings(trained[0]))
    assert model.predict(np.zeros(32000, np.float32)).speech < 0.2


def test_short_and_long_windows(trained):
    model = load_model(_settings(trained[0]))
    x = devhead.read_window(_held_out("OAF_Sad")[0])
    short = model.predict(x[:8000])  # zero-padded to the model's window
    longer = model.predict(np.concatenate([x, x]))
    for p in (short, longer):
        assert abs(sum(p.probs.values()) - 1.0) < 1e-5


def test_tflite_head_gives_the_same_prediction_as_onnx(trained, tmp_path):
    mpath, entry = trained
    onnx_head = mpath.parent / "heads" / "tiny.onnx"
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_head)).graph.initializer}
    tfl = devhead.write_tflite(init["W"], init["b"], mpath.parent / "heads" / "tiny.tflite")
    tfl_entry = {**entry, "head": {**entry["head"], "file": "heads/tiny.tflite",
                                   "sha256": mf.sha256_of(tfl), "size": tfl.stat().st_size}}
    upsert_entry(mpath, "tiny-tflite", tfl_entry)
    x = devhead.read_window(_held_out("YAF_happy")[0])
    a = load_model(_settings(mpath, "tiny-onnx")).predict(x)
    b = load_model(_settings(mpath, "tiny-tflite")).predict(x)
    np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-4)
    assert a.speech == pytest.approx(b.speech)


def test_the_shipped_default_model_loads_and_classifies():
    model = load_model(ModelSettings())
    assert model.id == mf.load_manifest().default
    assert set(EMOTIONS) <= set(model.labels)
    pred = model.predict(devhead.read_window(_held_out("YAF_sad")[0]))
    assert max(pred.probs, key=pred.probs.get) == "sadness"


def test_wrong_sha256_refused_at_load(trained, tmp_path):
    mpath, entry = trained
    bad = {**entry, "head": {**entry["head"], "sha256": "0" * 64}}
    m2 = tmp_path / "manifest.yaml"
    upsert_entry(m2, "bad", bad)
    with pytest.raises(ModelError, match="sha256"):
        load_model(_settings(m2, search_path=(str(mpath.parent),)))


def test_head_that_does_not_fit_the_backbone(trained, tmp_path):
    _, entry = trained
    head = devhead.write_onnx(np.zeros((512, 5), np.float32), np.zeros(5, np.float32), tmp_path / "h512.onnx")
    mpath = tmp_path / "manifest.yaml"
    upsert_entry(mpath, "m", {**entry, "head": {"file": "h512.onnx", "sha256": mf.sha256_of(head),
                                                   "input_dim": 512}})
    with pytest.raises(ModelError, match="takes 512 features"):
        load_model(_settings(mpath))


def test_mean_max_pooling_feeds_a_2048_head(trained, tmp_path):
    _, entry = trained
    head = devhead.write_onnx(np.zeros((2048, 5), np.float32), np.zeros(5, np.float32), tmp_path / "h.onnx")
    mpath = tmp_path / "manifest.yaml"
    upsert_entry(mpath, "m", {**entry, "pooling": "mean_max",
                                 "head": {"file": "h.onnx", "sha256": mf.sha256_of(head), "input_dim": 2048}})
    probs = load_model(_settings(mpath)).predict(np.zeros(32000, np.float32)).probs
    assert probs == pytest.approx(dict.fromkeys(probs, 0.2))


def test_output_name_missing_from_the_file_is_named(trained, tmp_path):
    mpath, entry = trained
    m2 = tmp_path / "manifest.yaml"
    upsert_entry(m2, "m", {**entry, "backbone": {**entry["backbone"], "output": "embeddings"}})
    with pytest.raises(ModelError, match="no output named 'embeddings'.*Identity_1"):
        load_model(_settings(m2, search_path=(str(mpath.parent),)))


def _logmel_cnn(path: Path, w: np.ndarray) -> Path:
    """A single-file model on log-mel input [1, T, 64]: mean over time -> MatMul -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["logmel"], ["pooled"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "logmel_cnn",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, [1, "frames", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, w.shape[1]])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_single_file_logmel_model(tmp_path):
    w = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32) * 0.1
    f = _logmel_cnn(tmp_path / "cnn.onnx", w)
    mpath = tmp_path / "manifest.yaml"
    upsert_entry(mpath, "cnn", {"frontend": "logmel", "labels": list(EMOTIONS),
                                   "head": {"file": "cnn.onnx", "sha256": mf.sha256_of(f)}})
    model = load_model(_settings(mpath))
    x = devhead.read_window(_held_out("OAF_Fear")[0])
    pred = model.predict(x)
    assert pred.speech is None and not model.has_speech_score
    z = log_mel(x).mean(axis=0) @ w
    ref = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(list(pred.probs.values()), ref, atol=1e-5)


def test_single_file_waveform_model(tmp_path):
    """frontend: waveform without a backbone: samples [1, n] go straight into the one file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[1.0, -1.0, 0.5, 0.0]], np.float32) * 50
    graph = helper.make_graph(
        [helper.make_node("Abs", ["waveform"], ["a"]),
         helper.make_node("ReduceMean", ["a"], ["m"], axes=[1], keepdims=1),
         helper.make_node("MatMul", ["m", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "wave", [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    f = tmp_path / "wave.onnx"
    onnx.save(model, str(f))
    mpath = tmp_path / "manifest.yaml"
    upsert_entry(mpath, "wave", {"labels": list(EMOTIONS), "window_s": 1.0,
                                    "head": {"file": "wave.onnx", "sha256": mf.sha256_of(f)}})
    m = load_model(_settings(mpath))
    assert m.window_samples == 16000
    x = np.full(16000, 0.1, np.float32)
    z = 0.1 * w[0]
    ref = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(list(m.predict(x).probs.values()), ref, atol=1e-5)


def test_logmel_matches_yamnet_frontend():
    """edge_ser.logmel vs YAMNet's own log-mel output (Identity_2). The TFLite export computes its DFT
    with dynamic-range int8, so quiet bins differ; compare where the spectrum has energy."""
    bb = open_backend(devhead.YAMNET)
    for path in _held_out("YAF_fear", 2):
        x = devhead.read_window(path)
        ref = bb.run({"waveform": x})["Identity_2"]
        # YAMNet pads 2 s to whole 0.96 s patches at a 0.48 s hop: 38640 samples -> 240 frames.
        mine = log_mel(np.pad(x, (0, 38640 - len(x))))
        assert mine.shape == ref.shape == (240, 64)
        loud = ref > np.log(0.001) + 3
        assert loud.mean() > 0.2
        assert np.median(np.abs(mine - ref)[loud]) < 0.05
        assert np.corrcoef(mine[loud], ref[loud])[0, 1] > 0.99


def test_adapt_applies_edge_ser_adaptation_before_the_head(trained, tmp_path):
    """model.adapt: pooled features go through edge_ser.adaptation's adapter before the head."""
    mpath, entry = trained
    import json

    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"mean": [0.1] * 1024, "std": [0.2] * 1024}))
    m2 = tmp_path / "manifest.yaml"
    upsert_entry(m2, "adapted", {**entry, "adaptation": {"reference": "ref.json",
                                                          "sha256": mf.sha256_of(ref)}})
    state = tmp_path / "state" / "adapt.json"
    model = load_model(_settings(m2, adapt=True, adapt_state=str(state),
                                 search_path=(str(mpath.parent), str(tmp_path))))
    seen = []
    inner = model._adapter
    model._adapter = lambda f: seen.append(f.shape) or inner(f)
    pred = model.predict(devhead.read_window(_held_out("YAF_angry")[0]))
    assert seen == [(1024,)] and abs(sum(pred.probs.values()) - 1.0) < 1e-5
    model._adapter = inner
    model.close()
    assert json.loads(state.read_text())["n"] == 1

    upsert_entry(m2, "no-ref", entry)
    with pytest.raises(ModelError, match="adaptation"):
        load_model(_settings(m2, "no-ref", adapt=True, search_path=(str(mpath.parent),)))
