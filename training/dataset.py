"""Assemble pooled window features + labels for a protocol split from the embedding cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ser.errors import UserError
from edge_ser.features import parse_state_pooling, pool_frames
from training import features as feat
from training.loaders import MERGED_LABELS, Clip


@dataclass
class Part:
    """Windows of one split: X[w] pooled features, clip[w] index into the clip arrays."""

    x: np.ndarray
    """float32 [windows, dim] (or [windows, frames, dim] for frame-level heads)."""
    clip: np.ndarray
    """int [windows]: which clip each window comes from (index into y/corpus/speaker)."""
    y: np.ndarray
    """int [clips]: label index per clip."""
    corpus: np.ndarray
    """str [clips]."""
    speaker: np.ndarray
    """str [clips]."""
    paths: list[str] = field(default_factory=list)
    """Clip paths, in clip order."""

    @property
    def n_clips(self) -> int:
        return len(self.y)


def label_set(clips: list[Clip], classes: str) -> tuple[str, ...]:
    if classes == "merged":
        return MERGED_LABELS
    if classes == "original":
        return tuple(sorted({c.label for c in clips}))
    raise UserError(f"classes must be merged or original, not {classes!r}")


def _pool_all(frames: np.ndarray, pooling: str) -> np.ndarray:
    """pool_frames over every window; vectorised for mean, the shared function otherwise.

    `method@k+j` reads a hidden-state cache (one mean_std row per state, see training.features):
    the chosen states' rows concatenated, which is what edge_ser.features.pool_states gives the
    daemon for a backbone that outputs those states; method mean keeps each row's first half.
    """
    f = np.asarray(frames, dtype=np.float32)
    if "@" in pooling:
        method, states = parse_state_pooling(pooling)
        rows = f[:, list(states), :]
        if method == "mean":
            rows = rows[..., : rows.shape[-1] // 2]
        return rows.reshape(len(rows), -1)
    if pooling == "frames":
        return f
    if pooling == "mean":
        return f.mean(axis=1)
    return np.stack([pool_frames(w, pooling) for w in f])


def build_part(clips: list[Clip], labels: tuple[str, ...], classes: str, pooling: str,
               variants: tuple[str, ...] = ("base",), cache: Path = feat.DEFAULT_CACHE,
               _caches: dict | None = None) -> Part:
    """Pooled features for every window of every clip (and of each augmented variant given)."""
    caches = _caches if _caches is not None else {}
    lab = {name: i for i, name in enumerate(labels)}
    xs, cl, y, corpus, speaker, paths = [], [], [], [], [], []
    by_corpus: dict[str, list[Clip]] = {}
    for c in clips:
        by_corpus.setdefault(c.corpus, []).append(c)
    for name, cc in by_corpus.items():
        for variant in variants:
            key = (name, variant)
            if key not in caches:
                caches[key] = feat.load_cache(name, variant, cache)
            store = caches[key]
            rows, owner = [], []
            for c in cc:
                target = c.merged if classes == "merged" else c.label
                if target not in lab or c.path not in store.index:
                    continue
                s, n = store.index[c.path]
                rows.extend(range(s, s + n))
                owner.extend([len(y)] * n)
                y.append(lab[target])
                corpus.append(c.corpus)
                speaker.append(c.speaker)
                paths.append(c.path)
            if rows:
                xs.append(_pool_all(store.frames[np.array(rows)], pooling))
                cl.append(np.array(owner))
    if not y:
        raise UserError("no clips with cached features for this split")
    return Part(np.concatenate(xs), np.concatenate(cl), np.array(y), np.array(corpus), np.array(speaker),
                paths)
