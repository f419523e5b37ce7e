"""One experiment = protocol split -> features -> grid-searched head -> test metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ser.errors import UserError
from training import loaders
from training.dataset import Fuse, Part, build_part, label_set
from training.features import DEFAULT_CACHE, backbone_of, cache_layout
from training.scenes import BABBLE_SCENES
from training.splits import SPLITS_DIR, protocol_split
from training.train import Fitted, evaluate_part, fit, predict


@dataclass
class Result:
    fitted: Fitted
    test: dict
    """Clip-level test metrics."""
    test_windows: dict
    """Window-level test metrics (each 2 s window judged alone, as the daemon does)."""
    labels: tuple[str, ...]
    n_train: int
    """Training clips (un-augmented)."""
    test_part: Part
    test_probs: np.ndarray
    train_sample: np.ndarray
    """Up to 2000 training windows (pooled features), for INT8 calibration of exports."""
    corpus_stats: dict
    """norm=corpus: per training corpus (mean, std), plus "global"."""
    test_window_probs: np.ndarray | None = None
    """[test windows, labels]: each window's probabilities (test_part.clip says whose)."""
    val_part: Part | None = None
    val_probs: np.ndarray | None = None
    """[validation clips, labels]: clip probabilities on the validation clips."""


def run(protocol: str, corpora: str | list[str], classes: str = "merged", arch: str = "mlp",
        pooling: str = "mean", augment: int = 0, heldout: str | None = None, fold: int = 0,
        grid: dict | None = None, root: Path | None = None, cache: Path = DEFAULT_CACHE,
        split_dir: Path = SPLITS_DIR, corpus_power: float = 0.0, seed: int = 0, log=print,
        _caches: dict | None = None, norm: str = "global", room: int = 0, fuse: Fuse | None = None,
        per_class: int | None = None, scene: str = "room") -> Result:
    """per_class: only a seeded subset of at most that many clips per corpus and merged class
    (loaders.per_class_subset), in training, validation and test alike.

    norm: global = one standardisation for all training data (folded into the head); corpus =
    every training corpus standardised by its own statistics first (what edge_ser.adaptation does on
    a device); test clips of a corpus seen in training use that corpus's training statistics, an
    unseen corpus stays raw (measure adaptation on it with training.adapt_eval).
    fuse: a second cache whose pooled rows are appended to each window's (training.dataset.Fuse);
    the concatenation is standardised per feature like any input. room: copies per training clip of
    the `scene` families joined by `+` (training.scenes.SCENES: room, babble, talk)."""
    families = scene.split("+")
    if classes == "foreground" and not room:
        raise UserError("--classes foreground learns from the pauses of room copies; add --room N")
    if set(families) & set(BABBLE_SCENES) and room and fold > 0:
        # babble_pool draws fold 0's training speakers: a later leave-one-speaker-out fold tests one of them
        raise UserError("babble room copies are made of fold 0's training speakers; a run of fold "
                        f"{fold} would hear its test speaker in them")
    if fuse is not None and arch not in ("mlp", "linear"):
        raise UserError(f"fused features feed mlp or linear heads, not {arch}")
    if arch == "logreg":
        pooling = "frames"
    names = corpora.split(",") if isinstance(corpora, str) else list(corpora)
    root = root or loaders.default_corpora_root()
    members = loaders.expand(names, root)
    if protocol == "cross_corpus":
        if heldout is None:
            raise UserError("cross_corpus needs a held-out corpus")
        if heldout not in members:
            members.append(heldout)
    clips = [c for c in loaders.load_set(members, root)]
    if per_class is not None:
        clips = loaders.per_class_subset(clips, per_class)
    split = protocol_split(protocol, members, clips, root, fold=fold, heldout=heldout, split_dir=split_dir)
    if classes == "merged":
        clips = [c for c in clips if c.merged is not None]
    labels = label_set(clips, classes)
    caches = _caches if _caches is not None else {}
    sets = {s: [c for c in clips if split.get(c.path) == s] for s in ("train", "val", "test")}
    if not all(sets.values()):
        raise UserError(f"empty split for {protocol} on {','.join(members)}: "
                        + ", ".join(f"{k}={len(v)}" for k, v in sets.items()))
    # training clips only: augmented copies and copies heard in a room (training.scenes)
    variants = (("base",) + tuple(f"aug{i}" for i in range(1, augment + 1))
                + tuple(f"{family}{i}" for family in families for i in range(1, room + 1)))
    # a foreground head is judged on room copies too: the plain clips hold no window without a talker
    held = variants if classes == "foreground" else ("base",)
    train = build_part(sets["train"], labels, classes, pooling, variants, cache, caches, fuse)
    val = build_part(sets["val"], labels, classes, pooling, held, cache, caches, fuse)
    test = build_part(sets["test"], labels, classes, pooling, held, cache, caches, fuse)
    corpus_stats = {}
    if norm == "corpus":
        corpus_stats = per_corpus_standardise(train, (val, test))
    elif norm != "global":
        raise UserError(f"norm must be global or corpus, not {norm!r}")
    if log:
        log(f"  {protocol} {','.join(members)} heldout={heldout} fold={fold} norm={norm}: "
            f"train {len(sets['train'])} clips ({len(train.x)} windows, variants {','.join(variants)}), "
            f"val {val.n_clips}, test {test.n_clips}")
    if arch == "logreg":
        return _probe(train, val, test, labels, len(sets["train"]), seed)
    fitted = fit(train, val, labels, arch, grid, pooling, seed=seed, corpus_power=corpus_power, log=log,
                 backbone=backbone_of(cache), window_level=cache_layout(cache).get("window_level", "raw"))
    if fuse is not None:  # the manifest entry's fused_backbone: what convert and the daemon add
        fitted.spec["fuse"] = fuse.describe()
    from artefact.heads import build_head

    model = build_head(fitted.spec)
    model.load_state_dict(fitted.state)
    mean = np.asarray(fitted.spec["feature_mean"], np.float32)
    std = np.asarray(fitted.spec["feature_std"], np.float32)
    test_m, probs = evaluate_part(model, test, mean, std, labels)
    from training.evaluate import metrics

    wp = predict(model, test.x, mean, std)
    win_m = metrics(test.y[test.clip], wp.argmax(axis=1), labels)
    pick = np.random.default_rng(seed).permutation(len(train.x))[:2000]
    _, val_probs = evaluate_part(model, val, mean, std, labels)
    return Result(fitted, test_m, win_m, labels, len(sets["train"]), test, probs, train.x[np.sort(pick)],
                  corpus_stats, wp, val, val_probs)


