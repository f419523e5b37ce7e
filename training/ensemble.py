"""Ensembles that average class probabilities: each member's leave-one-corpus-out folds are saved by
`python -m training loco ... --save-probs DIR` (the held-out corpus's clip probabilities, window
probabilities and validation probabilities per fold), and `python -m training ensemble --probs DIR
--probs DIR2 --name NAME` averages the members' probabilities clip by clip and scores the mean with
the same metric as every LOCO row (UAR over the four emotions on the held-out corpus).

The members must have been trained on the same folds and scored on the same clips in the same order
(the same corpora and split files); anything else is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser.errors import UserError
from training.evaluate import metrics, pooled_metrics


def save_fold(folder: Path, rec: dict, result) -> Path:
    """One LOCO fold of a member (its record and training.experiment.Result) as folder/<held-out>.npz."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    test, val = result.test_part, result.val_part
    out = folder / f"{rec['corpus']}.npz"
    tmp = folder / f"{rec['corpus']}.tmp.npz"
    np.savez(tmp, model=rec["model"], command=rec["command"], train=rec.get("train", ""),
             labels=np.array(result.labels), paths=np.array(test.paths), y=test.y, corpus=test.corpus,
             probs=result.test_probs, clip=test.clip, window_probs=result.test_window_probs,
             val_paths=np.array(val.paths), val_y=val.y, val_probs=result.val_probs)
    tmp.rename(out)
    return out


def _load(folder: Path, heldout: str) -> dict:
    with np.load(Path(folder) / f"{heldout}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


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


def average_fold(folders: list[Path], heldout: str, name: str, command: str) -> dict:
    """The record of one held-out corpus: the members' probabilities averaged per clip."""
    if len(folders) < 2:
        raise UserError("an ensemble needs at least two members (--probs DIR, repeated)")
    members = [_load(f, heldout) for f in folders]
    for key, what in (("labels", "the labels"), ("paths", "the test clips"), ("y", "the test labels"),
                      ("val_y", "the validation labels"),
                      ("clip", "the test windows"), ("val_paths", "the validation clips")):
        _same(members, key, what, heldout)
    first = members[0]
    labels = tuple(str(x) for x in first["labels"])
    y, clip = first["y"], first["clip"]

    def mean_of(key: str) -> np.ndarray:
        return np.mean([m[key] for m in members], axis=0)

    test, per_corpus = pooled_metrics(y, mean_of("probs").argmax(axis=1), first["corpus"], labels)
    windows = metrics(y[clip], mean_of("window_probs").argmax(axis=1), labels)
    val = metrics(first["val_y"], mean_of("val_probs").argmax(axis=1), labels)
    return {"model": name, "protocol": "cross_corpus", "corpus": heldout, "classes": "merged",
            "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
            "uar": test.get("uar4", test["uar"]), "n_test": test["n_test"],
            "command": " && ".join([str(m["command"]) for m in members] + [command]),
            "uar_all_classes": test["uar"], "uar4": test.get("uar4"),
            "per_class_recall": test["per_class_recall"], "confusion": test["confusion"],
            "labels": list(labels), "folds": 1, "train": str(first["train"]), "val_uar": val["uar"],
            "window_accuracy": windows["accuracy"],
            "head": {"arch": "ensemble", "members": [str(m["model"]) for m in members],
                     "how": "mean of the members' class probabilities per window and per clip"},
            "per_corpus": per_corpus}
