"""Real 2 s windows for Whisper parity checks: speaker-independent test clips of the shared corpora.

convert/ does not import training/, so the few lines that find a clip's speaker are restated here
for the corpora under ../shared/corpora (the same file-name rules as training's loaders); the
speakers come from training/splits/speaker_independent.json (fold 0), read as plain JSON. Windows
are cut with the daemon's own windower and only windows the daemon would classify (RMS at or above
its silence gate) are kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from artefact.manifest import REPO
from edge_ser.errors import UserError
from edge_ser.windows import cut_windows

SPLIT_JSON = REPO / "training" / "splits" / "speaker_independent.json"
CORPORA_ROOT = REPO.parent / "shared" / "corpora"
RATE = 16000
WINDOW = 32000
HOP = 16000
SILENCE_RMS = 0.01
"""The daemon's silence gate: quieter windows never reach the model."""
AUDIO = (".wav", ".opus", ".ogg", ".flac", ".mp3")


def _field(sep: str, n: int, i: int, keep: Callable[[list[str]], bool] = lambda f: True):
    def speaker(p: Path) -> str | None:
        f = p.stem.split(sep)
        return f[i] if len(f) == n and keep(f) else None
    return speaker


SPEAKERS: dict[str, tuple[str, Callable[[Path], str | None]]] = {
    "tess": ("tess/TESS Toronto emotional speech set data", lambda p: p.parent.name.split("_")[0].upper()),
    "ravdess": ("ravdess/Audio_Speech_Actors_01-24", _field("-", 7, 6, lambda f: f[:2] == ["03", "01"])),
    "savee": ("savee/AudioData", lambda p: p.parent.name if re.match(r"[a-z]+\d+$", p.stem) else None),
    "crema-d": ("crema-d/AudioWAV", lambda p: p.stem.split("_")[0] if len(p.stem.split("_")) >= 3 else None),
    "banglaser": ("banglaser", _field("-", 7, 6, lambda f: f[2] in ("01", "02", "03", "04", "05"))),
    "nemo": ("nemo/samples", _field("_", 3, 0)),
    "turev-db": ("turev-db/Sound Source", lambda p: p.stem.split("_")[0]),
    "ased": ("ased", _field("-", 5, 4)),
}
"""corpus -> (folder under the corpora root, file path -> speaker or None for files that are skipped)."""


def test_clips(corpora: list[str] | None = None, split: Path = SPLIT_JSON, root: Path = CORPORA_ROOT,
               fold: int = 0) -> dict[str, list[Path]]:
    """Audio files of each corpus's test speakers (corpora present on disk; all known ones by default)."""
    if not split.is_file():
        raise UserError(f"speaker split not found: {split}")
    folds = json.loads(split.read_text())
    out = {}
    for corpus in corpora or list(SPEAKERS):
        if corpus not in SPEAKERS or corpus not in folds:
            continue
        sub, speaker_of = SPEAKERS[corpus]
        if not (root / sub).is_dir():
            continue
        test = set(folds[corpus][min(fold, len(folds[corpus]) - 1)]["test"])
        files = sorted(p for p in (root / sub).rglob("*") if p.suffix.lower() in AUDIO and p.is_file())
        picked = [p for p in files if (s := speaker_of(p)) is not None and f"{corpus}:{s}" in test]
        if picked:
            out[corpus] = picked
    if not out:
        raise UserError(f"no test-speaker clips found under {root} (split {split})")
    return out


def load_audio(path: Path) -> np.ndarray:
    """float32 mono at 16 kHz."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise UserError(f"cannot decode {path}: {exc}") from None
    mono = data.mean(axis=1)
    if sr != RATE:
        mono = soxr.resample(mono, sr, RATE, quality="VHQ")
    return np.ascontiguousarray(mono, np.float32)


def windows_from(files: list[Path], n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Up to n windows [n, 32000], at most one per file, files visited in a seeded order.

    One window per clip spreads the check over as many speakers, sentences and emotions as possible.
    """
    rng = np.random.default_rng(seed)
    out, names = [], []
    for i in rng.permutation(len(files)):
        if len(out) >= n:
            break
        wins = cut_windows(load_audio(files[i]), WINDOW, HOP)
        loud = [w for w in wins if np.sqrt(np.mean(np.square(w, dtype=np.float64))) >= SILENCE_RMS]
        if loud:
            out.append(loud[rng.integers(len(loud))])
            names.append(str(files[i]))
    if not out:
        raise UserError("no window above the silence gate in the given audio")
    return np.stack(out).astype(np.float32), names


def test_windows(n: int = 300, corpora: list[str] | None = None, seed: int = 0,
                 root: Path = CORPORA_ROOT, split: Path = SPLIT_JSON) -> tuple[np.ndarray, str]:
    """About n windows of test-speaker clips, shared evenly over the corpora; (windows, description)."""
    clips = test_clips(corpora, split, root)
    per = int(np.ceil(n / len(clips)))
    parts = [windows_from(files, per, seed)[0] for files in clips.values()]
    x = np.concatenate(parts)[:n]
    desc = (f"{len(x)} windows of 2 s (one per clip, seed {seed}) from test-speaker clips of "
            f"{', '.join(clips)} ({split.name}, fold 0)")
    return x, desc


def file_windows(paths: list[Path], n: int = 300, seed: int = 0) -> tuple[np.ndarray, str]:
    """Windows from the user's own audio files or folders."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO and q.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"audio path not found: {p}")
    if not files:
        raise UserError("no audio files in the given --audio paths")
    x, _ = windows_from(files, n, seed)
    return x, f"{len(x)} windows of 2 s (one per file, seed {seed}) from {len(files)} given audio files"
