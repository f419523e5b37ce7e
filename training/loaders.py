"""Corpus loaders: every corpus becomes a list of `Clip` records with merged labels.

Each loader parses the corpus's own folder layout and file names (extension-agnostic, so the
published WAV release and the Opus copies under ../shared/corpora both load). Speakers are
prefixed with the corpus name so speaker ids never collide across corpora.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_ser.errors import UserError
from edge_ser.labels import EMOTIONS, NEUTRAL

AUDIO_EXTS = (".wav", ".opus", ".ogg", ".flac", ".mp3")

MERGED_LABELS: tuple[str, ...] = (*EMOTIONS, NEUTRAL)
"""The daemon's output classes in head output order: the four emotions, then neutral."""

# Original (normalised) label -> merged class, paper section 3.5; calm counts as neutral.
MERGE: dict[str, str] = {
    "angry": "anger_disgust",
    "disgust": "anger_disgust",
    "fear": "fear_surprise",
    "surprise": "fear_surprise",
    "happy": "happiness",
    "sad": "sadness",
    "neutral": NEUTRAL,
    "calm": NEUTRAL,
}

# Spellings found in corpora and users' folders -> normalised original label.
SYNONYMS: dict[str, str] = {
    "anger": "angry", "ang": "angry", "a": "angry", "angry": "angry", "kz": "angry",
    "disgust": "disgust", "dis": "disgust", "disgusted": "disgust", "d": "disgust",
    "fear": "fear", "fea": "fear", "fearful": "fear", "f": "fear", "scared": "fear",
    "surprise": "surprise", "surprised": "surprise", "ps": "surprise", "su": "surprise",
    "pleasant_surprise": "surprise", "pleasant_surprised": "surprise",
    "happy": "happy", "hap": "happy", "happiness": "happy", "h": "happy", "joy": "happy", "mt": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad", "hl": "sad",
    "neutral": "neutral", "neu": "neutral", "n": "neutral",
    "calm": "calm", "sk": "calm",
}


@dataclass(frozen=True)
class Clip:
    """One labelled recording."""

    path: str
    """Absolute path of the audio file."""
    corpus: str
    """Corpus id (tess, ravdess, ..., or the user's name for a generic set)."""
    speaker: str
    """Speaker id, prefixed with the corpus (``ravdess:17``)."""
    label: str
    """Original label, normalised (angry, disgust, fear, surprise, happy, sad, neutral, calm)."""
    merged: str | None
    """Merged class (one of MERGED_LABELS), None if the original label has no merged class."""
    language: str
    """ISO 639-1 language code."""


def normalise_label(raw: str) -> str:
    """Map a corpus or user spelling of an emotion to the normalised original label."""
    key = raw.strip().lower().replace(" ", "_").replace("-", "_")
    return SYNONYMS.get(key, key)


def _clip(path: Path, corpus: str, speaker: str, raw_label: str, language: str) -> Clip:
    label = normalise_label(raw_label)
    return Clip(str(path), corpus, f"{corpus}:{speaker}", label, MERGE.get(label), language)


def _audio_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"corpus folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file())
    if not files:
        raise UserError(f"no audio files ({', '.join(AUDIO_EXTS)}) under {root}")
    return files


def load_tess(root: Path) -> list[Clip]:
    # OAF_happy/OAF_back_happy: speaker from the folder (one file is misnamed OA_...), emotion from
    # the file suffix (ps = pleasant surprise).
    return [_clip(p, "tess", p.parent.name.split("_")[0].upper(), p.stem.split("_")[-1], "en")
            for p in _audio_files(root)]


_RAVDESS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fear", "07": "disgust", "08": "surprise"}


def load_ravdess(root: Path) -> list[Clip]:
    out = []
    for p in _audio_files(root):
        f = p.stem.split("-")
        if len(f) != 7 or f[0] != "03" or f[1] != "01":  # speech, audio-only files only
            continue
        out.append(_clip(p, "ravdess", f[6], _RAVDESS[f[2]], "en"))
    return out


def load_savee(root: Path) -> list[Clip]:
    out = []
    for p in _audio_files(root):
        m = re.match(r"([a-z]+)\d+$", p.stem)
        if m:
            out.append(_clip(p, "savee", p.parent.name, m.group(1), "en"))
    return out


def load_crema_d(root: Path) -> list[Clip]:
    out = []
    for p in _audio_files(root):
        f = p.stem.split("_")
        if len(f) >= 3:
            out.append(_clip(p, "crema-d", f[0], f[2], "en"))
    return out


_BANGLASER = {"01": "happy", "02": "sad", "03": "angry", "04": "surprise", "05": "neutral"}


def load_banglaser(root: Path) -> list[Clip]:
    out = []
    for p in _audio_files(root):
        f = p.stem.split("-")
        if len(f) == 7 and f[2] in _BANGLASER:
            out.append(_clip(p, "banglaser", f[6], _BANGLASER[f[2]], "bn"))
    return out


def load_subesco(root: Path) -> list[Clip]:
    # F_02_MONIKA_S_1_ANGRY_5: gender, speaker number, name, S, sentence, emotion, take.
    out = []
    for p in _audio_files(root):
        f = p.stem.split("_")
        if len(f) == 7 and f[3] == "S":
            out.append(_clip(p, "subesco", f"{f[0]}_{f[1]}", f[5], "bn"))
    return out


def load_nemo(root: Path) -> list[Clip]:
    out = []
    for p in _audio_files(root):
        f = p.stem.split("_")
        if len(f) == 3:
            out.append(_clip(p, "nemo", f[0], f[1], "pl"))
    return out


