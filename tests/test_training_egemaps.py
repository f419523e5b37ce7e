"""eGeMAPS functionals as a training backbone: one 88-d row per daemon window, each corpus z-scored
with its own statistics when loaded; the seeded class-balanced subset; the LOCO notes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edge_ser.errors import UserError
from training import features, loaders
from training.report import WINDOW_LIMIT_MS, loco_notes

opensmile = pytest.importorskip("opensmile")

from training import egemaps  # noqa: E402  (needs opensmile)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh(request) -> bool:
    """True when the test already ran (and passed) in a fresh interpreter: openSMILE aborts a process
    that has loaded TensorFlow, which earlier tests of the suite do."""
    if "tensorflow" not in sys.modules or os.environ.get("EDGE_SER_FRESH_TEST"):
        return False
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid]
    env = {**os.environ, "EDGE_SER_FRESH_TEST": "1"}
    proc = subprocess.run([sys.executable, *pytest_args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return True


def test_opensmile_is_refused_where_tensorflow_is_loaded(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    with pytest.raises(UserError, match="TensorFlow"):
        egemaps.Egemaps()


def _tone(seconds: float, f0: float, level: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    vib = 1 + 0.02 * np.sin(2 * np.pi * 5 * t)
    x = sum(np.sin(2 * np.pi * k * f0 * vib * t) / k for k in range(1, 6))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t) ** 2)
    return (level * x / np.abs(x).max()
            + 0.003 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def _clips(tmp_path, corpus: str, level: float, n: int = 4) -> list[loaders.Clip]:
    out = []
    for i in range(n):
        p = tmp_path / corpus / f"c{i}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, _tone(2.5 + 0.5 * i, 120 + 40 * i, level, i), 16000)
        out.append(loaders.Clip(str(p), corpus, f"{corpus}:{i % 2}", "angry" if i % 2 else "sad",
                                "anger_disgust" if i % 2 else "sadness", "en"))
    return out


def test_one_window_gives_one_row_of_88_finite_functionals(fresh):
    if fresh:
        return
    row, speech = egemaps.Egemaps()(_tone(2.0, 150, 0.3, 0))
    assert row.shape == (1, egemaps.N_FEATURES) and row.dtype == np.float32
    assert np.isfinite(row).all() and np.abs(row).sum() > 0
    assert speech.shape == (1,)


def test_every_corpus_is_standardised_with_its_own_statistics(tmp_path, fresh):
    if fresh:
        return
    cache = tmp_path / "cache"
    model = egemaps.Egemaps()
    egemaps.mark_cache(cache, model.names)
    for corpus, level in (("loud", 0.5), ("quiet", 0.02)):
        clips = _clips(tmp_path, corpus, level)
        features.extract(clips, corpus, cache=cache, progress=False, model=model)
    raw = {c: np.load(features.corpus_dir(c, cache=cache) / "frames.npy") for c in ("loud", "quiet")}
    assert raw["loud"].dtype == np.float32 and raw["loud"].shape[1:] == (1, egemaps.N_FEATURES)
    # the daemon's windows: a 2.5 s clip is 2 windows (a tail of half a hop gets one), 3.0 s is 2, ...
    n_windows = sum(len(features.clip_windows(c.path, "base")) for c in _clips(tmp_path, "loud", 0.5))
    assert len(raw["loud"]) == n_windows
    loud_level = egemaps.Egemaps().names.index("loudness_sma3_amean")
    assert raw["loud"][:, 0, loud_level].mean() > raw["quiet"][:, 0, loud_level].mean()
    for c in ("loud", "quiet"):
        z = features.load_cache(c, cache=cache).frames.reshape(-1, egemaps.N_FEATURES)
        varying = raw[c].reshape(-1, egemaps.N_FEATURES).std(axis=0) > 1e-6
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(z.std(axis=0)[varying], 1, atol=1e-3)
        assert (z[:, ~varying] == 0).all()
    assert json.loads((cache / features.BACKBONE_FILE).read_text())["standardise"] == "corpus"
    assert features.backbone_of(cache) == "egemaps"


def test_standardise_corpus_keeps_constant_columns_finite():
    x = np.stack([np.arange(6.0), np.full(6, 3.0)], axis=1)[:, None, :]
    z = egemaps.standardise_corpus(x)
    assert z.shape == x.shape and np.isfinite(z).all() and (z[..., 1] == 0).all()


def test_per_class_subset_is_seeded_balanced_and_independent_of_the_other_corpora():
    def clip(corpus, i, merged):
        return loaders.Clip(f"/{corpus}/{merged}{i:03d}.wav", corpus, f"{corpus}:1", merged, merged, "en")

    a = [clip("a", i, m) for i in range(40) for m in ("happiness", "sadness") if (i + len(m)) % 3]
    b = [clip("b", i, "sadness") for i in range(30)]
    alone = loaders.per_class_subset(a, 5)
    both = loaders.per_class_subset(a + b, 5)
    assert [c for c in both if c.corpus == "a"] == alone
    assert sorted(sum(1 for c in alone if c.merged == m) for m in ("happiness", "sadness")) == [5, 5]
    assert len([c for c in both if c.corpus == "b"]) == 5
    assert loaders.per_class_subset(a, 5) == alone
    assert loaders.per_class_subset(a, 1000) == a


def test_loco_notes_name_the_subset_and_the_cost_against_the_window_limit():
    rec = {"model": "egemaps+mlp+sub150", "protocol": "cross_corpus", "per_class": 150}
    cost = {"p50_ms": WINDOW_LIMIT_MS * 2, "n_windows": 50, "machine": "x", "load_1min": 1.0,
            "date_utc": "2026-12-07T00:00:00Z", "command": "python -m training egemaps-cost"}
    notes = loco_notes([rec], cost)
    assert "egemaps+mlp+sub150 (N = 150)" in notes[0]
    assert "not a daemon candidate" in notes[-1]
    assert "not a daemon candidate" not in loco_notes([rec], cost | {"p50_ms": 1.0})[-1]
    assert loco_notes([{"model": "m", "protocol": "cross_corpus"}]) == []


def test_subset_rows_rank_after_the_full_corpus_rows_and_are_never_marked_best():
    from bench.render_quality import si_table
    from training.report import XCOLS, loco_rows

    def folds(model, uar, **extra):
        return [{"model": model, "protocol": "cross_corpus", "corpus": c, "classes": "merged", "uar": uar,
                 "room": 1, **extra} for c in XCOLS]

    recs = folds("full", 0.4) + folds("sub", 0.6, per_class=150)
    assert [r[0] for r in loco_rows(recs)] == ["full", "sub"]
    table = si_table(recs)
    assert "| full |  | **0.400** |" in table and "| sub |  | 0.600 |" in table


def test_rows_over_the_cost_limit_or_with_two_backbones_are_never_marked_best():
    from bench.render_quality import si_table
    from training.report import XCOLS

    def folds(model, uar, **extra):
        return [{"model": model, "protocol": "cross_corpus", "corpus": c, "classes": "merged", "uar": uar,
                 "room": 1, **extra} for c in XCOLS]

    cost = {"p50_ms": WINDOW_LIMIT_MS * 2, "n_windows": 50, "machine": "x", "load_1min": 1.0,
            "date_utc": "2026-12-07T00:00:00Z", "command": "python -m training egemaps-cost"}
    two = {"arch": "ensemble", "members": ["a", "b"], "features": ""}
    recs = (folds("whisper", 0.5) + folds("egemaps+mlp", 0.6) + folds("ensemble(a, b)", 0.7, head=two)
            + folds("a", 0.3) + folds("b", 0.3)
            + folds("fused", 0.8, fuse={"cache": "c", "backbone": "vggish"}))
    table = si_table(recs, None, cost)
    assert "| whisper |  | **0.500** |" in table
    assert "| egemaps+mlp | not a candidate: over the cost limit | 0.600 |" in table
    assert "| ensemble(a, b) | not a candidate: two models per window | 0.700 |" in table
    assert "| fused | not a candidate: vggish fused in | 0.800 |" in table
    with_yamnet = folds("whisper", 0.5) + folds("fused", 0.8, fuse={"cache": "c", "backbone": "yamnet"})
    assert "| fused |  | **0.800** |" in si_table(with_yamnet, None, cost)
    # heads on the same features are one model per window: an ensemble head, a candidate
    one = two | {"features": "cache c, pooling mean"}
    heads = folds("whisper", 0.5) + folds("heads(a, b)", 0.7, head=one) + folds("a", 0.3) + folds("b", 0.3)
    assert "| heads(a, b) |  | **0.700** |" in si_table(heads, None, cost)
    # a head trained on the trimmed clips alone, without room copies, is a measurement
    clean = folds("whisper", 0.5) + folds("clean", 0.9, room=0)
    assert "| clean | not a candidate: trained on trimmed clips only | 0.900 |" in si_table(clean, None, cost)
    slow = {"config": "whisper-yamnet-room-mlp-allplus-onnx-fp32", "threads": 1, "p50_ms": 30.0,
            "machine": "x", "load_1min": [0.5, 0.5], "date_utc": "2026-12-07T00:00:00Z"}
    from training.report import fused_cost

    assert fused_cost([slow, slow | {"threads": 2}]) == slow and fused_cost([]) is None
    table = si_table(with_yamnet, None, cost, slow)
    assert "| fused | not a candidate: Whisper + YAMNet over the cost limit | 0.800 |" in table
    assert "30.0 ms per window" in table and "| whisper |  | **0.500** |" in table
    assert "| egemaps+mlp |  | **0.600** |" in si_table(folds("egemaps+mlp", 0.6), None, None)
