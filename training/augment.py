"""Training-split augmentation (paper: added noise, pitch shift, time shift) plus random gain.

Each augmented copy is a deterministic function of (clip path, copy number), so the embedding
cache can hold it and a rerun reproduces it exactly. Validation and test clips are never augmented.
"""

from __future__ import annotations

import zlib

import numpy as np
import soxr

SAMPLE_RATE = 16000


def rng_for(path: str, copy: int) -> np.random.Generator:
    """A generator seeded by the clip and copy number (stable across runs and machines)."""
    return np.random.default_rng([zlib.crc32(path.encode()), copy])


def add_noise(wave: np.ndarray, rng: np.random.Generator,
              snr_db: tuple[float, float] = (10, 30)) -> np.ndarray:
    """White or brown-ish noise at a random SNR relative to the clip's power."""
    power = float(np.mean(wave ** 2)) + 1e-10
    snr = rng.uniform(*snr_db)
    noise = rng.standard_normal(wave.size).astype(np.float32)
    if rng.random() < 0.5:  # low-frequency-heavy noise, closer to fans and rooms than white noise
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
    noise *= np.sqrt(power / (10 ** (snr / 10)) / (np.mean(noise ** 2) + 1e-10))
    return (wave + noise).astype(np.float32)


def pitch_shift(wave: np.ndarray, semitones: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Shift pitch by resampling (speed perturbation: pitch and tempo change together)."""
    factor = 2 ** (semitones / 12)
    return soxr.resample(wave, sample_rate * factor, sample_rate, quality="HQ").astype(np.float32)


def time_shift(wave: np.ndarray, rng: np.random.Generator, max_s: float = 0.4,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Move the clip within its frame by prepending silence or cutting the start."""
    shift = int(rng.uniform(-max_s, max_s) * sample_rate)
    if shift >= 0:
        return np.concatenate([np.zeros(shift, dtype=np.float32), wave])
    return wave[-shift:] if wave.size + shift > sample_rate // 2 else wave


def augment(wave: np.ndarray, path: str, copy: int) -> np.ndarray:
    """One augmented copy: pitch +-3 semitones, time shift, noise, gain -12..+6 dB; clipped to [-1, 1]."""
    if wave.size == 0:  # a clip that is silence throughout trims to nothing: nothing to augment
        return wave.astype(np.float32)
    rng = rng_for(path, copy)
    out = pitch_shift(wave, rng.uniform(-3, 3))
    out = time_shift(out, rng)
    out = add_noise(out, rng)
    out = out * 10 ** (rng.uniform(-12, 6) / 20)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
