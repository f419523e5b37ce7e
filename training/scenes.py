"""Training windows cut the way the daemon hears a room: an utterance with pauses around it, recorded
under a condition drawn from acoustics/ (reverberation, noise, telephone, gain) with training's own
seeds, rooms and noise draws, cut by the daemon's windower, each window labelled by the speech it holds.
Babble is made of utterances of the corpus's speaker-independent *training* speakers of fold 0
(babble_pool), the fold All+ and leave-one-corpus-out runs use, so no speaker they evaluate is heard in
a training window, not even behind the utterance (training.experiment refuses babble copies in a later
leave-one-speaker-out fold).

Variant `roomN` of the feature cache is copy N of every clip made this way with pink or household
noise; variant `babbleN` draws babble as a third kind of noise (babble_pool); variant `talkN` always
has babble behind the utterance (people talking across the room while someone speaks near the
microphone, the pauses holding only their talk); variant `livingN` is a talk copy that is always
reverberant (a talker across a living room, its echo and other people's talk). A window covering less
than MIN_SPEECH_S of the utterance is a pause: its label is `neutral`, as the stream benchmark scores
it, so a head learns that a pause, a hiss, a reverberant tail or other people talking is not sadness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from acoustics import noises, reverb, telephone
from edge_ser.audio import MODEL_RATE, to_samples
from edge_ser.errors import UserError
from edge_ser.windows import Windower
from training.augment import rng_for
from training.loaders import Clip
from training.preprocess import HOP_S, WINDOW_S, load_audio, trim_silence
from training.splits import load_speaker_folds

RATE = MODEL_RATE
WINDOW = to_samples(WINDOW_S)
HOP = to_samples(HOP_S)
MIN_SPEECH_S = 0.5
"""A window with this much of the utterance (or 80 % of a shorter one) carries its label."""
PAUSE_MAX_S = 0.25
"""A window with less of the utterance than this is a pause (neutral)."""
SPEECH, PAUSE, UNSURE = 1, 0, -1
"""Roles of a room copy's windows (window_roles)."""
PAUSE_S = (0.0, 2.5)
"""Silence before and after the utterance, drawn per copy."""
SEED_BASE = 10_000
"""Training's rooms and noise draws start here; the room benchmark's seeds are single digits."""
RIR_BANK = 16
"""Simulated rooms per process, RT60 spread over 0.2-1.0 s (image-source rooms take seconds each)."""
SCENES = ("room", "babble", "talk", "living")
"""Variant families of room copies: `roomN` (pink or household noise), `babbleN` (or babble), `talkN`
(babble only), `livingN` (babble only, always reverberant)."""
BABBLE_SCENES = ("babble", "talk", "living")
"""Families whose copies draw babble from babble_pool."""
TALK_SCENES = ("talk", "living")
"""Families whose noise is always babble (pink or household when the pool is empty)."""
P_PHONE = 0.15
P_REVERB = {"room": 0.4, "babble": 0.4, "talk": 0.4, "living": 1.0}
"""Share of copies heard through a simulated room, per family."""
P_NOISE = {"room": 0.6, "babble": 0.7, "talk": 1.0, "living": 1.0}
"""Share of copies with noise, per family."""
NOISES = ("pink", "household", "babble")
"""A babble copy's noise kinds, drawn with equal odds (babble only when the corpus has a pool)."""
SNR_DB = (0.0, 25.0)
GAIN_DB = (-30.0, 0.0)
TALKERS = (1, 6)
"""Voices in a babble track, drawn per copy (the benchmark's babble has 4)."""
BABBLE_POOL = 32
"""Utterances of a corpus's training speakers its babble tracks are drawn from."""


@dataclass(frozen=True)
class Scene:
    """One utterance recorded in a drawn condition."""

    audio: np.ndarray
    """float32 16 kHz: pause, utterance, pause, after the condition."""
    speech: tuple[int, int]
    """Sample span of the utterance in `audio` (before reverberation smears it)."""
    condition: str
    """What was applied, for logs and tests ("rt60-0.63+pink12+phone+gain-17")."""


@lru_cache(maxsize=1)
def rir_bank() -> tuple[reverb.Rir, ...]:
    return tuple(reverb.simulate_rir(round(0.2 + 0.8 * i / (RIR_BANK - 1), 3), SEED_BASE + i, RATE)
                 for i in range(RIR_BANK))


def babble_pool(clips: Sequence[Clip], corpus: str) -> tuple[np.ndarray, ...]:
    """BABBLE_POOL trimmed utterances of `corpus`'s training speakers (speaker-independent fold 0), a
    seeded draw from `clips`; empty when the corpus has no speaker-independent split."""
    try:
        train = set(load_speaker_folds(corpus)[0]["train"])
    except UserError:
        return ()
    pool = sorted((c for c in clips if c.corpus == corpus and c.speaker in train), key=lambda c: c.path)
    picked = rng_for(corpus, SEED_BASE).permutation(len(pool))[:BABBLE_POOL]
    return tuple(trim_silence(load_audio(pool[i].path)).astype(np.float32) for i in sorted(picked))


