"""The whole training pipeline on a tiny real subset (SAVEE, 4 speakers): extract -> split -> train
-> evaluate -> head folder -> report, in seconds."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from artefact.heads import load_head
from edge_ser.errors import UserError
from edge_ser.pooling import pool_frames
from tests.conftest import copy_savee_split
from training import features, loaders, report, runner

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PICK = ("a01", "a02", "d01", "f01", "f02", "h01", "h02", "n01", "n02", "sa01", "sa02", "su01")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    root, clips = copy_savee_split(tmp, PICK)
    model = features.Yamnet()
    for variant in ("base", "aug1"):
        features.extract(clips, "savee", variant, tmp / "cache", progress=False, model=model)
    return tmp, root, clips


def test_cache_matches_the_daemon_view(tiny):
    tmp, root, clips = tiny
    cc = features.load_cache("savee", "base", tmp / "cache")
    assert set(cc.index) == {c.path for c in clips}
    assert cc.frames.shape[1:] == (4, 1024) and cc.frames.dtype == np.float16
    # a cached window pools to what the daemon computes from that same 2 s window
    c = clips[0]
    w = features.clip_windows(c.path, "base")
    emb, _ = features.Yamnet()(w[0])
    pooled = features.pooled_windows(cc, c.path, "mean")[0]
    assert np.allclose(pooled, pool_frames(emb, "mean"), atol=2e-2)
    # resumable: a second call finds the packed cache and computes nothing
    assert features.extract(clips, "savee", "base", tmp / "cache", progress=False, model=None).is_dir()


@pytest.mark.parametrize("arch,pooling", [("mlp", "mean"), ("attn", "frames")])
def test_train_evaluate_save_report(tiny, arch, pooling):
    tmp, root, _ = tiny
    out = tmp / f"head-{arch}"
    rec, results = runner.run_protocol("speaker_independent", "savee", None, "merged", arch, pooling, 1,
                                       "one", 0.0, f"t-{arch}", "python -m training run ...", save_to=out,
                                       plots=tmp / f"cm-{arch}.png", root=root, cache=tmp / "cache",
                                       split_dir=tmp / "splits", log=None)
    assert len(results) == 4  # leave-one-speaker-out over SAVEE's 4 speakers
    assert rec["n_test"] == 48 and 0 <= rec["accuracy"] <= 1 and 0 <= rec["uar"] <= 1
    assert (tmp / f"cm-{arch}.png").stat().st_size > 1000
    spec, model = load_head(out)
    assert spec["labels"] == list(loaders.MERGED_LABELS) and spec["pooling"] == pooling
    dim = spec["input_dim"]
    x = torch.randn(3, 4, dim) if arch == "attn" else torch.randn(3, dim)
    p = model(x).detach().numpy()
    assert p.shape == (3, 5) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    path = tmp / f"acc-{arch}.json"
    report.append_record(rec, path)
    report.append_record(rec, path)  # same key replaces
    assert len(json.loads(path.read_text())) == 1
    report.write_report(path, tmp / f"ACC-{arch}.md")
    md = (tmp / f"ACC-{arch}.md").read_text()
    assert "not measured: weights unavailable" in md and "python -m training run" in md


def test_another_seed_trains_another_head_recorded_under_its_own_name(tiny):
    tmp, root, _ = tiny
    args = ("speaker_independent", "savee", None, "merged", "mlp", "mean", 0, "one", 0.0, "t-seed", "cmd")
    kw = dict(root=root, cache=tmp / "cache", split_dir=tmp / "splits", log=None)
    rec0, res0 = runner.run_protocol(*args, **kw)
    rec1, res1 = runner.run_protocol(*args, seed=1, **kw)
    again, res_again = runner.run_protocol(*args, seed=1, **kw)
    assert (rec0["model"], rec1["model"]) == ("t-seed", "t-seed seed 1")
    assert rec1["seed"] == 1 and rec1["seed_of"] == "t-seed" and "seed" not in rec0
    assert not np.allclose(res0[0].test_probs, res1[0].test_probs)
    np.testing.assert_allclose(res1[0].test_probs, res_again[0].test_probs, atol=1e-6)


def test_babble_copies_are_refused_in_a_fold_whose_test_speaker_talks_in_them(tiny):
    from training import experiment

    tmp, root, _ = tiny
    for scene in ("babble", "room+babble", "talk", "room+babble+talk", "living", "room+living"):
        with pytest.raises(UserError, match="fold 1 would hear its test speaker"):
            experiment.run("speaker_independent", "savee", fold=1, root=root, cache=tmp / "cache",
                           split_dir=tmp / "splits", room=1, scene=scene, log=None)


def test_shipped_onnx_head_runs_in_the_daemon_like_in_training(tiny, tmp_path):
    """ship: head folder -> ONNX + manifest entry; edge_ser.model gives the training code's answer."""
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings
    from training import ship

    tmp, root, clips = tiny
    src = tmp / "head-mlp"
    if not (src / "head.json").is_file():
        runner.run_protocol("speaker_independent", "savee", None, "merged", "mlp", "mean", 0, "one", 0.0,
                            "t-mlp", "cmd", save_to=src, root=root, cache=tmp / "cache",
                            split_dir=tmp / "splits", log=None)
    models = tmp_path / "models"
    (models / "heads").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "models" / "manifest.yaml", models / "manifest.yaml")
    ship.ship_folder(src, "tiny", models)
    onnx = ship.export_onnx(src, models / "heads" / "tiny.onnx")
    spec, torch_model = load_head(src)
    ship.register_onnx(onnx, "tiny", spec, default=True, manifest=models / "manifest.yaml")
    model = load_model(ModelSettings(manifest=str(models / "manifest.yaml")))
    assert model.id == "tiny" and model.labels == tuple(spec["labels"])
    window = features.clip_windows(clips[0].path, "base")[0]
    got = np.array([model.predict(window).probs[k] for k in spec["labels"]])
    emb, _ = features.Yamnet()(window)
    want = torch_model(torch.from_numpy(pool_frames(emb, "mean")[None])).detach().numpy()[0]
    assert np.allclose(got, want, atol=1e-4)
    adapted = load_model(ModelSettings(manifest=str(models / "manifest.yaml"), adapt=True,
                                       adapt_state=str(tmp_path / "adapt.json")))
    assert abs(sum(adapted.predict(window).probs.values()) - 1) < 1e-5