def _clip_mean_max(part: Part) -> Part:
    """One row per clip: mean and max over every frame of every window (the reference probe's input)."""
    frames = part.x.reshape(len(part.x), -1, part.x.shape[-1])
    d = frames.shape[-1]
    s = np.zeros((part.n_clips, d))
    mx = np.full((part.n_clips, d), -np.inf)
    np.add.at(s, part.clip, frames.sum(axis=1))
    np.maximum.at(mx, part.clip, frames.max(axis=1))
    n = np.bincount(part.clip, minlength=part.n_clips)[:, None] * frames.shape[1]
    x = np.concatenate([s / n, mx], axis=1).astype(np.float32)
    return Part(x, np.arange(part.n_clips), part.y, part.corpus, part.speaker, part.paths)


def _probe(train: Part, val: Part, test: Part, labels: tuple[str, ...], n_train: int, seed: int) -> Result:
    """The reference probe on these splits: standardised logistic regression on clip mean+max."""
    from sklearn.linear_model import LogisticRegression

    from training.evaluate import metrics
    from training.train import standardiser

    tr, va, te = (_clip_mean_max(p) for p in (train, val, test))
    mean, std = standardiser(tr.x)
    clf = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
    clf.fit((tr.x - mean) / std, tr.y)

    def probs(p: Part) -> np.ndarray:
        out = np.zeros((p.n_clips, len(labels)))
        out[:, clf.classes_] = clf.predict_proba((p.x - mean) / std)
        return out

    pv, pt = probs(va), probs(te)
    val_m = metrics(va.y, pv.argmax(axis=1), labels)
    test_m = metrics(te.y, pt.argmax(axis=1), labels)
    spec = {"arch": "logreg", "hidden": [], "dropout": 0.0, "lr": 0.0, "pooling": "clip_mean_max",
            "labels": list(labels), "input_dim": int(tr.x.shape[1])}
    return Result(Fitted(spec, {}, val_m, 0), test_m, test_m, labels, n_train, te, pt,
                  tr.x[:0], {})


def per_corpus_standardise(train: Part, others: tuple[Part, ...]) -> dict:
    """In place: x -> (x - mean_c) / std_c * std_all + mean_all per training corpus c.

    Mapping back into the pooled training statistics keeps the head's folded standardisation
    meaningful, so the same head file serves with and without device adaptation.
    """
    flat = train.x.reshape(-1, train.x.shape[-1])
    g_mean, g_std = flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-3)
    stats = {}
    for c in np.unique(train.corpus):
        m = train.corpus[train.clip] == c
        xc = train.x[m].reshape(-1, train.x.shape[-1])
        stats[str(c)] = (xc.mean(axis=0), np.maximum(xc.std(axis=0), 1e-3))
    for part in (train, *others):
        win_corpus = part.corpus[part.clip]
        for c, (mu, sd) in stats.items():
            m = win_corpus == c
            if m.any():
                part.x[m] = (part.x[m] - mu) / sd * g_std + g_mean
    return {"global": (g_mean, g_std), **stats}
