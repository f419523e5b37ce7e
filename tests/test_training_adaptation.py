"""edge_ser.adaptation: running statistics, shrinkage to the reference, persistence, and its
measurement on a held-out corpus (training.adapt_eval)."""

import json

import numpy as np
import pytest
import torch

from artefact.heads import build_head
from edge_ser.adaptation import FeatureAdapter, RunningStats, default_state_path, read_reference
from edge_ser.errors import ModelError
from training.adapt_eval import evaluate_adaptation
from training.dataset import Part


def test_running_stats_equal_batch_statistics_then_forget():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4))
    s = RunningStats(4)
    for v in x:
        s.update(v)
    assert np.allclose(s.mean, x.mean(axis=0)) and np.allclose(s.var, x.var(axis=0))
    e = RunningStats(4, horizon=50)
    for v in np.concatenate([x, x[:300] + 10.0]):
        e.update(v)
    assert np.all(e.mean > 12.0)  # follows the new room within a few horizons


def test_adapter_starts_as_identity_and_ends_standardising():
    ref_mean, ref_std = np.array([1.0, -1.0]), np.array([2.0, 0.5])
    a = FeatureAdapter(ref_mean, ref_std, prior=30)
    assert np.allclose(a.transform(np.array([3.0, 0.0])), [3.0, 0.0])
    rng = np.random.default_rng(1)
    device = rng.normal([10.0, 5.0], [4.0, 1.0], size=(3000, 2))
    out = np.array([a(v) for v in device])
    tail = out[-1000:]
    assert np.allclose(tail.mean(axis=0), ref_mean, atol=0.2)
    assert np.allclose(tail.std(axis=0), ref_std, rtol=0.1)


def test_state_persists_without_audio_and_rejects_other_models(tmp_path):
    p = tmp_path / "s" / "adapt.json"
    a = FeatureAdapter(np.zeros(3), np.ones(3), p, model_id="m1", save_every_s=1e9)
    for v in np.random.default_rng(2).normal(size=(20, 3)):
        a(v)
    a.save()
    state = json.loads(p.read_text())
    assert set(state) == {"version", "model", "n", "horizon", "mean", "var"} and state["n"] == 20
    b = FeatureAdapter(np.zeros(3), np.ones(3), p, model_id="m1")
    assert b.stats.n == 20 and np.allclose(b.stats.mean, a.stats.mean)
    assert FeatureAdapter(np.zeros(3), np.ones(3), p, model_id="other").stats.n == 0
    p.write_text("{broken")
    assert FeatureAdapter(np.zeros(3), np.ones(3), p, model_id="m1").stats.n == 0
    with pytest.raises(ModelError):
        a(np.zeros(5))


def test_reference_file_and_default_state_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_path("x") == tmp_path / "edge-ser" / "adapt-x.json"
    (tmp_path / "r.json").write_text(json.dumps({"mean": [1, 2], "std": [3, 4]}))
    m, s = read_reference(tmp_path / "r.json")
    assert m.tolist() == [1, 2] and s.tolist() == [3, 4]
    with pytest.raises(ModelError):
        read_reference(tmp_path / "missing.json")


def test_adaptation_recovers_a_shifted_corpus():
    """A head trained on standardised data fails on a corpus with an offset/gain; streaming the
    corpus through the adapter (empty statistics) recovers most of it."""
    rng = np.random.default_rng(3)
    labels = ("a", "b")
    spec = {"arch": "linear", "input_dim": 2, "labels": list(labels), "feature_mean": [0.0, 0.0],
            "feature_std": [1.0, 1.0]}
    head = build_head(spec)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[5.0, 0.0], [-5.0, 0.0]]))
        head.fc.bias.zero_()
    y = rng.integers(0, 2, 400)
    x = np.stack([np.where(y == 0, 1.0, -1.0) + rng.normal(0, 0.3, 400), rng.normal(0, 1, 400)], axis=1)
    shifted = (x * 3.0 + 8.0).astype(np.float32)  # a new microphone: gain and offset
    part = Part(shifted, np.arange(400), y, np.array(["z"] * 400), np.array(["z:1"] * 400))
    res = evaluate_adaptation(spec, head.state_dict(), part, labels)
    assert res["oracle_batch"]["accuracy"] > 0.95
    assert res["stream_shuffled"]["accuracy"] > 0.85
