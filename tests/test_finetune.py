"""yamnet-ft end to end on a tiny TESS subset: trunk cache -> train (+ resume) -> one-file export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import finetune  # noqa: E402
from training.loaders import default_corpora_root  # noqa: E402
from training.yamnet_model import YAMNet  # noqa: E402
from training.yamnet_tflite import export_finetuned  # noqa: E402

TFLITE = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "yamnet" / "yamnet.tflite"
CLIP = TFLITE.parents[2] / "corpora" / "ravdess" / "Audio_Speech_Actors_01-24" / "Actor_01"
CLIP = CLIP / "03-01-05-01-01-01-01.opus"


def test_export_with_yamnet_weights_matches_the_rebuild(tmp_path):
    from training.preprocess import load_audio

    rng = np.random.default_rng(0)
    head_w = rng.normal(0, 0.05, (5, 1024)).astype(np.float32)
    head_b = rng.normal(0, 0.1, 5).astype(np.float32)
    w, b = finetune.layer14_pw(TFLITE)
    path = tmp_path / "ft.tflite"
    layer14 = {"pw_weight": w[:, :, None, None], "pw_bias": b}
    path.write_bytes(export_finetuned(TFLITE, layer14, head_w, head_b))
    window = load_audio(str(CLIP))[:32000]
    got = finetune.TfliteWaveformModel(path)(window)
    with torch.no_grad():
        _, emb, _ = YAMNet.from_tflite(TFLITE, tflite_mel=True)(torch.from_numpy(window))
        want = torch.softmax(emb.mean(0) @ torch.from_numpy(head_w).T + torch.from_numpy(head_b), -1).numpy()
    assert got.shape == (5,)
    assert np.abs(got - want).max() < 0.02


def test_cache_train_resume_export(tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    for variant in ("base", "aug1"):
        finetune.build_cache(variant, "tess", cache=cache, limit=8)
    base = finetune.Store(cache / "base", default_corpora_root().resolve())
    assert base.feats.shape[1:] == (24, 1024) and base.pre.shape == base.feats.shape
    args = ["train", "--protocol", "paper", "--corpus", "tess", "--out", str(run), "--cache", str(cache),
            "--aug", "aug1", "--batch", "8", "--max-steps", "2"]
    assert finetune.main([*args, "--epochs", "1"]) == 0
    assert (run / "ckpt.pt").is_file()
    (run / "result.json").unlink()  # as if stopped after epoch 1: the rerun resumes from the checkpoint
    assert finetune.main([*args, "--epochs", "2", "--patience", "5"]) == 0
    log = (run / "train.log").read_text()
    assert "resumed after epoch 1" in log
    result = json.loads((run / "result.json").read_text())
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert set(result["test"]["all"]) == {"merged", "original"}
    artifact = finetune.export(run, tmp_path / "ft.tflite")
    report = finetune.parity(run, artifact, cache, max_clips=5)
    assert report["parity"]["passed"], report["parity"]
    # the run's embeddings in the frozen cache's layout, and the same layer as a backbone file
    from training import features
    from training.loaders import load_corpus

    root = default_corpora_root().resolve()
    clips = [c for c in load_corpus("tess", root) if str(Path(c.path).resolve()) in base.index]
    frozen = tmp_path / "frozen"
    features.extract(clips, "tess", "base", frozen, progress=False)
    out = finetune.write_embeddings(run, tmp_path / "ftemb", "tess", cache, frozen=frozen)
    got = features.load_cache("tess", "base", out)
    want = features.load_cache("tess", "base", frozen)
    assert got.index == want.index and got.frames.shape == want.frames.shape
    a, b = got.frames.astype(np.float32), want.frames.astype(np.float32)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.mean() > 0.97  # two training steps from YAMNet: still YAMNet's embedding
    backbone = finetune.export_backbone(run, tmp_path / "backbone.tflite")
    from edge_ser.backends import open_backend

    path = clips[0].path
    first, n = got.index[path]
    lite = open_backend(backbone)
    emb = lite.run({"waveform": features.clip_windows(path, "base")[0]})["Identity_1"]
    ref = a[first]
    assert emb.shape == ref.shape
    assert ((emb * ref).sum(-1) / np.linalg.norm(emb, axis=-1) / np.linalg.norm(ref, axis=-1)).min() > 0.99
