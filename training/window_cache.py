"""A resumable on-disk cache of per-window arrays of many clips: <name>.npy + index.json.

Used by the fine-tune trunk features (finetune/cache.py) and the log-mel CNN (logmel_cnn.py): chunks of
clips are computed into chunk_NNNN.npz files (a finished chunk is never recomputed), then packed
into one float16 array [windows, *row_shape] and an index {clip path relative to root: [first, n]}.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.loaders import Clip


def first_per_label(clips: list[Clip], limit: int) -> list[Clip]:
    """The first `limit` clips of each (corpus, label): tiny subsets for tests."""
    seen: dict[tuple[str, str], int] = {}
    keep = []
    for c in clips:
        seen[(c.corpus, c.label)] = seen.get((c.corpus, c.label), 0) + 1
        if seen[(c.corpus, c.label)] <= limit:
            keep.append(c)
    return keep


def build(folder: Path, name: str, clips: list[Clip], root: Path, compute: Callable[[Clip], np.ndarray],
          row_shape: tuple[int, ...], desc: str, chunk: int) -> None:
    """compute(clip) -> [n_windows, *row_shape] for every clip; writes folder/<name>.npy + index.json."""
    from tqdm import tqdm

    n_chunks = math.ceil(len(clips) / chunk)
    for k in tqdm(range(n_chunks), desc=desc, unit="chunk", file=sys.stderr):
        path = folder / f"chunk_{k:04d}.npz"
        if path.is_file():
            continue
        rows = [compute(c) for c in clips[k * chunk : (k + 1) * chunk]]
        np.savez(folder / "tmp.npz", rows=np.concatenate(rows).astype(np.float16),
                 counts=np.array([len(r) for r in rows]))
        (folder / "tmp.npz").rename(path)
    counts = [np.load(folder / f"chunk_{k:04d}.npz")["counts"] for k in range(n_chunks)]
    total = int(sum(c.sum() for c in counts))
    tmp = folder / f"{name}.tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(total, *row_shape))
    row = 0
    for k in range(n_chunks):
        part = np.load(folder / f"chunk_{k:04d}.npz")["rows"]
        out[row : row + len(part)] = part
        row += len(part)
    out.flush()
    del out
    tmp.rename(folder / f"{name}.npy")
    flat = np.concatenate(counts)
    starts = np.concatenate([[0], np.cumsum(flat)[:-1]])
    index = {Path(c.path).resolve().relative_to(root).as_posix(): [int(s), int(n)]
             for c, s, n in zip(clips, starts, flat, strict=True)}
    (folder / "index.json").write_text(json.dumps({"root": str(root), "clips": index}))
    for k in range(n_chunks):
        (folder / f"chunk_{k:04d}.npz").unlink()
