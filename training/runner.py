"""Run a protocol end to end (all LOSO folds where a corpus has them) and make its result record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from artefact.heads import build_head, save_head
from training import experiment, loaders
from training.dataset import Fuse
from training.evaluate import plot_confusion, pooled_metrics
from training.splits import SPLITS_DIR, load_speaker_folds

REPO = Path(__file__).resolve().parent.parent
GRIDS = {
    "full": None,  # train.DEFAULT_GRID
    "small": {"mlp": {"hidden": [[512, 128]], "dropout": [0.3, 0.5], "lr": [1e-3]},
              "linear": {"hidden": [[]], "dropout": [0.0], "lr": [1e-3]},
              "wsum": {"hidden": [[256], []], "dropout": [0.3], "lr": [1e-3]},
              "attn": {"hidden": [[256]], "dropout": [0.3], "lr": [1e-3]}},
    "one": {"mlp": {"hidden": [[256]], "dropout": [0.5], "lr": [1e-3]},
            "linear": {"hidden": [[]], "dropout": [0.0], "lr": [1e-3]},
            "wsum": {"hidden": [[256]], "dropout": [0.5], "lr": [1e-3]},
            "attn": {"hidden": [[256]], "dropout": [0.3], "lr": [1e-3]}},
}


LICENSES = {
    "tess": "TESS CC BY-NC-ND 4.0", "ravdess": "RAVDESS CC BY-NC-SA 4.0",
    "savee": "SAVEE research use only (University of Surrey)", "crema-d": "CREMA-D ODbL 1.0/DbCL 1.0",
    "banglaser": "BanglaSER CC BY 4.0", "subesco": "SUBESCO CC BY 4.0", "nemo": "nEMO CC BY-NC-SA 4.0",
    "turev-db": "TurEV-DB CC BY-NC-ND 4.0", "ased": "ASED (terms not stated; cite Retta et al. 2022)",
}


def license_of(corpora: list[str]) -> str:
    """The terms a head inherits from its training corpora (plus YAMNet's)."""
    nc = [c for c in corpora if "NC" in LICENSES.get(c, "") or "research" in LICENSES.get(c, "")]
    head = "non-commercial research use only (inherits " + ", ".join(nc) + ")" if nc else "see corpora"
    return f"{head}; corpora: " + "; ".join(LICENSES.get(c, c) for c in corpora) + "; YAMNet Apache-2.0"


def _save_eval(path: Path, r, labels: tuple[str, ...], n_test: int = 3000, n_train: int = 1000) -> None:
    """eval.npz for convert/ (INT8 calibration + parity): seeded subsets of windows."""
    from artefact.eval_data import save_eval

    rng = np.random.default_rng(0)
    t = r.test_part
    ti = np.sort(rng.permutation(len(t.x))[:n_test])
    tr = r.train_sample
    save_eval(path, tr[np.sort(rng.permutation(len(tr))[:n_train])], t.x[ti], t.y[t.clip[ti]], labels)


def n_folds(protocol: str, corpus: str, root: Path | None = None, split_dir: Path = SPLITS_DIR) -> int:
    """LOSO fold count for a single small corpus under speaker_independent, else 1."""
    members = loaders.expand(corpus.split(","), root)
    if protocol != "speaker_independent" or len(members) != 1:
        return 1
    return len(load_speaker_folds(members[0], split_dir))


def seeded_name(name: str, seed: int) -> str:
    """The record name of a run with another seed: its rows sit beside, never replace, seed 0's."""
    return f"{name} seed {seed}" if seed else name


def run_protocol(protocol: str, corpus: str, heldout: str | None, classes: str, arch: str, pooling: str,
                 augment: int, grid: str, corpus_power: float, name: str, command: str,
                 save_to: Path | None = None, plots: Path | None = None, root: Path | None = None,
                 cache: Path | None = None, split_dir: Path = SPLITS_DIR, log=print,
                 norm: str = "global", room: int = 0, fuse: Fuse | None = None,
                 per_class: int | None = None, seed: int = 0, scene: str = "room") -> tuple[dict, list]:
    """Returns (record, results per fold). Folds' test predictions are pooled into one set of metrics.

    fuse: a second cache whose pooled rows are appended to each window's; seed: the head's
    initialisation and batch order; a record with seed > 0 is named `<name> seed N`."""
    from training.features import DEFAULT_CACHE

    t0 = time.time()
    g = GRIDS[grid][arch] if GRIDS[grid] else None
    results = []
    caches: dict = {}
    for fold in range(n_folds(protocol, corpus, root, split_dir)):
        results.append(experiment.run(protocol, corpus, classes, arch, pooling, augment, heldout, fold, g,
                                      root, cache or DEFAULT_CACHE, split_dir, corpus_power, seed=seed,
                                      log=log, _caches=caches, norm=norm, room=room, fuse=fuse,
                                      per_class=per_class, scene=scene))
    labels = results[0].labels
    y = np.concatenate([r.test_part.y for r in results])
    pred = np.concatenate([r.test_probs.argmax(axis=1) for r in results])
    m, per_corpus = pooled_metrics(y, pred, np.concatenate([r.test_part.corpus for r in results]), labels)
    best = max(results, key=lambda r: r.fitted.val["uar"])
    members = loaders.expand(corpus.split(","), root)
    rec_corpus = heldout if protocol == "cross_corpus" else (corpus if len(members) > 1 else members[0])
    rec = {"model": seeded_name(name, seed), "protocol": protocol, "corpus": rec_corpus, "classes": classes,
           "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
           "uar": m["uar4"] if protocol == "cross_corpus" and "uar4" in m else m["uar"],
           "n_test": m["n_test"], "command": command,
           "uar_all_classes": m["uar"], "uar4": m.get("uar4"), "per_class_recall": m["per_class_recall"],
           "confusion": m["confusion"], "labels": list(labels), "folds": len(results),
           "train": corpus, "val_uar": float(np.mean([r.fitted.val["uar"] for r in results])),
           "window_accuracy": float(np.mean([r.test_windows["accuracy"] for r in results])),
           "head": {k: best.fitted.spec[k] for k in ("arch", "hidden", "dropout", "lr", "pooling")},
           "augment": augment, "room": room, **({"scene": scene} if room else {}),
           "corpus_power": corpus_power, "norm": norm,
           "per_corpus": per_corpus,
           **({"per_class": per_class} if per_class is not None else {}),
           **({"seed": seed, "seed_of": name} if seed else {}),
           "seconds": round(time.time() - t0, 1)}
    if fuse is not None:
        rec["fuse"] = fuse.describe()
    if protocol == "cross_corpus" and results[0].fitted.spec["arch"] in ("mlp", "linear", "wsum"):
        from training.adapt_eval import evaluate_adaptation

        rec["adaptation"] = evaluate_adaptation(results[0].fitted.spec, results[0].fitted.state,
                                                results[0].test_part, labels)
    if plots:
        rec["plot"] = str(Path(plots).resolve().relative_to(REPO)) if Path(plots).resolve().is_relative_to(
            REPO) else str(plots)
        plot_confusion(m["confusion"], list(labels), f"{name} {protocol} {rec_corpus} ({classes})", plots)
    if save_to:
        r = best
        spec = dict(r.fitted.spec, command=command, data=",".join(loaders.expand(corpus.split(","), root)),
                    split=f"{protocol} (training/splits, seed 0, fold {results.index(r)})",
                    val={k: r.fitted.val[k] for k in ("accuracy", "macro_f1", "uar")},
                    test={k: rec[k] for k in ("accuracy", "macro_f1", "uar", "n_test")}
                    | {"uar4": rec["uar4"], "per_class_recall": rec["per_class_recall"]},
                    license=license_of(loaders.expand(corpus.split(","), root)),
                    window_s=2.0, sample_rate=16000,
                    note="build_head(spec) takes standardised features and returns logits; "
                         "fold (x - feature_mean) / feature_std in front and softmax after "
                         "(artefact.heads.build_inference_model does both).")
        head = build_head(spec)
        head.load_state_dict(r.fitted.state)
        save_head(save_to, spec, head)
        (Path(save_to) / "record.json").write_text(json.dumps(rec, indent=1) + "\n")
        if spec["arch"] in ("mlp", "linear", "wsum"):
            _save_eval(Path(save_to) / "eval.npz", r, labels)
    return rec, results
