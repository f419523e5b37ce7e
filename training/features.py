"""On-disk cache of backbone frame embeddings, per 2 s window of every clip.

Layout: cache/<backbone>/<variant>/<corpus>/chunk_NNNN.npz while extracting (resumable: a finished
chunk is never recomputed), then packed into frames.npy (float16 [windows, 4, 1024]),
speech.npy (float16 [windows, 4], AudioSet Speech score per frame; for a `roomN`/`babbleN` variant the seconds
of utterance the window covers instead, see training.scenes) and index.csv (path, first
window, window count). Frames are kept unpooled so every pooling and the attentive head can be
tried; pooling goes through edge_ser.pooling.pool_frames, the function the daemon uses.
A Whisper cache (training.whisper_states) holds one row per hidden state instead of per frame:
that state's frames already pooled by pool_frames(..., "mean_std"), since 100 frames x 5 states
per window would not fit on disk; its root's backbone.json says so.
A YAMNet cache made with window_level speech (SpeechLevel) holds the frames of each window after
edge_ser.speech_level.prepare, and keep.npy (bool [windows, frames]) marks the frames the daemon pools
(edge_ser.speech_level.speech_frames); every pooling of such a cache pools those frames only.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ser.errors import ModelError, UserError
from edge_ser.pooling import pool_frames
from edge_ser.speech_level import LEVELS, prepare, speech_frames
from training import scenes
from training.augment import augment
from training.loaders import Clip
from training.preprocess import load_audio, trim_silence, windows

CHUNK = 256
REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "cache"
YAMNET = REPO.parent / "shared" / "weights" / "yamnet" / "yamnet.tflite"


Backbone = Callable[[np.ndarray], tuple[np.ndarray, ...]]
"""What extract() runs per 2 s window: (rows to cache [n, dim], speech score per row), and for a
window_level speech backbone a third array, bool [n]: the rows the daemon pools."""


class Yamnet:
    """YAMNet TFLite: a 2 s window in, 4 frame embeddings and 4 Speech scores out."""

    def __init__(self, path: Path = YAMNET, num_threads: int = 1) -> None:
        if not Path(path).is_file():
            raise ModelError(f"YAMNet file not found: {path}")
        from ai_edge_litert.interpreter import Interpreter

        self._it = Interpreter(str(path), num_threads=num_threads)
        self._in = self._it.get_input_details()[0]["index"]
        outs = {o["name"]: o["index"] for o in self._it.get_output_details()}
        self._scores, self._emb = outs["Identity"], outs["Identity_1"]
        self._len = -1

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if window.size != self._len:
            self._it.resize_tensor_input(self._in, [window.size])
            self._it.allocate_tensors()
            self._len = window.size
        self._it.set_tensor(self._in, window.astype(np.float32))
        self._it.invoke()
        return self._it.get_tensor(self._emb).copy(), self._it.get_tensor(self._scores)[:, 0].copy()


class SpeechLevel:
    """A frame backbone (Yamnet) run as the daemon runs a model with window_level speech.

    The window goes through edge_ser.speech_level.prepare, the backbone sees the prepared samples, and
    the frames edge_ser.speech_level.speech_frames keeps are marked: (frames, scores, keep).
    """

    def __init__(self, backbone: Backbone) -> None:
        self._backbone = backbone

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        prepared = prepare(window)
        frames, scores = self._backbone(prepared.samples)[:2]
        return frames, scores, speech_mask_of(len(frames), prepared.speech)


def speech_mask_of(n_frames: int, speech: np.ndarray) -> np.ndarray:
    """bool [n_frames]: the frames speech_frames(frames, speech) selects, as a mask."""
    picked = speech_frames(np.arange(n_frames)[:, None], speech)[:, 0]
    keep = np.zeros(n_frames, bool)
    keep[picked] = True
    return keep


def clip_windows(clip_path: str, variant: str) -> np.ndarray:
    """Decode, (augment), trim at 25 dB and window one clip, as the cache sees it."""
    return variant_windows(clip_path, variant)[0]


def variant_windows(clip_path: str, variant: str,
                    babble: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """(windows, seconds of the utterance in each window or None when every window is all utterance).

    base: the trimmed clip; augN: augmented copy N (training.augment); roomN: copy N heard in a room,
    with pauses around it; babbleN: the same with `babble` (scenes.babble_pool) as one of its noises;
    talkN: with `babble` behind every copy (training.scenes).
    """
    wave = trim_silence(load_audio(clip_path))
    scene = scenes.scene_of(variant)
    if scene is not None:
        family, copy = scene
        return scenes.room_windows(wave, clip_path, copy, babble if family in scenes.BABBLE_SCENES else None,
                                   family)
    if variant != "base":  # "aug1", "aug2", ...: a deterministic augmented copy
        wave = trim_silence(augment(wave, clip_path, int(variant[3:])))
    return windows(wave), None


@dataclass
class CorpusCache:
    """The packed embeddings of one corpus and variant."""

    frames: np.ndarray
    """float16 [windows, frames, dim]."""
    speech: np.ndarray
    """float16 [windows, frames]: AudioSet Speech score."""
    index: dict[str, tuple[int, int]]
    """clip path -> (first window, window count)."""
    keep: np.ndarray | None = None
    """bool [windows, frames] in a window_level speech cache: the frames to pool; None: all of them."""


BACKBONE_FILE = "backbone.json"
"""In a cache root: which backbone made its features ({"backbone": name, ...}); absent = YAMNet."""


def backbone_of(cache: Path = DEFAULT_CACHE) -> str:
    """Name of the backbone whose features a cache root holds (its folder name inside the root)."""
    f = Path(cache) / BACKBONE_FILE
    if not f.is_file():
        return "yamnet"
    return str(json.loads(f.read_text())["backbone"])


def cache_layout(cache: Path = DEFAULT_CACHE) -> dict:
    """The cache root's backbone.json ({} for a YAMNet cache): backbone, encoder, and for hidden-state
    caches `states` (the encoder's state numbers, in row order) and `window_level`."""
    f = Path(cache) / BACKBONE_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def mark_cache(cache: Path, backbone: str, encoder: Path, window_level: str = "raw",
               states: tuple[int, ...] | None = None, rows: str = "") -> None:
    """Write the cache root's backbone.json (which backbone, which graph, which states, how rows are
    pooled); a cache made by another backbone, graph or window level is refused, never mixed into."""
    if window_level not in LEVELS:
        raise UserError(f"window level must be one of {', '.join(LEVELS)}, got {window_level!r}")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    mark = cache / BACKBONE_FILE
    new = {"backbone": backbone, "encoder": str(encoder), "window_level": window_level,
           "states": list(states) if states else None, "rows": rows}
    if mark.is_file():
        old = json.loads(mark.read_text())
        clash = [k for k in ("backbone", "encoder", "window_level") if old.get(k, "raw") != new[k]]
        if states and old.get("states") not in (None, list(states)):
            clash.append("states")
        if clash:
            raise UserError(f"{cache} holds features of another {', '.join(clash)} ({mark}); "
                            "use another --cache")
        if old.get("states") or not states:
            return
    mark.write_text(json.dumps(new, indent=1) + "\n")


YAMNET_SPEECH_ROWS = ("the backbone's frames of each window after edge_ser.speech_level.prepare; "
                      "keep.npy marks the speech frames the daemon pools")


def corpus_dir(corpus: str, variant: str = "base", cache: Path = DEFAULT_CACHE) -> Path:
    return Path(cache) / backbone_of(cache) / variant / corpus


def extract(clips: list[Clip], corpus: str, variant: str = "base", cache: Path = DEFAULT_CACHE,
            progress: bool = True, model: Backbone | None = None) -> Path:
    """Compute (or resume) the cache for the clips of one corpus; returns its folder."""
    from tqdm import tqdm

    out = corpus_dir(corpus, variant, cache)
    if (out / "index.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(clips, key=lambda c: c.path)
    scene = scenes.scene_of(variant)
    babble = scenes.babble_pool(clips, corpus) if scene and scene[0] in scenes.BABBLE_SCENES else ()
    model = model or Yamnet()
    dtype = getattr(model, "dtype", np.float16)  # a backbone may keep its rows in float32
    n_chunks = (len(clips) + CHUNK - 1) // CHUNK
    bar = tqdm(total=len(clips), desc=f"{corpus}/{variant}", disable=not progress, file=sys.stderr,
               mininterval=5)
    for ci in range(n_chunks):
        part = clips[ci * CHUNK:(ci + 1) * CHUNK]
        path = out / f"chunk_{ci:04d}.npz"
        if path.is_file():
            bar.update(len(part))
            continue
        embs, speech, keep, counts = [], [], [], []
        for c in part:
            w, covered = variant_windows(c.path, variant, babble)
            for i, x in enumerate(w):
                e, s, *k = model(x)
                embs.append(e)
                keep.extend(k)
                # room variants keep, in place of a speech score, the seconds of utterance per window
                speech.append(s if covered is None else np.full(len(e), covered[i], np.float32))
            counts.append(len(w))
            bar.update(1)
        tmp = out / f"chunk_{ci:04d}.{os.getpid()}.tmp.npz"
        marked = {"keep": np.stack(keep).astype(bool)} if keep else {}
        np.savez(tmp, frames=np.stack(embs).astype(dtype), speech=np.stack(speech).astype(np.float16),
                 counts=np.array(counts), paths=np.array([c.path for c in part]), **marked)
        tmp.rename(path)
    bar.close()
    _pack(out, n_chunks)
    return out


def _pack(out: Path, n_chunks: int) -> None:
    frames, speech, keep, rows, start = [], [], [], [], 0
    for ci in range(n_chunks):
        z = np.load(out / f"chunk_{ci:04d}.npz")
        frames.append(z["frames"])
        speech.append(z["speech"])
        if "keep" in z:
            keep.append(z["keep"])
        for p, n in zip(z["paths"], z["counts"], strict=True):
            rows.append((str(p), start, int(n)))
            start += int(n)
    np.save(out / "frames.npy", np.concatenate(frames))
    np.save(out / "speech.npy", np.concatenate(speech))
    if keep:
        if len(keep) != n_chunks:
            raise ModelError(f"{out}: only some chunks mark their speech frames; delete them, extract again")
        np.save(out / "keep.npy", np.concatenate(keep))
    with (out / "index.tmp.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "start", "count"])
        w.writerows(rows)
    (out / "index.tmp.csv").rename(out / "index.csv")
    for ci in range(n_chunks):
        (out / f"chunk_{ci:04d}.npz").unlink()


def load_cache(corpus: str, variant: str = "base", cache: Path = DEFAULT_CACHE) -> CorpusCache:
    """Memory-map a packed corpus cache.

    A cache root marked `standardise: corpus` (eGeMAPS, training.egemaps) is loaded into memory with
    every column z-scored by this corpus's (and variant's) own statistics over all its cached windows.
    """
    d = corpus_dir(corpus, variant, cache)
    if not (d / "index.csv").is_file():
        raise ModelError(f"no embedding cache at {d}; run `python -m training extract` first")
    with (d / "index.csv").open(newline="") as fh:
        index = {r["path"]: (int(r["start"]), int(r["count"])) for r in csv.DictReader(fh)}
    keep = np.load(d / "keep.npy") if (d / "keep.npy").is_file() else None
    layout = cache_layout(cache)
    if keep is None and layout.get("window_level") == "speech" and layout.get("backbone") == "yamnet":
        raise ModelError(f"{d} is in a window_level speech cache but has no keep.npy; extract it again")
    frames = np.load(d / "frames.npy", mmap_mode="r")
    if layout.get("standardise") == "corpus":
        from training.egemaps import standardise_corpus

        frames = standardise_corpus(frames)
    return CorpusCache(frames, np.load(d / "speech.npy", mmap_mode="r"), index, keep)


def pool_windows(frames: np.ndarray, pooling: str, keep: np.ndarray | None = None) -> np.ndarray:
    """[windows, pooled_dim]: pool_frames over each window's frames (only the `keep` ones when given,
    as the daemon pools a window_level speech model's speech frames); vectorised for mean."""
    f = np.asarray(frames, dtype=np.float32)
    if keep is None:
        if pooling == "mean":
            return f.mean(axis=1)
        return np.stack([pool_frames(w, pooling) for w in f])
    k = np.asarray(keep, dtype=bool)
    if pooling == "frames":
        raise UserError("frame-level heads (pooling frames) cannot be trained on a window_level speech "
                        "cache: the daemon pools only its speech frames")
    if pooling == "mean":
        return ((f * k[..., None]).sum(axis=1) / k.sum(axis=1, keepdims=True)).astype(np.float32)
    return np.stack([pool_frames(w[m], pooling) for w, m in zip(f, k, strict=True)])


def pooled_windows(cc: CorpusCache, path: str, pooling: str = "mean") -> np.ndarray:
    """[windows, pooled_dim]: each 2 s window pooled exactly as the daemon pools it."""
    s, n = cc.index[path]
    return pool_windows(cc.frames[s : s + n], pooling, None if cc.keep is None else cc.keep[s : s + n])
