"""Head training: standardise, harmonic-mean class balancing, Adam, batch 256, LR halved on a
3-epoch validation-loss plateau, early stopping after 20 epochs without a better validation UAR,
and a small grid (hidden sizes x dropout x lr) chosen on validation UAR."""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from artefact.heads import build_head
from training.dataset import Part
from training.evaluate import clip_probs, metrics

DEFAULT_GRID = {
    "mlp": {"hidden": [[256], [512, 128], [1024, 256]], "dropout": [0.3, 0.5], "lr": [1e-3, 3e-4]},
    "linear": {"hidden": [[]], "dropout": [0.0, 0.3], "lr": [1e-3, 3e-4]},
    "wsum": {"hidden": [[256], [512, 128], []], "dropout": [0.3, 0.5], "lr": [1e-3]},
    "attn": {"hidden": [[256], [512, 128]], "dropout": [0.3, 0.5], "lr": [1e-3]},
}


@dataclass
class Fitted:
    """A trained head and what was learned about it on validation."""

    spec: dict
    """head.json content (without provenance fields)."""
    state: dict
    """state_dict of build_head(spec)."""
    val: dict
    """Validation metrics (clip level) of the best epoch."""
    epochs: int
    """Epochs run (including the patience tail)."""


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def balance_weights(part: Part, n_labels: int, corpus_power: float = 0.0) -> tuple[np.ndarray, int]:
    """Per-window sampling weights and epoch size for harmonic-mean class balancing.

    Every class is drawn H times per epoch, H = harmonic mean of the class clip counts (large
    classes are subsampled, small ones repeated); a clip's windows share its weight. With
    corpus_power > 0, clips of big corpora are additionally down-weighted by (corpus size)^-power.
    """
    counts = np.bincount(part.y, minlength=n_labels).astype(float)
    present = counts > 0
    h = present.sum() / np.sum(1.0 / counts[present])
    clip_w = h / counts[part.y]
    if corpus_power > 0:
        names, inv = np.unique(part.corpus, return_inverse=True)
        size = np.bincount(inv).astype(float)
        cw = size[inv] ** -corpus_power
        for c in range(n_labels):  # keep each class's total weight unchanged
            m = part.y == c
            if m.any():
                cw[m] *= m.sum() / cw[m].sum()
        clip_w = clip_w * cw
    per_clip_windows = np.bincount(part.clip, minlength=part.n_clips)
    w = clip_w[part.clip] / per_clip_windows[part.clip]
    return w / w.sum(), int(round(h * present.sum()))


def predict(model: nn.Module, x: np.ndarray, mean: np.ndarray, std: np.ndarray,
            batch: int = 4096) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy((np.asarray(x[i:i + batch], dtype=np.float32) - mean) / std)
            out.append(torch.softmax(model(xb), dim=-1).numpy())
    return np.concatenate(out)


def evaluate_part(model: nn.Module, part: Part, mean: np.ndarray, std: np.ndarray,
                  labels: tuple[str, ...]) -> tuple[dict, np.ndarray]:
    """Clip-level metrics (window probabilities averaged per clip) and the clip probabilities."""
    p = clip_probs(predict(model, part.x, mean, std), part.clip, part.n_clips)
    return metrics(part.y, p.argmax(axis=1), labels), p


def fit_one(train: Part, val: Part, spec: dict, lr: float, seed: int = 0, max_epochs: int = 200,
            patience: int = 20, batch: int = 256, corpus_power: float = 0.0, log=None) -> Fitted:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = tuple(spec["labels"])
    mean, std = np.asarray(spec["feature_mean"], np.float32), np.asarray(spec["feature_std"], np.float32)
    xs = torch.from_numpy((train.x - mean) / std)
    ys = torch.from_numpy(train.y[train.clip])
    weights, epoch_size = balance_weights(train, len(labels), corpus_power)
    model = build_head(spec)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3)
    lossf = nn.CrossEntropyLoss()
    best, best_state, best_val, since = -1.0, None, {}, 0
    xv = torch.from_numpy((val.x - mean) / std)
    yv_win = torch.from_numpy(val.y[val.clip])
    epoch = 0
    for epoch in range(1, max_epochs + 1):  # noqa: B007 (epoch count is logged after the loop)
        model.train()
        idx = torch.from_numpy(rng.choice(len(weights), size=epoch_size, p=weights))
        for i in range(0, epoch_size, batch):
            b = idx[i:i + batch]
            opt.zero_grad()
            loss = lossf(model(xs[b]), ys[b])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            vloss = float(lossf(logits, yv_win))
            pv = clip_probs(torch.softmax(logits, -1).numpy(), val.clip, val.n_clips)
        m = metrics(val.y, pv.argmax(axis=1), labels)
        sched.step(vloss)
        if m["uar"] > best + 1e-6:
            best, best_val, since = m["uar"], m, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= patience:
                break
    if log:
        log(f"    {spec['arch']} hidden={spec.get('hidden')} drop={spec.get('dropout')} lr={lr}: "
            f"val uar {best:.3f} acc {best_val['accuracy']:.3f} ({epoch} epochs)")
    return Fitted(dict(spec, lr=lr), best_state, best_val, epoch)


def fit(train: Part, val: Part, labels: tuple[str, ...], arch: str = "mlp", grid: dict | None = None,
        pooling: str = "mean", seed: int = 0, corpus_power: float = 0.0, log=print,
        backbone: str = "yamnet", window_level: str = "raw") -> Fitted:
    """Grid search on validation UAR; returns the best head."""
    torch.set_num_threads(1)
    grid = grid or DEFAULT_GRID[arch]
    mean, std = standardiser(train.x)
    base = {"arch": arch, "input_dim": int(train.x.shape[-1]), "labels": list(labels), "pooling": pooling,
            "backbone": backbone, "feature_mean": mean.tolist(), "feature_std": std.tolist()}
    if window_level != "raw":  # the daemon must prepare windows as this head's features were
        base["window_level"] = window_level
    best: Fitted | None = None
    t0 = time.time()
    for hidden, dropout, lr in itertools.product(grid["hidden"], grid["dropout"], grid["lr"]):
        spec = dict(base, hidden=list(hidden), dropout=dropout)
        f = fit_one(train, val, spec, lr, seed=seed, corpus_power=corpus_power, log=log)
        if best is None or f.val["uar"] > best.val["uar"]:
            best = f
    if log:
        log(f"  best: hidden={best.spec['hidden']} drop={best.spec['dropout']} lr={best.spec['lr']} "
            f"val uar {best.val['uar']:.3f} ({time.time() - t0:.0f} s)")
    return best
