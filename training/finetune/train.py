"""One fine-tuning run: resumable from its folder, writes result.json, head.json and test_probs.npz."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_ser.errors import UserError
from training.loaders import MERGED_LABELS, Clip

from . import DEFAULT_CACHE, DEFAULT_TFLITE
from .cache import DIM, POSITIONS, Store
from .model import TopModel, harmonic_epoch, predict, score, window_rows


@dataclass(frozen=True)
class TrainOptions:
    """What `python -m training finetune train` takes."""

    protocol: str
    corpus: str
    out: Path
    heldout: str | None = None
    fold: int = 0
    root: Path | None = None
    cache: Path = DEFAULT_CACHE
    aug: str = "aug1"
    epochs: int = 6
    patience: int = 2
    batch: int = 64
    lr: float = 5e-4
    rank: int = 64
    head_lr: float = 1e-3
    dropout: float = 0.3
    original_weight: float = 0.5
    freeze: bool = False
    max_steps: int = 0
    seed: int = 0
    threads: int = 1
    tflite: Path = DEFAULT_TFLITE
    command: str = ""
    """The command line recorded with the result."""


def train(args: TrainOptions) -> dict:
    from training.evaluate import metrics
    from training.loaders import default_corpora_root
    from training.splits import split_set

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    root = Path(args.root or default_corpora_root()).resolve()
    corpora, clips, roles = split_set(args.protocol, args.corpus, args.heldout, root, args.fold)
    base = Store(Path(args.cache) / "base", root, args.tflite)
    augs = [
        Store(Path(args.cache) / v, root, args.tflite)
        for v in args.aug.split(",")
        if v and (Path(args.cache) / v / "index.json").is_file()
    ]
    part: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.path):
        if c.path in roles and c.path in base.index:
            part[roles[c.path]].append(c)
    uncached = sum(1 for c in clips if c.path in roles and c.path not in base.index)
    if not part["train"] or not part["val"] or not part["test"]:
        raise UserError(f"empty split: { {k: len(v) for k, v in part.items()} }")
    train_clips = part["train"]
    orig_labels = tuple(sorted({c.label for c in train_clips}))
    ym = np.array([MERGED_LABELS.index(c.merged) for c in train_clips])
    yo = np.array([orig_labels.index(c.label) for c in train_clips])
    log = open(out / "train.log", "a")

    def say(msg: str) -> None:
        print(msg, file=log, flush=True)

    say(
        f"{time.strftime('%H:%M:%S')} {args.protocol} {corpora} heldout={args.heldout} fold={args.fold}: "
        f"train {len(train_clips)} val {len(part['val'])} test {len(part['test'])} clips, "
        f"{len(augs)} augmented copies, freeze={args.freeze}, original labels {orig_labels}"
    )
    model = TopModel(len(orig_labels), args.rank, args.dropout)
    model.standardise(base, window_rows(train_clips, base)[0])
    heads = [*model.merged.parameters(), *model.original.parameters()]
    opt = torch.optim.AdamW(
        [
            {"params": heads, "lr": args.head_lr, "weight_decay": 0.01},
            {"params": model.adapter_parameters(), "lr": args.lr, "weight_decay": 0.0},
        ]
    )
    base_lrs = [args.head_lr, 0.0 if args.freeze else args.lr]
    for p in model.adapter_parameters():
        p.requires_grad_(not args.freeze)
    rng = np.random.default_rng(args.seed)
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():  # resume
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        rng = np.random.default_rng([args.seed, state["epoch"]])
        say(f"resumed after epoch {state['epoch']}")
    epoch_size = len(harmonic_epoch(ym, np.random.default_rng(0)))
    if args.max_steps:
        epoch_size = min(epoch_size, args.max_steps * args.batch)
    steps = math.ceil(epoch_size / args.batch)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.1)
    yv = np.array([MERGED_LABELS.index(c.merged) for c in part["val"]])
    stores = [base, *augs]
    while state["epoch"] < args.epochs and state["epoch"] - state["best_epoch"] < args.patience:
        model.train()
        t0 = time.time()
        order = harmonic_epoch(ym, rng)[:epoch_size]
        warm = state["epoch"] == 0 and args.epochs > 1
        losses = []
        for s in range(steps):
            progress = (state["epoch"] - 1 + s / steps) / max(1, args.epochs - 1)
            cos = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr * (1.0 if warm else max(cos, 0.05))
            if warm:
                opt.param_groups[1]["lr"] = 0.0  # head-only warm-up: random heads must not wreck the conv
            idx = order[s * args.batch : (s + 1) * args.batch]
            x = np.empty((len(idx), POSITIONS, DIM), dtype=np.float32)
            pre = np.empty_like(x)
            for k, i in enumerate(idx):  # a random copy (base or augmented), a random window of it
                store = stores[int(rng.integers(0, len(stores)))]
                if train_clips[i].path not in store.index:
                    store = base
                first, n = store.index[train_clips[i].path]
                row = first + int(rng.integers(0, n))
                x[k], pre[k] = store.feats[row], store.pre[row]
            lm, lo = model(torch.from_numpy(x), torch.from_numpy(pre))
            loss = smooth(lm, torch.from_numpy(ym[idx])) + args.original_weight * smooth(
                lo, torch.from_numpy(yo[idx])
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        pm, _ = predict(model, base, part["val"])
        val = metrics(yv, pm.argmax(1), MERGED_LABELS)
        state["epoch"] += 1
        state["history"].append(
            {
                "epoch": state["epoch"],
                "loss": round(float(np.mean(losses)), 4),
                "val_uar": round(val["uar"], 4),
                "val_accuracy": round(val["accuracy"], 4),
                "seconds": round(time.time() - t0, 1),
            }
        )
        say(json.dumps(state["history"][-1]))
        if val["uar"] > state["best"]:
            state["best"], state["best_epoch"] = val["uar"], state["epoch"]
            torch.save(model.state_dict(), out / "best.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    pm, po = predict(model, base, part["test"])
    command = args.command
    result = {
        "model": "yamnet-ft-frozen" if args.freeze else "yamnet-ft",
        "protocol": args.protocol,
        "corpora": corpora,
        "heldout": args.heldout,
        "fold": args.fold,
        "original_labels": list(orig_labels),
        "merged_labels": list(MERGED_LABELS),
        "n_train": len(train_clips),
        "n_val": len(part["val"]),
        "n_test": len(part["test"]),
        "augmented_copies": len(augs),
        "clips_not_cached": uncached,
        "best_epoch": state["best_epoch"],
        "val_uar": state["best"],
        "history": state["history"],
        "test": score(part["test"], pm, po, orig_labels),
        "command": command,
    }
    rel = [Path(c.path).resolve().relative_to(root).as_posix() for c in part["test"]]
    np.savez_compressed(out / "test_probs.npz", merged=pm, original=po, paths=np.array(rel))
    (out / "head.json").write_text(
        json.dumps(
            {
                "arch": "yamnet-ft",
                "rank": args.rank,
                "trained": "layer14.pw + heads",
                "labels": list(MERGED_LABELS),
                "original_labels": list(orig_labels),
                "pooling": "mean",
                "backbone": "yamnet",
                "window_s": 2.0,
                "command": command,
                "protocol": args.protocol,
                "corpora": corpora,
                "heldout": args.heldout,
                "val_uar": state["best"],
            },
            indent=1,
        )
    )
    (out / "result.json").write_text(json.dumps(result, indent=1))
    say(f"{time.strftime('%H:%M:%S')} done: test merged uar {result['test']['all']['merged']['uar']:.4f}")
    return result
