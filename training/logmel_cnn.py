"""A compact CNN trained from scratch on the daemon's log-mel spectrogram (no pretrained backbone).

    python -m training logmel-cnn cache                      # log-mel of every 2 s window (resumable)
    python -m training logmel-cnn train --protocol speaker_independent --corpus all+ \
        --out runs/logmel-cnn/si-all+                        # checkpoint per epoch; rerun resumes
    python -m convert logmel-cnn runs/logmel-cnn/si-all+ --builder artefact.heads:build_cnn

The paper's VGG16/ResNet50V2 rows use image-pretrained CNNs whose weights are not available here;
this is the practical replacement: about 0.16 M parameters, log-mel in (edge_ser.logmel: the
frontend the daemon computes for `frontend: logmel` models, 198 frames x 64 bands per 2 s window),
the four emotions + neutral out. Training sample = one 2 s window of a trimmed clip (the cache's
windows, as the daemon sees them), harmonic-mean class balancing, SpecAugment (2 frequency and 2
time masks), per-band standardisation by the training windows' statistics (stored in head.json,
applied inside the converted file), Adam with the learning rate halved on a validation plateau,
early stopping on clip-level validation UAR. Evaluation is clip level, as everywhere in training/.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artefact.heads import build_cnn
from edge_ser.errors import UserError
from training.loaders import MERGED_LABELS, Clip

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / "cache" / "logmel"
CHUNK = 512


# ---------------------------------------------------------------------------------------- cache
def build_cache(corpora: str = "all+", root: Path | None = None, cache: Path = DEFAULT_CACHE,
                limit: int = 0) -> Path:
    """logmel.npy float16 [windows, frames, 64] of every 2 s window of every clip + index.json."""
    from edge_ser.logmel import BANDS, log_mel, n_frames
    from training import window_cache
    from training.features import clip_windows
    from training.loaders import default_corpora_root, load_set

    root = Path(root or default_corpora_root()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    if (cache / "index.json").is_file():
        return cache
    clips = sorted(load_set(corpora.split(","), root), key=lambda c: (c.corpus, c.path))
    if limit:
        clips = window_cache.first_per_label(clips, limit)
    window_cache.build(cache, "logmel", clips, root,
                       lambda c: np.stack([log_mel(w) for w in clip_windows(c.path, "base")]),
                       (n_frames(32000), BANDS), "log-mel", CHUNK)
    return cache


class Store:
    """The packed cache: log-mel rows (memory-mapped) + clip path -> (first row, count)."""

    def __init__(self, cache: Path, root: Path) -> None:
        meta = json.loads((cache / "index.json").read_text())
        self.mel = np.load(cache / "logmel.npy", mmap_mode="r")
        self.index = {str((root / rel).resolve()): tuple(v) for rel, v in meta["clips"].items()}


# ---------------------------------------------------------------------------------------- training
def spec_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """2 frequency masks (<= 8 bands) and 2 time masks (<= 20 frames) per sample, filled with 0
    (the standardised mean)."""
    x = x.clone()
    n, _, frames, bands = x.shape
    for i in range(n):
        for _ in range(2):
            w = int(rng.integers(0, 9))
            s = int(rng.integers(0, bands - w + 1))
            x[i, :, :, s : s + w] = 0
            w = int(rng.integers(0, 21))
            s = int(rng.integers(0, frames - w + 1))
            x[i, :, s : s + w, :] = 0
    return x


@torch.no_grad()
def predict(model: nn.Module, store: Store, clips: list[Clip], mean: np.ndarray, std: np.ndarray,
            batch: int = 256) -> np.ndarray:
    """Clip-level probabilities: window softmax averaged per clip."""
    from training.evaluate import clip_probs
    from training.finetune.model import window_rows

    model.eval()
    rows, owner = window_rows(clips, store)
    out = []
    for s in range(0, len(rows), batch):
        x = (np.asarray(store.mel[rows[s : s + batch]], np.float32) - mean) / std
        out.append(torch.softmax(model(torch.from_numpy(x[:, None])), -1).numpy())
    return clip_probs(np.concatenate(out), owner, len(clips))


@dataclass(frozen=True)
class CnnTrainOptions:
    """What `python -m training logmel-cnn train` takes."""

    protocol: str
    corpus: str
    out: Path
    heldout: str | None = None
    root: Path | None = None
    cache: Path = DEFAULT_CACHE
    epochs: int = 12
    patience: int = 4
    batch: int = 64
    lr: float = 2e-3
    max_steps: int = 0
    seed: int = 0
    threads: int = 2
    no_record: bool = False
    command: str = ""
    """The command line recorded with the result."""


def train(args: CnnTrainOptions) -> dict:
    from training.evaluate import metrics
    from training.finetune.model import harmonic_epoch, window_rows
    from training.loaders import default_corpora_root, expand
    from training.report import append_record
    from training.splits import split_set

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.root or default_corpora_root()).resolve()
    corpora, clips, roles = split_set(args.protocol, args.corpus, args.heldout, root)
    store = Store(Path(args.cache), root)
    part: dict[str, list[Clip]] = {"train": [], "val": [], "test": []}
    for c in sorted(clips, key=lambda c: c.path):
        if c.path in roles and c.path in store.index:
            part[roles[c.path]].append(c)
    if not all(part.values()):
        raise UserError(f"empty split: { {k: len(v) for k, v in part.items()} }")
    labels = list(MERGED_LABELS)
    train_clips = part["train"]
    ym = np.array([labels.index(c.merged) for c in train_clips])
    rows, _ = window_rows(train_clips, store)
    sample = np.sort(np.random.default_rng(0).choice(rows, size=min(4000, len(rows)), replace=False))
    ref = np.asarray(store.mel[sample], np.float32)
    mean, std = ref.mean(axis=(0, 1)), np.maximum(ref.std(axis=(0, 1)), 1e-3)
    spec = {"arch": "logmel-cnn", "builder": "artefact.heads:build_cnn", "widths": [24, 48, 96, 128],
            "dropout": 0.3, "labels": labels, "input_shape": [1, 1, int(store.mel.shape[1]), 64],
            "feature_mean": mean.tolist(), "feature_std": std.tolist(), "frontend": "logmel",
            "window_s": 2.0, "protocol": args.protocol, "corpora": corpora, "heldout": args.heldout}
    model = build_cnn(spec)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():  # resume
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
    rng = np.random.default_rng([args.seed, state["epoch"]])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    yv = np.array([labels.index(c.merged) for c in part["val"]])
    log = open(out / "train.log", "a")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{time.strftime('%H:%M:%S')} {args.protocol} {corpora} heldout={args.heldout}: train "
          f"{len(train_clips)} val {len(part['val'])} test {len(part['test'])} clips, {n_params} parameters",
          file=log, flush=True)
    while state["epoch"] < args.epochs and state["epoch"] - state["best_epoch"] < args.patience:
        model.train()
        t0 = time.time()
        order = harmonic_epoch(ym, rng)
        if args.max_steps:
            order = order[: args.max_steps * args.batch]
        losses = []
        for s in range(0, len(order), args.batch):
            idx = order[s : s + args.batch]
            pick = []
            for i in idx:  # a random window of the clip
                first, n = store.index[train_clips[i].path]
                pick.append(first + int(rng.integers(0, n)))
            x = (np.asarray(store.mel[np.array(pick)], np.float32) - mean) / std
            xb = spec_augment(torch.from_numpy(x[:, None]), rng)
            loss = loss_fn(model(xb), torch.from_numpy(ym[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        val = metrics(yv, predict(model, store, part["val"], mean, std).argmax(1), tuple(labels))
        sched.step(val["uar"])
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "loss": round(float(np.mean(losses)), 4),
                                 "val_uar": round(val["uar"], 4), "seconds": round(time.time() - t0, 1)})
        print(json.dumps(state["history"][-1]), file=log, flush=True)
        if val["uar"] > state["best"]:
            state["best"], state["best_epoch"] = val["uar"], state["epoch"]
            torch.save(model.state_dict(), out / "head.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "state": state}, ckpt)
    model.load_state_dict(torch.load(out / "head.pt", weights_only=True))
    pt = predict(model, store, part["test"], mean, std)
    yt = np.array([labels.index(c.merged) for c in part["test"]])
    m = metrics(yt, pt.argmax(1), tuple(labels))
    command = args.command
    per_corpus = {}
    for name in sorted({c.corpus for c in part["test"]}):
        sel = np.array([k for k, c in enumerate(part["test"]) if c.corpus == name])
        mc = metrics(yt[sel], pt[sel].argmax(1), tuple(labels))
        per_corpus[name] = {k: mc.get(k) for k in ("accuracy", "macro_f1", "uar", "uar4", "n_test")}
    members = expand(args.corpus.split(","), root)
    rec = {"model": "logmel-cnn", "protocol": args.protocol,
           "corpus": args.heldout if args.protocol == "cross_corpus" else
           (args.corpus if len(members) > 1 else members[0]),
           "classes": "merged", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
           "uar": m["uar4"] if args.protocol == "cross_corpus" else m["uar"], "n_test": m["n_test"],
           "uar_all_classes": m["uar"], "uar4": m.get("uar4"), "per_class_recall": m["per_class_recall"],
           "confusion": m["confusion"], "labels": labels, "train": args.corpus, "val_uar": state["best"],
           "best_epoch": state["best_epoch"], "parameters": n_params, "per_corpus": per_corpus,
           "command": command}
    spec.update({"command": command, "data": ",".join(corpora), "split": f"{args.protocol} (training/splits)",
                 "val": {"uar": state["best"]}, "test": {k: m[k] for k in ("accuracy", "macro_f1", "uar")},
                 "license": "inherits the training corpora (TESS/RAVDESS/nEMO/TurEV-DB non-commercial, "
                 "SAVEE research only; see shared/corpora/README.md)"})
    (out / "head.json").write_text(json.dumps(spec, indent=1))
    # eval rows for convert/ (INT8 calibration on training windows, parity on test windows)
    from artefact.eval_data import EVAL_NAME

    trows = np.sort(np.random.default_rng(1).choice(rows, size=min(300, len(rows)), replace=False))
    test_rows, owner = window_rows(part["test"], store)
    keep = np.sort(np.random.default_rng(2).choice(len(test_rows), size=min(1000, len(test_rows)),
                                                   replace=False))
    np.savez_compressed(out / EVAL_NAME, train_x=np.asarray(store.mel[trows], np.float32)[:, None],
                        test_x=np.asarray(store.mel[test_rows[keep]], np.float32)[:, None],
                        test_y=yt[owner[keep]], labels=np.array(labels))
    (out / "record.json").write_text(json.dumps(rec, indent=1))
    if not args.no_record:
        append_record(rec)
    return rec
