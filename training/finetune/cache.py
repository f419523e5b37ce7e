"""The frozen trunk's output, cached once per clip window: layer-14 depthwise features and the frozen
pointwise conv's pre-activations, memory-mapped."""

from __future__ import annotations

import json
import os
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from training.loaders import Clip

from . import DEFAULT_CACHE, DEFAULT_TFLITE

CHUNK = 128
POSITIONS = 24  # 4 patches x (3 x 2) positions of layer 14's feature map per 2 s window
DIM = 1024


def _seed(path: str, copy: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(path.encode()), copy, 7])


def spec_augment(
    patches: np.ndarray,
    rng: np.random.Generator,
    freq_masks: int = 2,
    max_f: int = 8,
    time_masks: int = 2,
    max_t: int = 12,
) -> np.ndarray:
    """SpecAugment on log-mel patches [n, 96, 64]: masked cells get the patch's mean."""
    out = patches.copy()
    for p in out:
        fill = p.mean()
        for _ in range(freq_masks):
            w = rng.integers(0, max_f + 1)
            s = rng.integers(0, 64 - w + 1)
            p[:, s : s + w] = fill
        for _ in range(time_masks):
            w = rng.integers(0, max_t + 1)
            s = rng.integers(0, 96 - w + 1)
            p[s : s + w, :] = fill
    return out


class Trunk:
    """Frozen part: 2 s windows -> layer-14 depthwise features [n, 24, 1024] (float16)."""

    def __init__(self, tflite: Path = DEFAULT_TFLITE, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from training.yamnet_model import LogMelFrontend
        from training.yamnet_tflite import trunk_bytes

        self.frontend = LogMelFrontend(tflite_mel=True)
        from training.tflite_weights import yamnet_arrays

        self.frontend.mel.copy_(torch.from_numpy(np.array(yamnet_arrays(tflite)["frontend.mel"])))
        self.interp = Interpreter(model_content=trunk_bytes(tflite), num_threads=threads)
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]
        self.n = -1

    def patches(self, wins: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.frontend(torch.from_numpy(wins)).numpy()  # [n, 4, 96, 64]

    def features(self, patches: np.ndarray) -> np.ndarray:
        n = patches.shape[0] * patches.shape[1]
        if n != self.n:
            self.interp.resize_tensor_input(self.inp, [n, 96, 64, 1])
            self.interp.allocate_tensors()
            self.n = n
        self.interp.set_tensor(self.inp, patches.reshape(n, 96, 64, 1).astype(np.float32))
        self.interp.invoke()
        feats = self.interp.get_tensor(self.out)  # [n, 3, 2, 1024]
        return feats.reshape(patches.shape[0], POSITIONS, DIM).astype(np.float16)


def cache_clip(trunk: Trunk, clip: Clip, variant: str) -> np.ndarray:
    """Features of one clip: every window (base) or one augmented, SpecAugmented window (augN)."""
    from training.features import clip_windows

    wins = clip_windows(clip.path, variant)
    patches = trunk.patches(wins)
    if variant != "base":
        rng = _seed(clip.path, int(variant[3:]))
        k = int(rng.integers(0, len(wins)))
        patches = spec_augment(patches[k : k + 1].reshape(-1, 96, 64), rng).reshape(1, -1, 96, 64)
    return trunk.features(patches)


def budget_subset(clips: list[Clip], cap: int) -> list[Clip]:
    """At most `cap` clips per corpus, each label keeping its share (seeded by corpus and label).

    For a machine too busy to cache all 22k clips (measured: 30 s per 128 clips at nice 10 under a
    load of 8; 1.7 s per 128 clips on an otherwise idle 2-core machine, where the whole of All+ takes
    about 5 minutes per variant). A run on a subset says so in its records (`data`).
    """
    by_corpus: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_corpus[c.corpus].append(c)
    keep: list[Clip] = []
    for corpus, cc in by_corpus.items():
        if len(cc) <= cap:
            keep += cc
            continue
        by_label: dict[str, list[Clip]] = defaultdict(list)
        for c in cc:
            by_label[c.label].append(c)
        for label, lc in sorted(by_label.items()):
            k = round(cap * len(lc) / len(cc))
            order = np.random.default_rng([zlib.crc32(f"{corpus}/{label}".encode()), 11]).permutation(len(lc))
            keep += [lc[i] for i in sorted(order[:k])]
    return sorted(keep, key=lambda c: (c.corpus, c.path))


def build_cache(
    variant: str,
    corpora: str = "all+",
    root: Path | None = None,
    cache: Path = DEFAULT_CACHE,
    tflite: Path = DEFAULT_TFLITE,
    limit: int = 0,
    max_per_corpus: int = 0,
) -> Path:
    """Compute (or resume) the trunk features of every clip; packs feats.npy + index.json at the end."""
    from training import window_cache
    from training.loaders import default_corpora_root, load_set

    root = Path(root or default_corpora_root()).resolve()
    folder = cache / variant
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "index.json").is_file():
        return folder
    clips = sorted(load_set(corpora.split(","), root), key=lambda c: (c.corpus, c.path))
    if max_per_corpus:
        clips = budget_subset(clips, max_per_corpus)
    if limit:
        clips = window_cache.first_per_label(clips, limit)
    torch.set_num_threads(1)  # the frontend is tiny; more threads only spin on a shared machine
    trunk = Trunk(tflite)
    window_cache.build(folder, "feats", clips, root, lambda c: cache_clip(trunk, c, variant),
                       (POSITIONS, DIM), f"trunk features {variant}", CHUNK)
    ensure_pre(folder, tflite)
    return folder


