"""Assemble pooled window features + labels for a protocol split from the embedding cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ser.errors import UserError
from edge_ser.labels import FOREGROUND, FOREGROUND_LABELS, NEUTRAL
from edge_ser.pooling import parse_state_pooling
from training import features as feat
from training.loaders import MERGED_LABELS, Clip
from training.scenes import PAUSE, SPEECH, scene_of, window_roles


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
    if classes == "foreground":
        return FOREGROUND_LABELS
    raise UserError(f"classes must be merged, original or foreground, not {classes!r}")


def _pool_all(frames: np.ndarray, pooling: str, layout: dict | None = None,
              keep: np.ndarray | None = None) -> np.ndarray:
    """pool_frames over every window (over its `keep` frames in a window_level speech frame cache, see
    training.features.pool_windows); vectorised for mean, the shared function otherwise.

    `method@k+j` reads a hidden-state cache (one mean_std row per state, see training.features):
    the rows of encoder states k and j concatenated, which is what edge_ser.pooling.pool_states gives
    the daemon for a backbone that outputs those states; method mean keeps each row's first half.
    In a window_level speech cache those are the rows pooled over speech frames only, as the daemon
    pools for such a model.
    """
    f = np.asarray(frames, dtype=np.float32)
    if "@" in pooling:
        method, states = parse_state_pooling(pooling)
        rows = f[:, state_rows(states, layout or {}, f.shape[1]), :]
        if method == "mean":
            rows = rows[..., : rows.shape[-1] // 2]
        return rows.reshape(len(rows), -1)
    if pooling == "frames" and keep is None:
        return f
    return feat.pool_windows(f, pooling, keep)


def state_rows(states: tuple[int, ...], layout: dict, n_rows: int) -> list[int]:
    """Cache rows of encoder states `states` (see training.whisper_states for the row order)."""
    speech = layout.get("window_level", "raw") == "speech"
    numbers = list(layout.get("states") or range(n_rows // 2 if speech else n_rows))
    missing = [k for k in states if k not in numbers]
    if missing:
        raise UserError(f"the feature cache holds encoder states {numbers}, not {missing}")
    return [numbers.index(k) + (len(numbers) if speech else 0) for k in states]


@dataclass(frozen=True)
class Fuse:
    """A second feature cache whose pooled rows are appended to each window's row (feature fusion).

    Both caches must hold the same clips cut into the same windows (the daemon's windower on the
    same trimmed clip): a window's fused row is [pooled row of `cache` | pooled row of this cache].
    """

    cache: Path
    pooling: str

    @classmethod
    def parse(cls, text: str) -> Fuse:
        """CACHE:POOLING (`cache/yamnet-speech:mean`)."""
        cache, sep, pooling = str(text).rpartition(":")
        if not sep or not cache or not pooling or pooling == "frames":
            raise UserError(f"expected CACHE:POOLING (a pooling to one row per window) for the fused "
                            f"cache, got {text!r}")
        return cls(Path(cache), pooling)

    def describe(self) -> dict:
        return {"cache": str(self.cache), "pooling": self.pooling, "backbone": feat.backbone_of(self.cache),
                "window_level": feat.cache_layout(self.cache).get("window_level", "raw")}


def build_part(clips: list[Clip], labels: tuple[str, ...], classes: str, pooling: str,
               variants: tuple[str, ...] = ("base",), cache: Path = feat.DEFAULT_CACHE,
               _caches: dict | None = None, fuse: Fuse | None = None) -> Part:
    """Pooled features for every window of every clip (and of each augmented variant given).

    With `fuse`, each window's row is followed by the same window's pooled row from the second cache.
    """
    caches = _caches if _caches is not None else {}
    layout = feat.cache_layout(cache)
    if fuse is not None and pooling == "frames":
        raise UserError("feature fusion needs a pooling to one row per window, not frames")
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
            rows, rows2, owner = [], [], []
            for c, label, picked, path in _windows_of(cc, store, variant, classes, lab):
                rows.extend(picked)
                if fuse is not None:
                    rows2.extend(_aligned_rows(fuse, name, variant, store, c, picked, caches))
                owner.extend([len(y)] * len(picked))
                y.append(label)
                corpus.append(c.corpus)
                speaker.append(c.speaker)
                paths.append(path)
            if rows:
                x = _pooled(store, rows, pooling, layout)
                if fuse is not None:
                    other = caches[(str(fuse.cache), name, variant)]
                    x2 = _pooled(other, rows2, fuse.pooling, feat.cache_layout(fuse.cache))
                    x = np.concatenate([x, x2], axis=1)
                xs.append(x)
                cl.append(np.array(owner))
    if not y:
        raise UserError("no clips with cached features for this split")
    return Part(np.concatenate(xs), np.concatenate(cl), np.array(y), np.array(corpus), np.array(speaker),
                paths)


def _pooled(store: feat.CorpusCache, rows: list[int], pooling: str, layout: dict) -> np.ndarray:
    """The cache rows `rows` (windows) of one corpus and variant, pooled (over their speech frames in a
    cache that marks them)."""
    picked = np.array(rows)
    keep = None if store.keep is None else store.keep[picked]
    return _pool_all(store.frames[picked], pooling, layout, keep)


def _aligned_rows(fuse: Fuse, corpus: str, variant: str, first: feat.CorpusCache, clip: Clip,
                  picked: list[int], caches: dict) -> list[int]:
    """The second cache's rows of the windows `picked` (rows of the first cache) of one clip."""
    key = (str(fuse.cache), corpus, variant)
    if key not in caches:
        caches[key] = feat.load_cache(corpus, variant, fuse.cache)
    other = caches[key]
    s, n = first.index[clip.path]
    if clip.path not in other.index:
        raise UserError(f"fused caches disagree: {clip.path} ({corpus}/{variant}) is not in {fuse.cache}")
    s2, n2 = other.index[clip.path]
    if n2 != n:
        raise UserError(f"fused caches disagree: {clip.path} ({corpus}/{variant}) has {n} windows in one "
                        f"cache and {n2} in {fuse.cache}; both must be cut into the same windows")
    return [s2 + r - s for r in picked]


def _windows_of(clips: list[Clip], store: feat.CorpusCache, variant: str, classes: str,
                lab: dict[str, int]) -> list[tuple[Clip, int, list[int], str]]:
    """(clip, label index, cache rows, path) per labelled group of windows of one cached variant.

    A room copy's pause windows (almost none of the utterance in them, training.scenes) form a group
    of their own labelled neutral, or are left out when the label set has no neutral; its windows
    holding a little of the utterance are left out.
    """
    out = []
    for c in clips:
        target = {"merged": c.merged, "foreground": FOREGROUND}.get(classes, c.label)
        if target not in lab or c.path not in store.index:
            continue
        s, n = store.index[c.path]
        if scene_of(variant) is None:
            out.append((c, lab[target], list(range(s, s + n)), c.path))
            continue
        covered = np.asarray(store.speech[s : s + n, 0], np.float32)
        roles = window_roles(covered, float(covered.max()))
        if (roles == SPEECH).any():
            out.append((c, lab[target], [s + int(i) for i in np.flatnonzero(roles == SPEECH)], c.path))
        if (roles == PAUSE).any() and NEUTRAL in lab:
            out.append((c, lab[NEUTRAL], [s + int(i) for i in np.flatnonzero(roles == PAUSE)],
                        f"{c.path}#pause"))
    return out
