"""Ensembles that average class probabilities: each member's folds are saved by `python -m training
loco ... --save-probs DIR` (the held-out corpus's clip probabilities, window probabilities and
validation probabilities per fold; `run --save-probs DIR` saves a single-fold protocol the same way),
and `python -m training ensemble --probs DIR --probs DIR2 --name NAME` averages the members'
probabilities clip by clip and scores the mean with the same metric as a member's row (LOCO: UAR over
the four emotions on the held-out corpus).

The members must have been trained on the same folds and scored on the same clips in the same order
(the same corpora and split files); anything else is refused. Members whose heads read the same pooled
features (one cache, pooling and fusion) are heads of one daemon model: `ensemble --save-head` writes
their head folders as one ensemble head (artefact.heads, arch "ensemble") that convert exports as
one graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edge_ser.errors import UserError
from training.evaluate import metrics, pooled_metrics


def features_of(cache: Path | None, pooling: str, fuse: str | None) -> str:
    """What a member's head reads: members that agree on it can run as one daemon model."""
    return f"cache {cache or 'default'}, pooling {pooling}" + (f", fused {fuse}" if fuse else "")


def save_fold(folder: Path, rec: dict, result, features: str = "") -> Path:
    """One fold of a member (its record and training.experiment.Result) as folder/<corpus>.npz;
    features: features_of the member's head."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    test, val = result.test_part, result.val_part
    out = folder / f"{rec['corpus']}.npz"
    tmp = folder / f"{rec['corpus']}.tmp.npz"
    np.savez(tmp, model=rec["model"], command=rec["command"], train=rec.get("train", ""),
             protocol=rec["protocol"], features=features,
             labels=np.array(result.labels), paths=np.array(test.paths), y=test.y, corpus=test.corpus,
             probs=result.test_probs, clip=test.clip, window_probs=result.test_window_probs,
             val_paths=np.array(val.paths), val_y=val.y, val_probs=result.val_probs)
    tmp.rename(out)
    return out


def _load(folder: Path, heldout: str) -> dict:
    with np.load(Path(folder) / f"{heldout}.npz", allow_pickle=False) as z:
        # folds saved before the protocol and the features were recorded are LOCO folds of unknown features
        return {"protocol": np.array("cross_corpus"), "features": np.array("")} | {k: z[k] for k in z.files}


def _same(members: list[dict], key: str, what: str, heldout: str) -> None:
    first = members[0][key]
    for m in members[1:]:
        if m[key].shape != first.shape or not np.array_equal(m[key], first):
            raise UserError(f"ensemble members disagree on {what} of held-out {heldout} "
                            f"({members[0]['model']} vs {m['model']}); train them on the same folds "
                            "and clips")


def heldouts(folders: list[Path]) -> list[str]:
    """The held-out corpora every member has a saved fold of (refused when the members' sets differ)."""
    sets = [{p.stem for p in Path(f).glob("*.npz") if not p.stem.endswith(".tmp")} for f in folders]
    if not sets or not sets[0]:
        raise UserError(f"no saved folds (`loco --save-probs`) in {folders[0] if folders else '(none)'}")
    for f, s in zip(folders[1:], sets[1:], strict=True):
        if s != sets[0]:
            raise UserError(f"{f} has folds {sorted(s)}, {folders[0]} has {sorted(sets[0])}")
    return sorted(sets[0])


def _shared_features(members: list[dict]) -> str:
    """The pooled features every member reads ("" when a member's are unknown or differ)."""
    found = {str(m["features"]) for m in members}
    return found.pop() if len(found) == 1 else ""


def average_fold(folders: list[Path], heldout: str, name: str, command: str) -> dict:
    """The record of one held-out corpus (or a single-fold protocol's test set): the members'
    probabilities averaged per clip."""
    if len(folders) < 2:
        raise UserError("an ensemble needs at least two members (--probs DIR, repeated)")
    members = [_load(f, heldout) for f in folders]
    for key, what in (("protocol", "the protocol"), ("labels", "the labels"), ("paths", "the test clips"),
                      ("y", "the test labels"),
                      ("val_y", "the validation labels"),
                      ("clip", "the test windows"), ("val_paths", "the validation clips")):
        _same(members, key, what, heldout)
    first = members[0]
    labels = tuple(str(x) for x in first["labels"])
    y, clip = first["y"], first["clip"]
    protocol = str(first["protocol"])

    def mean_of(key: str) -> np.ndarray:
        return np.mean([m[key] for m in members], axis=0)

    test, per_corpus = pooled_metrics(y, mean_of("probs").argmax(axis=1), first["corpus"], labels)
    windows = metrics(y[clip], mean_of("window_probs").argmax(axis=1), labels)
    val = metrics(first["val_y"], mean_of("val_probs").argmax(axis=1), labels)
    uar = test.get("uar4", test["uar"]) if protocol == "cross_corpus" else test["uar"]
    return {"model": name, "protocol": protocol, "corpus": heldout, "classes": "merged",
            "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
            "uar": uar, "n_test": test["n_test"],
            "command": " && ".join([str(m["command"]) for m in members] + [command]),
            "uar_all_classes": test["uar"], "uar4": test.get("uar4"),
            "per_class_recall": test["per_class_recall"], "confusion": test["confusion"],
            "labels": list(labels), "folds": 1, "train": str(first["train"]), "val_uar": val["uar"],
            "window_accuracy": windows["accuracy"],
            "head": {"arch": "ensemble", "members": [str(m["model"]) for m in members],
                     "how": "mean of the members' class probabilities per window and per clip",
                     "features": _shared_features(members)},
            "per_corpus": per_corpus}


SHARED_KEYS = ("input_dim", "labels", "pooling", "backbone", "window_level", "fuse", "window_s",
               "sample_rate")
"""What an ensemble head's members must agree on: they read the same pooled features of one window."""

MEMBER_KEYS = ("arch", "hidden", "dropout", "lr", "feature_mean", "feature_std", "command", "val", "test")
"""What each member keeps of its own head.json inside the ensemble's."""


def save_head(heads: list[Path], folders: list[Path], record: dict, out: Path) -> Path:
    """The members' head folders (in the order of their --probs folders) as one ensemble head folder
    at `out`, whose metrics are the ensemble's `record` (average_fold of those --probs)."""
    from artefact.heads import ENSEMBLE, ensemble_state, load_head

    if len(heads) != len(folders):
        raise UserError(f"give one --head per --probs ({len(heads)} heads, {len(folders)} probs folders)")
    if record["protocol"] == "cross_corpus":
        raise UserError("--save-head takes the heads of a single-fold protocol (`run --save-probs`), "
                        "not LOCO folds")
    if not record["head"]["features"]:
        raise UserError("--save-head needs members that read the same pooled features (one cache, "
                        "pooling and fusion, saved by this version of `run --save-probs`)")
    specs, states = [], []
    for head, probs in zip(heads, folders, strict=True):
        spec, model = load_head(head)
        rec_file = Path(head) / "record.json"
        member = _load(probs, record["corpus"])
        trained = json.loads(rec_file.read_text())["model"] if rec_file.is_file() else None
        if trained != str(member["model"]) or spec["arch"] in (ENSEMBLE, "attn"):
            raise UserError(f"{head} is not the head of {member['model']} (its record.json says {trained}, "
                            f"arch {spec['arch']}); give the head folder `run --save-head` wrote in the run "
                            f"that saved {probs}")
        for key in SHARED_KEYS:
            if specs and spec.get(key) != specs[0].get(key):
                raise UserError(f"{head} differs from {heads[0]} in {key}; an ensemble's heads read the "
                                "same features")
        specs.append(spec)
        states.append(model.head.state_dict())  # head.pt as load_head read it: build_head's state
    first = specs[0]
    spec = {"arch": ENSEMBLE, **{k: first[k] for k in SHARED_KEYS if k in first},
            "members": [{k: s[k] for k in MEMBER_KEYS if k in s} for s in specs],
            # the adaptation reference (training.ship) of heads trained on different copies: their mean
            "feature_mean": np.mean([s["feature_mean"] for s in specs], axis=0).tolist(),
            "feature_std": np.mean([s["feature_std"] for s in specs], axis=0).tolist(),
            "command": record["command"], "data": first.get("data"), "split": first.get("split"),
            "val": {"uar": record["val_uar"]},
            "test": {k: record[k] for k in ("accuracy", "macro_f1", "uar", "n_test", "uar4",
                                            "per_class_recall")},
            "license": first.get("license"),
            "note": "the members' probabilities averaged; artefact.heads.build_inference_model builds it"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(ensemble_state(states), out / "head.pt")
    (out / "head.json").write_text(json.dumps(spec, indent=1) + "\n")
    (out / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    return out
