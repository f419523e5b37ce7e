"""Which parts of a window are speech by their energy, and the window's level set from those parts.

A microphone across a room hears speech 10-30 dB quieter than the corpora's close microphones, and
the corpora themselves differ by about 20 dB (their median speech level, measured on 20 clips each
with the command in training/README.md, runs from about -42 dBFS to -19 dBFS). A model that sees raw
level learns the corpus and the distance instead of the emotion. Training (training/) and serving
(edge_ser.model) both call `prepare`, so a head is trained on windows exactly as the daemon hands
them to the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import to_samples

LEVELS = ("raw", "speech")
"""Manifest `window_level`: raw = the window as heard; speech = `prepare` (level set on speech frames,
backbone frames pooled over speech frames only)."""

FRAME_S = 0.02
"""Analysis frame of the speech mask: 20 ms, the hop of the Whisper encoder's output frames."""
PAUSE_DB = 30.0
"""A frame this far below the window's loudest frame is a pause."""
FLOOR_MARGIN_DB = 6.0
"""...and so is a frame within this of the window's noise floor (its 10th-percentile frame energy)."""
MIN_SPEECH_FRAMES = 0.1
"""Fewer speech frames than this share of the window: nothing stands out of the background, so every
frame counts (a noise-only window is pooled whole, as the head was trained to call it neutral)."""
TARGET_DBFS = -23.0
"""Speech level the window is brought to (RMS over its speech frames, dB re full scale)."""
GAIN_DB = (-20.0, 30.0)
"""Bounds of the applied gain: a near-silent window is lifted at most 30 dB, so a quiet room's hiss
never becomes a full-scale signal."""


@dataclass(frozen=True)
class Prepared:
    """A window ready for the backbone."""

    samples: np.ndarray
    """float32 samples, level-normalised."""
    speech: np.ndarray
    """bool [n_frames]: which analysis frames are speech (all True when none stands out)."""
    gain_db: float
    """Gain applied to the input (within GAIN_DB)."""


def frame_energy_db(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean power of `n_frames` equal slices of the window, in dB re full scale (floor -120 dB)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if n_frames < 1 or x.size < n_frames:
        raise ValueError(f"cannot cut {x.size} samples into {n_frames} frames")
    usable = x[: (x.size // n_frames) * n_frames].reshape(n_frames, -1)
    power = np.mean(np.square(usable, dtype=np.float64), axis=1)
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def frame_count(n_samples: int) -> int:
    """How many FRAME_S analysis frames a window of `n_samples` is cut into (at least one)."""
    return max(1, int(round(n_samples / to_samples(FRAME_S))))


def floor_db(energy_db: np.ndarray) -> float:
    """A window's noise floor: its 10th-percentile frame energy (speech leaves gaps between words)."""
    return float(np.percentile(np.asarray(energy_db, dtype=np.float32), 10))


def speech_mask(energy_db: np.ndarray) -> np.ndarray:
    """Speech frames of a window from its frame energies (see PAUSE_DB, FLOOR_MARGIN_DB)."""
    e = np.asarray(energy_db, dtype=np.float32)
    floor = floor_db(e)
    threshold = max(float(e.max()) - PAUSE_DB, floor + FLOOR_MARGIN_DB)
    mask = e >= threshold
    if mask.sum() < max(1, int(np.ceil(MIN_SPEECH_FRAMES * e.size))):
        return np.ones(e.size, dtype=bool)
    return mask


def prepare(samples: np.ndarray, n_frames: int | None = None) -> Prepared:
    """Set the window's speech level to TARGET_DBFS (gain bounded by GAIN_DB) and mark its speech frames.

    n_frames: frames of the mask (default: 20 ms frames); pass the backbone's output frame count so
    the mask lines up with the frames it pools.
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = n_frames or frame_count(x.size)
    energy = frame_energy_db(x, n)
    mask = speech_mask(energy)
    speech_db = float(10.0 * np.log10(np.mean(np.power(10.0, energy[mask] / 10.0))))
    gain_db = float(np.clip(TARGET_DBFS - speech_db, *GAIN_DB))
    return Prepared((x * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32), mask, gain_db)


def speech_frames(states: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """The speech frames of backbone output [..., n_frames, dim], the mask stretched to n_frames."""
    states = np.asarray(states)
    n = states.shape[-2]
    idx = np.minimum((np.arange(n) * len(speech)) // n, len(speech) - 1)
    keep = np.asarray(speech, dtype=bool)[idx]
    return states[..., keep, :] if keep.any() else states