class _FeaturesIn:
    """A head that records the pooled features the daemon hands it and answers uniform."""

    path = "features-in"

    def __init__(self, n_labels: int) -> None:
        self.seen, self._n = [], n_labels

    def input_names(self) -> list[str]:
        return ["features"]

    def output_names(self) -> list[str]:
        return ["probs"]

    def run(self, inputs: dict) -> dict:
        self.seen.append(np.asarray(inputs["features"])[0].copy())
        return {"probs": np.full((1, self._n), 1.0 / self._n, np.float32)}


@pytest.mark.parametrize("pooling", ["mean", "mean_std"])
def test_speech_level_cache_rows_are_what_the_daemon_pools(tiny, pooling):
    """window_level speech: a cached window pools (over its speech frames) to the features
    edge_ser.model.EmotionModel computes for that window, for the same manifest pooling."""
    import dataclasses

    from edge_ser.backends import open_backend
    from edge_ser.manifest import load_manifest
    from edge_ser.model import EmotionModel
    from training.dataset import _pool_all

    tmp, root, clips = tiny
    cache = tmp / "cache-speech"
    features.mark_cache(cache, "yamnet", features.YAMNET, "speech", rows=features.YAMNET_SPEECH_ROWS)
    model = features.SpeechLevel(features.Yamnet())
    for variant in ("base", "room1"):
        features.extract(clips[:4], "savee", variant, cache, progress=False, model=model)
    cc = features.load_cache("savee", "base", cache)
    assert cc.keep is not None and cc.keep.shape == cc.frames.shape[:2] and cc.keep.any(axis=1).all()
    entry = load_manifest().get("yamnet-mlp-allplus-int8")
    entry = dataclasses.replace(entry, window_level="speech", pooling=pooling)
    head = _FeaturesIn(len(entry.labels))
    daemon = EmotionModel(entry, head, open_backend(features.YAMNET))
    c = clips[1]
    windows = features.clip_windows(c.path, "base")
    for w in windows:
        daemon.predict(w)
    s, n = cc.index[c.path]
    cached = features.pooled_windows(cc, c.path, pooling)
    assert cached.shape == (n, len(head.seen[0])) and cached.dtype == np.float32
    np.testing.assert_allclose(cached, np.stack(head.seen), atol=2e-2)
    np.testing.assert_allclose(_pool_all(cc.frames[s:s + n], pooling, keep=cc.keep[s:s + n]), cached,
                               atol=1e-5)
    # a pause in a window: its quiet frames are left out, the level is set on the loud ones
    quiet = windows[0].copy()
    quiet[: len(quiet) // 2] *= 1e-3
    frames, _, keep = model(quiet)
    assert not keep[:2].any() and keep[2:].any()
    daemon.predict(quiet)
    np.testing.assert_allclose(features.pool_windows(frames[None], pooling, keep[None])[0], head.seen[-1],
                               atol=1e-5)
    # the room copies mark their speech frames too; the cache says how its rows were made
    assert features.load_cache("savee", "room1", cache).keep is not None
    assert features.cache_layout(cache)["window_level"] == "speech"
    with pytest.raises(UserError, match="window_level"):
        features.mark_cache(cache, "yamnet", features.YAMNET, "raw")


def test_a_fused_head_gets_the_rows_training_fused_for_that_window(tiny):
    """A model with a fused_backbone: the head sees the Whisper speech-level features the one-backbone
    model computes, followed by YAMNet's frames of the same prepared window averaged over its speech
    frames, as training's YAMNet speech-level cache pools them (`--fuse cache/yamnet-speech:mean`)."""
    import dataclasses

    from artefact.manifest import yamnet_backbone
    from edge_ser.backends import open_backend
    from edge_ser.manifest import load_manifest
    from edge_ser.model import EmotionModel

    _, _, clips = tiny
    manifest = load_manifest()
    entry = manifest.get("whisper-l23-room-mlp-allplus-onnx-fp32")
    encoder = open_backend(manifest.path.parent / entry.backbone.file)
    one = EmotionModel(entry, _FeaturesIn(len(entry.labels)), encoder)
    fused_entry = dataclasses.replace(entry, fused_backbone=yamnet_backbone(manifest.path))
    head = _FeaturesIn(len(entry.labels))
    fused = EmotionModel(fused_entry, head, encoder, fused=open_backend(features.YAMNET))
    level = features.SpeechLevel(features.Yamnet())
    for w in features.clip_windows(clips[2].path, "base")[:2]:
        one.predict(w)
        fused.predict(w)
        frames, _, keep = level(w)
        alone = one._head.backend.seen[-1]
        np.testing.assert_allclose(head.seen[-1][: len(alone)], alone, atol=1e-6)
        np.testing.assert_allclose(head.seen[-1][len(alone):], frames[keep].mean(axis=0), atol=1e-4)


def test_augmented_copy_is_deterministic_and_survives_an_all_silent_clip():
    from training.augment import augment

    wave = (0.1 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    a, b = augment(wave, "x.wav", 1), augment(wave, "x.wav", 1)
    assert np.array_equal(a, b) and not np.array_equal(a, augment(wave, "x.wav", 2))
    # a silent file trims to zero samples; its augmented copy must not crash the cache build
    assert augment(np.zeros(0, np.float32), "silent.wav", 1).size == 0


def test_scene_option_takes_families_once_in_any_order():
    from click.testing import CliRunner

    from training.cli import cli

    def scene_of(value):
        return CliRunner().invoke(cli, ["loco", "--name", "x", "--scene", value, "--corpus", "nowhere"])

    for bad in ("hall", "room+room", "room+"):
        done = scene_of(bad)
        assert done.exit_code == 2 and "joined by +, each once" in done.output, done.output
    done = scene_of("living+room")  # valid: fails later, on the corpus, not on the scene
    assert "each once" not in done.output