def load_turev(root: Path) -> list[Clip]:
    # Folder is the label (Angry/Calm/Happy/Sad); file {speaker}_{kz|hl|sk|mt}_{word}.
    return [_clip(p, "turev-db", p.stem.split("_")[0], p.parent.name, "tr") for p in _audio_files(root)]


def load_ased(root: Path) -> list[Clip]:
    # Folder (01Neutral, ...) is authoritative; 5th dash field of the name is the speaker.
    out = []
    for p in _audio_files(root):
        f = p.stem.split("-")
        if len(f) == 5:
            out.append(_clip(p, "ased", f[4], re.sub(r"^\d+", "", p.parent.name), "am"))
    return out


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus lives under the corpora root and how to parse it."""

    subdir: str
    """Folder under the corpora root holding the audio."""
    loader: Callable[[Path], list[Clip]]
    """Parser for that folder."""
    language: str
    """ISO 639-1 code."""


CORPORA: dict[str, CorpusSpec] = {
    "tess": CorpusSpec("tess/TESS Toronto emotional speech set data", load_tess, "en"),
    "ravdess": CorpusSpec("ravdess/Audio_Speech_Actors_01-24", load_ravdess, "en"),
    "savee": CorpusSpec("savee/AudioData", load_savee, "en"),
    "crema-d": CorpusSpec("crema-d/AudioWAV", load_crema_d, "en"),
    "banglaser": CorpusSpec("banglaser", load_banglaser, "bn"),
    "subesco": CorpusSpec("subesco", load_subesco, "bn"),
    "nemo": CorpusSpec("nemo/samples", load_nemo, "pl"),
    "turev-db": CorpusSpec("turev-db/Sound Source", load_turev, "tr"),
    "ased": CorpusSpec("ased", load_ased, "am"),
}

SETS: dict[str, tuple[str, ...]] = {
    "english": ("tess", "ravdess", "savee", "crema-d"),
    "bengali": ("banglaser", "subesco"),
    "all": ("tess", "ravdess", "savee", "crema-d", "banglaser", "subesco"),
    "all+": ("tess", "ravdess", "savee", "crema-d", "banglaser", "subesco", "nemo", "turev-db", "ased"),
}
"""Combined sets of the paper (english, bengali, all) and all+ (every language here)."""


def default_corpora_root() -> Path:
    """`<repo>/../shared/corpora`, where CI and these machines keep the corpora."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"


def available(root: Path | None = None) -> list[str]:
    """Corpus ids whose folder exists under root."""
    root = root or default_corpora_root()
    return [c for c, s in CORPORA.items() if (root / s.subdir).is_dir()]


def load_corpus(name: str, root: Path | None = None) -> list[Clip]:
    """All clips of one corpus (by id) under the corpora root."""
    if name not in CORPORA:
        raise UserError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}")
    root = root or default_corpora_root()
    return CORPORA[name].loader(root / CORPORA[name].subdir)


def expand(names: Iterable[str], root: Path | None = None) -> list[str]:
    """Expand set names (english, all+, ...) into the corpus ids that are present under root."""
    have = set(available(root))
    out: list[str] = []
    for n in names:
        members = SETS.get(n, (n,))
        for c in members:
            if c not in CORPORA:
                raise UserError(f"unknown corpus or set {c!r}")
            if c in have and c not in out:
                out.append(c)
    return out


def load_set(names: Iterable[str], root: Path | None = None) -> list[Clip]:
    """Clips of every corpus named (set names expand; corpora missing on disk are skipped)."""
    clips: list[Clip] = []
    for c in expand(names, root):
        clips.extend(load_corpus(c, root))
    return clips


def load_folder(root: Path, corpus: str = "custom", language: str = "xx") -> list[Clip]:
    """A user's data as one folder per label: root/<label>/**/*.wav; speaker unknown (= file)."""
    clips = []
    for p in _audio_files(Path(root)):
        rel = p.relative_to(root)
        if len(rel.parts) < 2:
            continue
        clips.append(_clip(p, corpus, p.stem, rel.parts[0], language))
    if not clips:
        raise UserError(f"no <label>/<file> audio under {root}")
    return clips


def load_csv(path: Path, corpus: str = "custom", language: str = "xx") -> list[Clip]:
    """A user's CSV with header path,label[,speaker]; relative paths are relative to the CSV."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CSV not found: {path}")
    clips = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise UserError(f"{path}: header must contain path,label[,speaker]")
        for i, row in enumerate(reader, start=2):
            audio = Path(row["path"])
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise UserError(f"{path}:{i}: audio file not found: {audio}")
            speaker = (row.get("speaker") or "").strip() or audio.stem
            clips.append(_clip(audio.resolve(), corpus, speaker, row["label"], language))
    return clips


def per_class_subset(clips: list[Clip], per_class: int) -> list[Clip]:
    """A seeded, class-balanced subset: at most `per_class` clips of each (corpus, merged class), in
    the input order.

    Each group's draw depends only on its own clips (sorted by path) and on the group's name, so the
    same clips come out whether one corpus or a whole set is loaded; clips without a merged class are
    grouped by their original label.
    """
    import zlib

    import numpy as np

    groups: dict[tuple[str, str], list[str]] = {}
    for c in clips:
        groups.setdefault((c.corpus, c.merged or c.label), []).append(c.path)
    keep: set[str] = set()
    for (corpus, label), paths in groups.items():
        paths = sorted(paths)
        if len(paths) > per_class:
            rng = np.random.default_rng(zlib.crc32(f"{corpus}/{label}".encode()))
            paths = [paths[i] for i in rng.permutation(len(paths))[:per_class]]
        keep.update(paths)
    return [c for c in clips if c.path in keep]
