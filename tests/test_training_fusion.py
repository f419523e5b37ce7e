"""Two backbones at once, on tiny synthetic caches of a few real SAVEE file names: feature fusion (each
window's pooled rows of two caches concatenated) and ensembles (members' probabilities averaged)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_ser.errors import UserError
from tests.conftest import copy_savee_split
from training import ensemble, features, runner
from training.dataset import Fuse, build_part
from training.loaders import MERGED_LABELS

PICK = ("a01", "d01", "f01", "h01", "n01", "sa01", "su01", "a02", "h02", "sa02")


def write_cache(root: Path, clips, windows: dict[str, int], rows: int, dim: int, seed: int,
                layout: dict | None = None, order=None, keep: bool = False) -> None:
    """A packed cache (frames.npy, speech.npy, index.csv) of random rows; clips stored in `order`;
    keep: mark some frames of each window as its speech frames (keep.npy), the others are left out."""
    if layout:
        root.mkdir(parents=True, exist_ok=True)
        (root / features.BACKBONE_FILE).write_text(json.dumps(layout))
    out = features.corpus_dir("savee", "base", root)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    index, start = [], 0
    for c in order or clips:
        n = windows[c.path]
        index.append((c.path, start, n))
        start += n
    frames = rng.standard_normal((start, rows, dim)).astype(np.float16)
    # a learnable signal: the first feature of every row tracks the clip's merged label
    for (path, s, n) in index:
        label = next(c.merged for c in clips if c.path == path)
        frames[s:s + n, :, 0] += 3 * MERGED_LABELS.index(label)
    np.save(out / "frames.npy", frames)
    np.save(out / "speech.npy", np.ones((start, rows), np.float16))
    if keep:
        mask = rng.random((start, rows)) < 0.6
        mask[:, 0] = True
        np.save(out / "keep.npy", mask)
    with (out / "index.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "start", "count"])
        w.writerows(index)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fusion")
    root, clips = copy_savee_split(tmp, PICK)
    windows = {c.path: 1 + i % 3 for i, c in enumerate(clips)}
    # "yamnet": 4 frames x 8 per window; "whisper": states 2, 3 (all frames, then speech frames) x 6
    write_cache(tmp / "yam", clips, windows, 4, 8, seed=1, keep=True,
                layout={"backbone": "yamnet", "window_level": "speech"})
    write_cache(tmp / "wsp", clips, windows, 4, 6, seed=2, order=clips[::-1],
                layout={"backbone": "whisper-tiny.en", "states": [2, 3], "window_level": "speech"})
    return tmp, root, clips, windows


def test_fused_rows_are_both_caches_rows_of_the_same_window(tiny):
    tmp, _, clips, windows = tiny
    fuse = Fuse.parse(f"{tmp / 'yam'}:mean")
    part = build_part(clips, MERGED_LABELS, "merged", "mean_std@2+3", cache=tmp / "wsp", fuse=fuse)
    alone = build_part(clips, MERGED_LABELS, "merged", "mean_std@2+3", cache=tmp / "wsp")
    assert part.x.shape == (sum(windows.values()), 2 * 6 + 8)
    assert np.array_equal(part.x[:, :12], alone.x) and np.array_equal(part.clip, alone.clip)
    # the appended block is the YAMNet cache's own window of that clip (stored in another order),
    # pooled over the frames that cache marks as speech
    yam = features.load_cache("savee", "base", tmp / "yam")
    for w in (0, len(part.x) - 1):
        path = part.paths[part.clip[w]]
        s, _ = yam.index[path]
        k = w - int(np.flatnonzero(part.clip == part.clip[w])[0])
        kept = yam.frames[s + k][yam.keep[s + k]].astype(np.float32)
        assert np.allclose(part.x[w, 12:], kept.mean(axis=0), atol=1e-5)


def test_caches_of_other_windows_are_refused(tiny, tmp_path):
    tmp, _, clips, windows = tiny
    other = dict(windows, **{clips[0].path: windows[clips[0].path] + 1})
    write_cache(tmp_path / "more", clips, other, 4, 8, seed=3)
    with pytest.raises(UserError, match="fused caches disagree: .* windows"):
        build_part(clips, MERGED_LABELS, "merged", "mean_std@2+3", cache=tmp / "wsp",
                   fuse=Fuse(tmp_path / "more", "mean"))
    write_cache(tmp_path / "fewer", clips[1:], windows, 4, 8, seed=3)
    with pytest.raises(UserError, match="is not in"):
        build_part(clips, MERGED_LABELS, "merged", "mean_std@2+3", cache=tmp / "wsp",
                   fuse=Fuse(tmp_path / "fewer", "mean"))
    for bad in ("cache/yamnet", "cache/yamnet:frames", ":mean"):
        with pytest.raises(UserError, match="CACHE:POOLING"):
            Fuse.parse(bad)


def test_a_head_trains_on_fused_features_and_ships_only_with_yamnet_fused_in(tiny):
    from training.ship import ship_folder

    tmp, root, _, _ = tiny
    fuse = Fuse(tmp / "yam", "mean")
    rec, results = runner.run_protocol("speaker_independent", "savee", None, "merged", "mlp", "mean_std@2+3",
                                       0, "one", 0.0, "fused", "python -m training run ...",
                                       save_to=tmp / "head", root=root, cache=tmp / "wsp",
                                       split_dir=tmp / "splits", log=None, fuse=fuse)
    spec = results[0].fitted.spec
    assert spec["input_dim"] == 20 and len(spec["feature_mean"]) == 20 and spec["pooling"] == "mean_std@2+3"
    assert spec["fuse"]["backbone"] == "yamnet" and spec["fuse"]["pooling"] == "mean"
    assert rec["fuse"] == spec["fuse"] and rec["n_test"] == 40 and 0.0 <= rec["uar"] <= 1.0
    shipped = ship_folder(tmp / "head", "fused", models=tmp / "models")
    assert json.loads((shipped / "head.json").read_text())["fuse"]["backbone"] == "yamnet"
    other = tmp / "head-other"
    other.mkdir()
    for f in ("head.pt", "head.json"):
        (other / f).write_bytes((tmp / "head" / f).read_bytes())
    spec = json.loads((other / "head.json").read_text())
    (other / "head.json").write_text(json.dumps(spec | {"fuse": spec["fuse"] | {"backbone": "egemaps"}}))
    with pytest.raises(UserError, match="egemaps features fused in"):
        ship_folder(other, "other", models=tmp / "models")
    with pytest.raises(UserError, match="mlp or linear"):
        runner.run_protocol("speaker_independent", "savee", None, "merged", "wsum", "mean_std@2+3", 0, "one",
                            0.0, "fused", "", root=root, cache=tmp / "wsp", split_dir=tmp / "splits",
                            log=None, fuse=fuse)


def test_ensemble_averages_the_members_probabilities(tiny, tmp_path):
    tmp, root, _, _ = tiny
    folders = []
    for name, cache, pooling in (("w", tmp / "wsp", "mean_std@2+3"), ("y", tmp / "yam", "mean")):
        rec, results = runner.run_protocol("speaker_independent", "savee", None, "merged", "mlp", pooling, 0,
                                           "one", 0.0, name, f"train {name}", root=root, cache=cache,
                                           split_dir=tmp / "splits", log=None)
        ensemble.save_fold(tmp_path / name, rec, results[0])
        folders.append(tmp_path / name)
    assert ensemble.heldouts(folders) == ["savee"]
    rec = ensemble.average_fold(folders, "savee", "ens", "python -m training ensemble ...")
    w, y = (np.load(f / "savee.npz") for f in folders)
    mean = (w["probs"] + y["probs"]) / 2
    assert rec["accuracy"] == pytest.approx(float(np.mean(mean.argmax(axis=1) == w["y"])))
    assert rec["command"] == "train w && train y && python -m training ensemble ..."
    # the members' own protocol; members of two caches are two models per window, not one ensemble head
    assert rec["head"]["members"] == ["w", "y"] and rec["protocol"] == "speaker_independent"
    assert rec["head"]["features"] == ""
    assert 0.0 <= rec["uar"] <= 1.0 and rec["per_corpus"]["savee"]["n_test"] == len(w["y"])
    # members scored on other clips are refused
    z = dict(np.load(folders[1] / "savee.npz"))
    z["paths"] = z["paths"][::-1]
    np.savez(folders[1] / "savee.npz", **z)
    with pytest.raises(UserError, match="disagree on the test clips"):
        ensemble.average_fold(folders, "savee", "ens", "")
    with pytest.raises(UserError, match="at least two"):
        ensemble.average_fold(folders[:1], "savee", "ens", "")


def test_heads_on_the_same_features_become_one_ensemble_head(tiny, tmp_path):
    from artefact.heads import load_head
    from artefact.onnx_head import export_onnx_head, onnx_runner
    from convert.head_model import load_float_model
    from training.report import not_candidates

    tmp, root, _, _ = tiny
    probs, heads, models = [], [], []
    for seed in (1, 2):
        rec, results = runner.run_protocol("speaker_independent", "savee", None, "merged", "mlp",
                                           "mean_std@2+3", 0, "one", 0.0, "w", f"train seed {seed}",
                                           save_to=tmp_path / f"h{seed}", root=root, cache=tmp / "wsp",
                                           split_dir=tmp / "splits", log=None, seed=seed)
        ensemble.save_fold(tmp_path / f"p{seed}", rec, results[0],
                           ensemble.features_of(tmp / "wsp", "mean_std@2+3", None))
        probs.append(tmp_path / f"p{seed}")
        heads.append(tmp_path / f"h{seed}")
        models.append(load_head(heads[-1])[1])
    rec = ensemble.average_fold(probs, "savee", "ens", "python -m training ensemble ...")
    assert rec["protocol"] == "speaker_independent" and rec["head"]["features"].startswith("cache ")
    # one daemon model: a candidate when its members were trained on room copies, as any head
    members = [{"model": m, "protocol": "cross_corpus", "room": 1} for m in rec["head"]["members"]]
    assert "ens" not in not_candidates([rec | {"protocol": "cross_corpus"}, *members])
    clean = [dict(m, room=0) for m in members]
    why = not_candidates([rec | {"protocol": "cross_corpus"}, *clean])
    assert why["ens"] == "trained on trimmed clips only"
    out = ensemble.save_head(heads, probs, rec, tmp_path / "ens")
    spec, model = load_head(out)
    assert spec["arch"] == "ensemble" and len(spec["members"]) == 2 and spec["val"]["uar"] == rec["val_uar"]
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((7, spec["input_dim"])).astype(np.float32))
    with torch.no_grad():
        want = (models[0](x) + models[1](x)) / 2
        assert torch.allclose(model(x), want, atol=1e-6)
        _, exported = load_float_model(out)
        assert torch.allclose(exported(x), want, atol=1e-5)
    run = onnx_runner(export_onnx_head(exported, spec["input_dim"]))
    assert np.allclose(np.concatenate([run(row[None]) for row in x.numpy()]), want.numpy(), atol=1e-5)
    # a folder whose ensemble spec is broken is one clear error, not a traceback
    broken = json.loads((out / "head.json").read_text())
    (out / "head.json").write_text(json.dumps(broken | {"members": broken["members"][:1]}))
    with pytest.raises(UserError, match="at least two head specs"):
        load_float_model(out)
    # heads of other runs than the saved probabilities, or of other features, are refused
    with pytest.raises(UserError, match="is not the head of"):
        ensemble.save_head(heads[::-1], probs, rec, tmp_path / "bad")
    with pytest.raises(UserError, match="same pooled features"):
        ensemble.save_head(heads, probs, rec | {"head": rec["head"] | {"features": ""}}, tmp_path / "bad")

