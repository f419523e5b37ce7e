"""Noise sources for the room conditions, and mixing one into speech at a measured SNR.

Every source is a pure function of its arguments (length, rate, a numpy Generator, and for babble the
clips to talk with) and returns unit-RMS float32 noise, so benchmark and training augmentation draw
from the same generators with their own seeds and clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import butter, sosfilt

Segments = Sequence[tuple[int, int]] | Sequence[tuple[int, int, str]]
"""Speech segments of a stream: (start sample, end sample[, label])."""


def _unit(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x / rms if rms > 0 else x).astype(np.float32)


def pink(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain (flat below 20 Hz)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate)
    spec /= np.sqrt(np.maximum(f, 20.0))
    return _unit(np.fft.irfft(spec, n))


def babble(n: int, clips: Sequence[np.ndarray], rng: np.random.Generator, talkers: int = 4) -> np.ndarray:
    """`talkers` voices at once, each a seeded random sequence of `clips` (other speakers' utterances).

    Each talker starts at a random offset into its first clip and runs without pauses, so the babble is
    continuous; talkers are equalised to the same RMS before summing.
    """
    usable = [np.asarray(c, np.float32) for c in clips if len(c) > 0]
    if not usable:
        raise ValueError("babble needs at least one non-empty clip")
    if not 1 <= talkers <= 32:
        raise ValueError(f"talkers must be 1..32, got {talkers}")
    out = np.zeros(n, np.float64)
    for _ in range(talkers):
        parts, total = [], 0
        first = usable[int(rng.integers(len(usable)))]
        start = int(rng.integers(len(first)))
        parts.append(first[start:])
        total += len(first) - start
        while total < n:
            clip = usable[int(rng.integers(len(usable)))]
            parts.append(clip)
            total += len(clip)
        out += _unit(np.concatenate(parts)[:n])
    return _unit(out)


def hum_fan(n: int, rate: int, rng: np.random.Generator, mains_hz: float = 50.0) -> np.ndarray:
    """Mains hum (fundamental + odd/even harmonics, seeded levels and phases) over band-passed fan noise."""
    t = np.arange(n) / rate
    hum = np.zeros(n)
    for k in range(1, 6):
        hum += rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains_hz * k * t + rng.uniform(0, 2 * np.pi))
    lo, hi = rng.uniform(80, 200), rng.uniform(1200, 3000)
    fan = sosfilt(butter(2, [lo, hi], btype="band", fs=rate, output="sos"), rng.standard_normal(n))
    # a slow blade-rate wobble of the fan's level (1-4 Hz), as a running fan has
    fan *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
    return _unit(0.5 * _unit(hum) + _unit(fan))


def clatter(n: int, rate: int, rng: np.random.Generator, per_second: float = 1.5) -> np.ndarray:
    """Dishes and doors: Poisson-timed short bursts of filtered noise that decay in 20-150 ms."""
    out = np.zeros(n)
    count = max(1, int(rng.poisson(per_second * n / rate)))
    for start in rng.integers(0, n, count):
        length = int(rate * rng.uniform(0.05, 0.4))
        tau = rate * rng.uniform(0.02, 0.15)
        centre = rng.uniform(500, 5000)
        band = [centre / 1.5, min(centre * 1.5, 0.45 * rate)]
        burst = sosfilt(butter(2, band, btype="band", fs=rate, output="sos"), rng.standard_normal(length))
        burst *= np.exp(-np.arange(length) / tau) * rng.uniform(0.3, 1.0)
        end = min(n, start + length)
        out[start:end] += burst[:end - start]
    return _unit(out)


def music(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Music-like tones: a seeded melody of sustained harmonic notes on a pentatonic scale, with a bass."""
    t_note = rng.uniform(0.25, 0.6)
    steps = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    out = np.zeros(n)
    pos, note = 0, int(rng.integers(len(steps)))
    while pos < n:
        length = min(n - pos, int(rate * t_note * int(rng.integers(1, 4))))
        note = int(np.clip(note + rng.integers(-2, 3), 0, len(steps) - 1))
        f0 = 220.0 * 2 ** (steps[note] / 12)
        t = np.arange(length) / rate
        env = np.minimum(1.0, t / 0.02) * np.exp(-t / rng.uniform(0.4, 1.2))
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h**1.5 for h in range(1, 6))
        bass = np.sin(2 * np.pi * f0 / 4 * t)
        out[pos:pos + length] = env * (tone + 0.5 * bass)
        pos += length
    return _unit(out)


def household(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A kitchen/living room: hum + fan, clatter and music at equal power, summed."""
    return _unit(hum_fan(n, rate, rng) + clatter(n, rate, rng) + music(n, rate, rng))


def speech_power(audio: np.ndarray, segments: Segments | None) -> float:
    """Mean power of the speech samples (of the whole signal when no segments are given)."""
    if segments:
        audio = np.concatenate([audio[s[0]:s[1]] for s in segments])
    return float(np.mean(np.square(audio, dtype=np.float64)))


def mix_at_snr(audio: np.ndarray, noise: np.ndarray, snr_db: float, segments: Segments | None) -> np.ndarray:
    """`audio` + `noise` scaled so that speech power / mean noise power is `snr_db`.

    The mix is scaled down (both parts alike, so the SNR stays) when its peak would exceed 0.99.
    """
    if noise.shape != audio.shape:
        raise ValueError(f"noise shape {noise.shape} != audio shape {audio.shape}")
    if not -30.0 <= snr_db <= 60.0:
        raise ValueError(f"snr_db must be -30..60 dB, got {snr_db}")
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    scale = np.sqrt(speech_power(audio, segments) / (noise_power * 10 ** (snr_db / 10)))
    out = audio.astype(np.float64) + noise * scale
    peak = float(np.max(np.abs(out)))
    return (out / peak * 0.99 if peak > 0.99 else out).astype(np.float32)
