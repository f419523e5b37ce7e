"""A small trained head on synthetic YAMNet-like features, for tests and for trying the toolkit.

The features mimic YAMNet embeddings (non-negative, sparse, 1024-d) with one cluster per label,
overlapping enough that the head is not trivially confident: parity is then actually tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_ser.labels import EMOTIONS, NEUTRAL

from .eval_data import EVAL_NAME, save_eval


def features(n: int, dim: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x [n, dim] float32 >= 0, y [n]) with label-dependent means."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).gamma(0.5, 0.4, size=(n_labels, dim))
    y = rng.integers(0, n_labels, size=n)
    x = np.maximum(0.0, centers[y] + rng.normal(0.0, 1.5, size=(n, dim)))
    return x.astype(np.float32), y


def make_head_folder(
    folder: str | Path,
    arch: str = "mlp",
    dim: int = 1024,
    hidden: tuple[int, ...] = (64,),
    n_train: int = 600,
    n_test: int = 300,
    epochs: int = 60,
    seed: int = 0,
) -> Path:
    """Train a head on synthetic features and write head.pt, head.json and eval.npz into folder."""
    from training.heads import build_head, save_head

    torch.manual_seed(seed)
    labels = [*EMOTIONS, NEUTRAL]
    xtr, ytr = features(n_train, dim, len(labels), seed)
    xte, yte = features(n_test, dim, len(labels), seed + 1)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-3
    spec = {
        "arch": arch,
        "hidden": list(hidden),
        "dropout": 0.2,
        "input_dim": dim,
        "labels": labels,
        "pooling": "mean",
        "backbone": "yamnet",
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "command": "convert.synthetic.make_head_folder",
        "data": "synthetic YAMNet-like features",
        "split": f"synthetic, seed {seed}",
    }
    head = build_head(spec)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-3)
    xt, yt = torch.from_numpy((xtr - mean) / std), torch.from_numpy(ytr)
    head.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(xt), yt)
        loss.backward()
        opt.step()
    head.eval()
    folder = save_head(Path(folder), spec, head)
    save_eval(folder / EVAL_NAME, xtr, xte, yte, labels)
    return folder
