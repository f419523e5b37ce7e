"""Metrics (accuracy, macro-F1, UAR, per-class recall, confusion matrix) and confusion-matrix PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser.labels import EMOTIONS


def confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (y, pred), 1)
    return cm


def metrics(y: np.ndarray, pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """accuracy, macro_f1, uar over all labels; for merged labels also uar4 (the 4 emotions only,
    clips of the 4 emotions, a neutral answer counts as wrong), the cross-corpus metric."""
    n = len(labels)
    cm = confusion(y, pred, n)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    present = support > 0
    out = {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "n_test": int(cm.sum()),
        "per_class_recall": {labels[i]: float(recall[i]) for i in range(n) if present[i]},
        "confusion": cm.tolist(),
        "labels": list(labels),
    }
    emo = [i for i, name in enumerate(labels) if name in EMOTIONS and present[i]]
    if len(emo) == len(EMOTIONS) or (emo and set(labels) >= set(EMOTIONS)):
        out["uar4"] = float(recall[emo].mean())
    return out


def pooled_metrics(y: np.ndarray, pred: np.ndarray, corpus: np.ndarray,
                   labels: tuple[str, ...]) -> tuple[dict, dict]:
    """Metrics of all test clips, and the main ones per test corpus."""
    per_corpus = {}
    for c in np.unique(corpus):
        mc = metrics(y[corpus == c], pred[corpus == c], labels)
        per_corpus[str(c)] = {k: mc.get(k) for k in ("accuracy", "macro_f1", "uar", "uar4", "n_test")}
    return metrics(y, pred, labels), per_corpus


def clip_probs(win_probs: np.ndarray, clip: np.ndarray, n_clips: int) -> np.ndarray:
    """Average window probabilities per clip (a clip longer than 2 s is several daemon windows)."""
    out = np.zeros((n_clips, win_probs.shape[1]))
    np.add.at(out, clip, win_probs)
    counts = np.bincount(clip, minlength=n_clips)[:, None]
    return out / np.maximum(counts, 1)


def plot_confusion(cm: np.ndarray | list, labels: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.0 * len(labels) + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
