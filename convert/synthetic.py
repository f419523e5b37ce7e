"""A small trained head on synthetic YAMNet-like features, for tests and for trying the toolkit.

The features mimic YAMNet embeddings (non-negative, sparse, 1024-d) with one cluster per label,
overlapping enough that the head is not trivially confident: parity is then actually tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artefact.eval_data import EVAL_NAME, save_eval
from edge_ser.labels import EMOTIONS, NEUTRAL


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
    from artefact.heads import build_head, save_head

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


class TinyCNN(torch.nn.Module):
    """A small log-mel CNN of the kind training/ may ship (conv-BN-ReLU-pool, global pool, dense)."""

    def __init__(self, n_labels: int, width: int = 8) -> None:
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(2 * width, n_labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_tiny_cnn(spec: dict) -> torch.nn.Module:
    """Builder for `convert logmel-cnn --builder convert.synthetic:build_tiny_cnn`."""
    return TinyCNN(len(spec["labels"]), int(spec.get("width", 8)))


def make_cnn_folder(
    folder: str | Path,
    frames: int = 198,
    n_train: int = 120,
    n_test: int = 60,
    epochs: int = 8,
    seed: int = 0,
) -> Path:
    """Train TinyCNN on synthetic log-mels (label = which bands carry energy); write a model folder."""
    import json

    torch.manual_seed(seed)
    labels = [*EMOTIONS, NEUTRAL]
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, len(labels), n)
        x = rng.normal(-6.0, 1.0, (n, 1, frames, 64))
        for i, c in enumerate(y):
            x[i, 0, :, c * 12 : c * 12 + 12] += 3.0
        return x.astype(np.float32), y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    spec = {
        "arch": "tiny-cnn",
        "width": 8,
        "labels": labels,
        "input_shape": [1, 1, frames, 64],
        "feature_mean": float(xtr.mean()),
        "feature_std": float(xtr.std()),
        "frontend": "logmel",
        "command": "convert.synthetic.make_cnn_folder",
        "data": "synthetic log-mel",
        "split": f"seed {seed}",
    }
    net = build_tiny_cnn(spec)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt = torch.from_numpy((xtr - spec["feature_mean"]) / spec["feature_std"])
    net.train()
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), torch.from_numpy(ytr)).backward()
        opt.step()
    net.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "head.pt")
    (folder / "head.json").write_text(json.dumps(spec, indent=1) + "\n")
    save_eval(folder / EVAL_NAME, xtr, xte, yte, labels)
    return folder
