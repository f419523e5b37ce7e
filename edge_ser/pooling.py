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


def pool_states(states: np.ndarray, method: str = "mean") -> np.ndarray:
    """Pool [n_states, n_frames, dim] hidden states state by state and concatenate them.

    For backbones that return several layers' hidden states (the Whisper encoder graph): the head
    sees [n_states * pooled_dim], states in the order the backbone returns them.
    """
    states = np.asarray(states, dtype=np.float32)
    if states.ndim != 3:
        raise ValueError(f"expected [n_states, n_frames, dim] hidden states, got shape {states.shape}")
    return np.concatenate([pool_frames(s, method) for s in states])


def parse_state_pooling(pooling: str) -> tuple[str, tuple[int, ...]]:
    """Training's name for pooling chosen hidden states: "mean_std@1+2" -> ("mean_std", (1, 2))."""
    method, _, states = pooling.partition("@")
    try:
        picked = tuple(int(k) for k in states.split("+"))
    except ValueError:
        picked = ()
    if method not in ("mean", "mean_std") or not picked or min(picked) < 0:
        raise ValueError(f"state pooling must look like mean_std@2 or mean@1+2, got {pooling!r}")
    return method, picked
