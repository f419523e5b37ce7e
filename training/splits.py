"""Seeded split files, committed under training/splits/ so every model is tested on the same clips.

- paper/<corpus>.csv: the paper's protocol, random 70/10/20 stratified by original label (seed 0).
- speaker_independent.json: per corpus, folds of train/val/test speakers. Corpora with <= 4 speakers
  (TESS, SAVEE) get leave-one-speaker-out folds (val = a seeded 10 % of the training speakers'
  clips); the others one speaker-disjoint fold with about 70/10/20 % of speakers.
- cross_corpus: no file needed; for held-out corpus X the model trains on the speaker-independent
  train+test clips of every other corpus, validates on their val speakers and is tested on all of X.
Paths in split files are relative to the corpora root, so the files work on any machine.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_ser.errors import UserError
from training.loaders import Clip

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
SEED = 0
LOSO_MAX_SPEAKERS = 4


def _rng(*keys: str) -> np.random.Generator:
    return np.random.default_rng([SEED, *(zlib.crc32(k.encode()) for k in keys)])


def rel(path: str, root: Path) -> str:
    """A clip path relative to the corpora root (posix)."""
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def paper_split(clips: list[Clip], corpus: str) -> dict[str, str]:
    """path -> train/val/test, 70/10/20 stratified by original label."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.path):
        by_label[c.label].append(c.path)
    out: dict[str, str] = {}
    for label, paths in sorted(by_label.items()):
        order = _rng("paper", corpus, label).permutation(len(paths))
        n_test, n_val = round(0.2 * len(paths)), round(0.1 * len(paths))
        for rank, i in enumerate(order):
            out[paths[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def speaker_folds(clips: list[Clip], corpus: str) -> list[dict[str, list[str]]]:
    """Speaker-disjoint folds: [{"train": [speakers], "val": [...], "test": [...]}]."""
    speakers = sorted({c.speaker for c in clips})
    if len(speakers) < 2:
        raise UserError(f"{corpus}: speaker-independent split needs >= 2 speakers, found {len(speakers)}")
    if len(speakers) <= LOSO_MAX_SPEAKERS:
        # val comes from the training speakers' clips (too few speakers to hold one out for val)
        return [{"train": [s for s in speakers if s != t], "val": [], "test": [t]} for t in speakers]
    order = [speakers[i] for i in _rng("si", corpus).permutation(len(speakers))]
    n_test = max(1, round(0.2 * len(speakers)))
    n_val = max(1, round(0.1 * len(speakers)))
    return [{"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
             "train": sorted(order[n_test + n_val:])}]


def assign_fold(clips: list[Clip], fold: dict[str, list[str]], corpus: str) -> dict[str, str]:
    """path -> train/val/test for one speaker fold (LOSO folds draw val from the training clips)."""
    role = {s: r for r, ss in fold.items() for s in ss}
    out = {c.path: role[c.speaker] for c in clips if c.speaker in role}
    if not fold["val"]:
        train = sorted(p for p, r in out.items() if r == "train")
        pick = _rng("si-val", corpus, *fold["test"]).permutation(len(train))[: round(0.1 * len(train))]
        for i in pick:
            out[train[i]] = "val"
    return out


def write_all(clips_by_corpus: dict[str, list[Clip]], root: Path, out_dir: Path = SPLITS_DIR) -> None:
    """(Re)write every split file for the corpora given."""
    (out_dir / "paper").mkdir(parents=True, exist_ok=True)
    si_path = out_dir / "speaker_independent.json"
    si = json.loads(si_path.read_text()) if si_path.is_file() else {}
    for corpus, clips in clips_by_corpus.items():
        split = paper_split(clips, corpus)
        with (out_dir / "paper" / f"{corpus}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "split"])
            w.writerows(sorted((rel(p, root), s) for p, s in split.items()))
        si[corpus] = speaker_folds(clips, corpus)
    si_path.write_text(json.dumps(dict(sorted(si.items())), indent=1) + "\n")


def load_paper(corpus: str, root: Path, split_dir: Path = SPLITS_DIR) -> dict[str, str]:
    """Absolute clip path -> train/val/test of the committed paper split."""
    f = split_dir / "paper" / f"{corpus}.csv"
    if not f.is_file():
        raise UserError(f"no paper split for {corpus} at {f}; run `python -m training splits`")
    with f.open(newline="") as fh:
        # keyed like the loaders' clip paths (root joined, not resolved), so a ../shared that is a
        # symbolic link still matches every clip
        return {str(Path(root) / r["path"]): r["split"] for r in csv.DictReader(fh)}


def load_speaker_folds(corpus: str, split_dir: Path = SPLITS_DIR) -> list[dict[str, list[str]]]:
    si = json.loads((split_dir / "speaker_independent.json").read_text())
    if corpus not in si:
        raise UserError(f"no speaker-independent split for {corpus}; run `python -m training splits`")
    return si[corpus]


def protocol_split(protocol: str, corpora: list[str], clips: list[Clip], root: Path, fold: int = 0,
                   heldout: str | None = None, split_dir: Path = SPLITS_DIR) -> dict[str, str]:
    """path -> train/val/test for `clips` under a protocol (paper, speaker_independent, cross_corpus).

    For combined sets each corpus contributes its own split; `fold` picks the LOSO fold of TESS/SAVEE
    (modulo their fold count). cross_corpus: `heldout` is all test, the others train(+test)/val.
    """
    by_corpus: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_corpus[c.corpus].append(c)
    out: dict[str, str] = {}
    for corpus in corpora:
        cc = by_corpus.get(corpus, [])
        if not cc:
            continue
        if protocol == "paper":
            out.update(load_paper(corpus, root, split_dir))
        elif protocol in ("speaker_independent", "cross_corpus"):
            if protocol == "cross_corpus" and corpus == heldout:
                out.update({c.path: "test" for c in cc})
                continue
            folds = load_speaker_folds(corpus, split_dir)
            part = assign_fold(cc, folds[fold % len(folds)], corpus)
            if protocol == "cross_corpus":
                part = {p: ("val" if s == "val" else "train") for p, s in part.items()}
            out.update(part)
        else:
            raise UserError(f"unknown protocol {protocol!r}")
    known = {c.path for c in clips}
    return {p: s for p, s in out.items() if p in known}


def split_set(protocol: str, corpus: str, heldout: str | None, root: Path,
              fold: int = 0) -> tuple[list[str], list[Clip], dict[str, str]]:
    """(training corpora, every clip of them and of `heldout`, path -> train/val/test) for a
    comma-separated corpus set under a protocol, `heldout` left out of the training corpora."""
    from training.loaders import expand, load_set

    corpora = [c for c in expand(corpus.split(","), root) if c != heldout]
    wanted = corpora + ([heldout] if heldout else [])
    clips = load_set(wanted, root)
    return corpora, clips, protocol_split(protocol, wanted, clips, root, fold=fold, heldout=heldout)
