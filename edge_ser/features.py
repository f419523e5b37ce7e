"""Pooling of backbone frame embeddings into one feature vector per window.

Training (training/) and serving (edge_ser.model) both call `pool_frames`, so a head always sees
features computed exactly the way it was trained on.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("mean", "mean_max", "mean_std")


def pool_frames(frames: np.ndarray, method: str = "mean") -> np.ndarray:
    """Pool [n_frames, dim] embeddings into one float32 vector.

    mean: [dim]; mean_max: [2*dim] (mean then max); mean_std: [2*dim] (mean then std).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames[None, :]
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise ValueError(f"expected [n_frames, dim] embeddings, got shape {frames.shape}")
    mean = frames.mean(axis=0)
    if method == "mean":
        return mean
    if method == "mean_max":
        return np.concatenate([mean, frames.max(axis=0)])
    if method == "mean_std":
        return np.concatenate([mean, frames.std(axis=0)])
    raise ValueError(f"unknown pooling {method!r}; expected one of {', '.join(POOLINGS)}")


def pooled_dim(dim: int, method: str) -> int:
    """Length of the vector `pool_frames` returns for `dim`-wide frames."""
    return dim if method == "mean" else 2 * dim
