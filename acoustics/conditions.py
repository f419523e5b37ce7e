"""Recording conditions of the room benchmark: what each is, and `apply` to put a stream through it.

A Condition names a kind (gain, noise, reverb, phone, chain, clean), its parameters and a seed; `apply`
is a pure function of the condition, the audio and the noise clips passed in, so training augmentation
can draw the same kinds with other seeds, rooms and clips. CONDITIONS is the benchmark's set, in the
order its tables and chart show them (clean first, then harder within each kind).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acoustics import noises, reverb, telephone

KINDS = ("clean", "gain", "noise", "reverb", "phone", "chain")
NOISES = ("pink", "babble", "household")
RANGES = {"db": (-60.0, 0.0), "snr_db": (-30.0, 60.0), "rt60_s": (0.1, 2.0)}
"""Valid range of each numeric parameter."""


@dataclass(frozen=True)
class Condition:
    """One recording condition: a kind, its parameters, and the seed of everything random in it."""

    name: str
    """Registry name (`gain-20`, `babble5`, `rt60-0.6`, `living-room`, ...)."""
    kind: str
    """One of KINDS."""
    parameters: tuple[tuple[str, Any], ...] = ()
    """(name, value) pairs: gain `db` (-60..0); noise `noise` (one of NOISES) and `snr_db` (-30..60);
    reverb `rt60_s` (0.1..2.0); none for clean, phone and chain."""
    seed: int = 0
    """Seed of the noise draw / room (>= 0); a chain's steps use their own seeds."""
    steps: tuple[Condition, ...] = field(default=(), repr=False)
    """Steps of a chain, applied in order (empty for every other kind)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if (self.kind == "chain") != bool(self.steps):
            raise ValueError("a chain needs steps, and only a chain has them")
        p = dict(self.parameters)
        need = {"gain": {"db"}, "noise": {"noise", "snr_db"}, "reverb": {"rt60_s"}}.get(self.kind, set())
        if set(p) != need:
            raise ValueError(f"{self.kind} takes parameters {sorted(need)}, got {sorted(p)}")
        if not all(lo <= p[k] <= hi for k, (lo, hi) in RANGES.items() if k in p):
            raise ValueError(f"{self.name}: a parameter is out of range {RANGES}: {p}")
        if p.get("noise", "pink") not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {p['noise']!r}")

    def param(self, key: str) -> Any:
        return dict(self.parameters)[key]

    def with_seed(self, seed: int) -> Condition:
        """The same condition with another seed (a chain's steps offset by the same amount)."""
        steps = tuple(s.with_seed(s.seed + seed - self.seed) for s in self.steps)
        return Condition(self.name, self.kind, self.parameters, seed, steps)


def gain(db: float, seed: int = 0) -> Condition:
    if not -60.0 <= db <= 0.0:
        raise ValueError(f"gain must be -60..0 dB, got {db}")
    return Condition(f"gain{db:g}", "gain", (("db", float(db)),), seed)


def noise(kind: str, snr_db: float, seed: int = 1) -> Condition:
    if kind not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {kind!r}")
    if not -30.0 <= snr_db <= 60.0:
        raise ValueError(f"snr_db must be -30..60, got {snr_db}")
    return Condition(f"{kind}{snr_db:g}", "noise", (("noise", kind), ("snr_db", float(snr_db))), seed)


def room(rt60_s: float, seed: int = 2) -> Condition:
    if not 0.1 <= rt60_s <= 2.0:
        raise ValueError(f"rt60_s must be 0.1..2.0, got {rt60_s}")
    return Condition(f"rt60-{rt60_s:g}", "reverb", (("rt60_s", float(rt60_s)),), seed)


def _registry() -> dict[str, Condition]:
    conds = [Condition("clean", "clean")]
    conds += [gain(db) for db in (-10, -20, -30)]
    conds += [noise(n, snr) for n in NOISES for snr in (20, 10, 5, 0)]
    conds += [room(rt) for rt in (0.3, 0.6, 0.9)]
    conds.append(Condition("phone", "phone"))
    # far field: the room's reverberation, the other talkers at 10 dB, then the whole scene 20 dB quieter
    conds.append(Condition("living-room", "chain", seed=3,
                           steps=(room(0.6, seed=3), noise("babble", 10, seed=4), gain(-20, seed=5))))
    return {c.name: c for c in conds}


CONDITIONS: dict[str, Condition] = _registry()
"""The benchmark's conditions by name, in chart order."""


def ordered(names: Sequence[str]) -> list[str]:
    """`names` without repeats: registry order (clean, gain, noise, reverb, phone, combined), others last."""
    seen = list(dict.fromkeys(names))
    return [n for n in CONDITIONS if n in seen] + [n for n in seen if n not in CONDITIONS]


def get(name: str) -> Condition:
    if name not in CONDITIONS:
        raise KeyError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


def apply(condition: Condition, audio: np.ndarray, rate: int, *,
          segments: noises.Segments | None = None,
          babble_clips: Sequence[np.ndarray] = ()) -> np.ndarray:
    """`audio` (float32 mono at `rate`) recorded under `condition`; same length, float32.

    `segments` are the speech samples the SNR is measured against (all of `audio` when None);
    `babble_clips` are the utterances of other speakers that babble noise is made of.
    """
    audio = np.asarray(audio, np.float32)
    rng = np.random.default_rng(condition.seed)
    if condition.kind == "clean":
        return audio
    if condition.kind == "gain":
        return (audio * np.float32(10 ** (condition.param("db") / 20))).astype(np.float32)
    if condition.kind == "noise":
        which = condition.param("noise")
        if which == "pink":
            source = noises.pink(audio.size, rate, rng)
        elif which == "household":
            source = noises.household(audio.size, rate, rng)
        else:
            source = noises.babble(audio.size, babble_clips, rng)
        return noises.mix_at_snr(audio, source, condition.param("snr_db"), segments)
    if condition.kind == "reverb":
        return reverb.reverberate(audio, reverb.simulate_rir(condition.param("rt60_s"), condition.seed, rate))
    if condition.kind == "phone":
        return telephone.phone(audio, rate)
    for step in condition.steps:
        audio = apply(step, audio, rate, segments=segments, babble_clips=babble_clips)
    return audio