def layer14_pw(tflite: Path = DEFAULT_TFLITE) -> tuple[np.ndarray, np.ndarray]:
    """YAMNet's last pointwise conv as a matrix [out, in] and bias, dequantized from the file."""
    from training.tflite_weights import yamnet_arrays

    arrays = yamnet_arrays(tflite)
    weight, bias = arrays["backbone.layer14.pw.weight"], arrays["backbone.layer14.pw.bias"]
    return np.array(weight[:, :, 0, 0]), np.array(bias)


def ensure_pre(folder: Path, tflite: Path = DEFAULT_TFLITE, chunk: int = 512) -> None:
    """pre.npy = W x + b of the frozen pointwise conv for every cached row (float16, once per variant),
    so a training step only computes the low-rank update (about 15x fewer multiplications)."""
    if (folder / "pre.npy").is_file():
        return
    feats = np.load(folder / "feats.npy", mmap_mode="r")
    w, b = (torch.from_numpy(a) for a in layer14_pw(tflite))
    tmp = folder / f"pre.{os.getpid()}.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=feats.shape)
    with torch.no_grad():
        for s in range(0, len(feats), chunk):
            x = torch.from_numpy(np.asarray(feats[s : s + chunk], dtype=np.float32))
            out[s : s + chunk] = (x @ w.T + b).numpy().astype(np.float16)
    out.flush()
    del out
    tmp.rename(folder / "pre.npy")


class Store:
    """One cached variant: trunk features and frozen pre-activations [rows, 24, 1024] float16
    (memory-mapped) + clip path -> (first row, count)."""

    def __init__(self, folder: Path, root: Path, tflite: Path = DEFAULT_TFLITE) -> None:
        meta = json.loads((folder / "index.json").read_text())
        ensure_pre(folder, tflite)
        self.feats = np.load(folder / "feats.npy", mmap_mode="r")
        self.pre = np.load(folder / "pre.npy", mmap_mode="r")
        self.index = {str((root / rel).resolve()): tuple(v) for rel, v in meta["clips"].items()}

    def rows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(rows)
        return (
            torch.from_numpy(np.asarray(self.feats[rows], dtype=np.float32)),
            torch.from_numpy(np.asarray(self.pre[rows], dtype=np.float32)),
        )