def scene_of(variant: str) -> tuple[str, int] | None:
    """("room", 2) for cache variant `room2`, ("babble", 1) for `babble1` (and `talkN`, `livingN`); None
    for any other variant."""
    for family in SCENES:
        if variant.startswith(family) and variant[len(family):].isdigit():
            return family, int(variant[len(family):])
    return None


def make_scene(speech: np.ndarray, path: str, copy: int,
               babble: Sequence[np.ndarray] | None = None, family: str = "babble") -> Scene:
    """Copy `copy` of a trimmed utterance in its room; a pure function of (speech, path, copy, babble,
    family).

    babble None: a `room` copy (pink or household noise); a pool (babble_pool, maybe empty): a copy of
    `family`, `babble` (babble made of the pool is a third kind of noise), `talk` (always babble;
    pink or household when the pool is empty) or `living` (a talk copy, always reverberant)."""
    if babble is None:
        family = "room"
    rng = rng_for(path, SEED_BASE + copy)
    pre, post = (int(rng.uniform(*PAUSE_S) * RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(pre, np.float32), np.asarray(speech, np.float32),
                            np.zeros(post, np.float32)])
    span = (pre, pre + len(speech))
    steps = []
    if rng.random() < P_REVERB[family]:
        rir = rir_bank()[int(rng.integers(RIR_BANK))]
        audio = reverb.reverberate(audio, rir)
        steps.append(f"rt60-{rir.rt60_s:.2f}")
    if rng.random() < P_NOISE[family]:
        if babble is None:
            kind = "pink" if rng.random() < 0.5 else "household"
        else:
            kinds = NOISES[:2] if not babble else ("babble",) if family in TALK_SCENES else NOISES
            kind = kinds[int(rng.integers(len(kinds)))]
        snr = float(rng.uniform(*SNR_DB))
        if kind == "babble":
            talkers = int(rng.integers(TALKERS[0], TALKERS[1] + 1))
            source = noises.babble(audio.size, babble, rng, talkers=talkers)
        else:
            source = (noises.pink if kind == "pink" else noises.household)(audio.size, RATE, rng)
        audio = noises.mix_at_snr(audio, source, snr, [span])
        steps.append(f"{kind}{snr:.0f}")
    if rng.random() < P_PHONE:
        audio = telephone.phone(audio, RATE)
        steps.append("phone")
    g = float(rng.uniform(*GAIN_DB))
    audio = np.clip(audio * np.float32(10 ** (g / 20)), -1.0, 1.0).astype(np.float32)
    steps.append(f"gain{g:.0f}")
    return Scene(audio, span, "+".join(steps))


def cut_with_coverage(audio: np.ndarray, speech: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The daemon's windows of `audio` (edge_ser.windows.Windower, push then flush) and the seconds of
    the `speech` span each one covers: (float32 [n, WINDOW], float32 [n])."""
    w = Windower(WINDOW, HOP)
    cut = list(w.push(audio))
    tail = w.flush()
    if tail is not None:
        cut.append(tail)
    s0, s1 = speech
    cover = []
    for win in cut:
        if win.padded:  # the whole scene, centred in one window
            cover.append((s1 - s0) / RATE)
        else:
            cover.append(max(0, min(s1, win.start + WINDOW) - max(s0, win.start)) / RATE)
    return np.stack([x.samples for x in cut]), np.asarray(cover, np.float32)


def window_roles(covered_s: np.ndarray, speech_s: float) -> np.ndarray:
    """Per window: SPEECH (carries the utterance's label), PAUSE (neutral) or UNSURE (left out).

    SPEECH: at least MIN_SPEECH_S of the utterance, or 80 % of a shorter one, as the stream benchmark
    scores a window; PAUSE: under PAUSE_MAX_S of it. Windows in between are left out of training:
    labelled neutral they taught a head that a short utterance (TurEV-DB's are 0.6-0.9 s) is a pause.
    """
    covered = np.asarray(covered_s, np.float32)
    roles = np.full(covered.shape, UNSURE, np.int8)
    roles[covered >= min(MIN_SPEECH_S, 0.8 * speech_s)] = SPEECH
    roles[covered < PAUSE_MAX_S] = PAUSE
    return roles


def room_windows(speech: np.ndarray, path: str, copy: int, babble: Sequence[np.ndarray] | None = None,
                 family: str = "babble") -> tuple[np.ndarray, np.ndarray]:
    """(windows, seconds of utterance per window) of copy `copy` of a trimmed utterance."""
    scene = make_scene(speech, path, copy, babble, family)
    return cut_with_coverage(scene.audio, scene.speech)
