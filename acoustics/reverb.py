"""Reverberation: shoebox-room impulse responses from pyroomacoustics, convolved and aligned.

pyroomacoustics' image-source rooms with Sabine absorption (`pra.inverse_sabine`) decay more slowly
than asked for (measured up to a third longer), so the simulated response is shaped by an exponential
envelope from its measured RT60 to the requested one; `measure_rt60` checks the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve

from edge_ser.audio import MODEL_RATE

SPEED_OF_SOUND = 343.0


@dataclass(frozen=True)
class Rir:
    """A simulated room impulse response and the room it came from."""

    h: np.ndarray
    """Impulse response, float32, direct path scaled to 1."""
    direct: int
    """Sample index of the direct path in `h` (0 <= direct < len(h))."""
    rt60_s: float
    """RT60 measured on `h` by Schroeder backward integration (s, > 0)."""
    room_m: tuple[float, float, float]
    """Room length, width, height (m; 3-8 x 3-6 x 2.4-3.2)."""
    distance_m: float
    """Speaker-microphone distance (m, 1-4)."""


def measure_rt60(h: np.ndarray, rate: int, decay_db: float = 20.0) -> float:
    """RT60 from the Schroeder curve: the time from -5 dB to -5-`decay_db` dB, extrapolated to 60 dB."""
    import pyroomacoustics as pra

    return float(pra.experimental.measure_rt60(h, fs=rate, decay_db=decay_db))


def _positions(rng: np.random.Generator, room: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Speaker and mic at least 0.5 m from the walls, 1-4 m apart, at 1.0-1.8 m height."""
    lo, hi = np.array([0.5, 0.5, 1.0]), np.array([room[0] - 0.5, room[1] - 0.5, 1.8])
    for _ in range(1000):
        src, mic = rng.uniform(lo, hi), rng.uniform(lo, hi)
        if 1.0 <= np.linalg.norm(src - mic) <= 4.0:
            return src, mic
    raise ValueError(f"no 1-4 m speaker-mic placement in room {room}")


@lru_cache(maxsize=16)
def simulate_rir(rt60_s: float, seed: int, rate: int = MODEL_RATE) -> Rir:
    """Impulse response of a seeded shoebox room (size, speaker and mic positions) with RT60 `rt60_s`.

    Deterministic for (rt60_s, seed, rate); memoised because the image source method takes seconds.
    """
    import pyroomacoustics as pra

    if not 0.1 <= rt60_s <= 2.0:
        raise ValueError(f"rt60_s must be 0.1..2.0 s, got {rt60_s}")
    rng = np.random.default_rng(seed)
    room = np.array([rng.uniform(3, 8), rng.uniform(3, 6), rng.uniform(2.4, 3.2)])
    src, mic = _positions(rng, room)
    absorption, max_order = pra.inverse_sabine(rt60_s, room)
    shoebox = pra.ShoeBox(room, fs=rate, materials=pra.Material(absorption), max_order=max_order)
    shoebox.add_source(src)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    h = np.asarray(shoebox.rir[0][0], np.float64)
    # the direct path: the largest tap near the free-field delay (pra adds half its fractional-delay filter)
    expected = int(round(np.linalg.norm(src - mic) / SPEED_OF_SOUND * rate)) + pra.constants.get(
        "frac_delay_length") // 2
    lo = max(0, expected - 20)
    direct = lo + int(np.argmax(np.abs(h[lo:expected + 21])))
    measured = measure_rt60(h, rate)
    # energy decays as 10^(-6 t / RT60): this envelope moves the decay rate from `measured` to `rt60_s`
    t = np.maximum(np.arange(h.size) - direct, 0) / rate
    h = h * 10 ** (-3 * t * (1 / rt60_s - 1 / measured))
    h /= abs(h[direct])
    return Rir(h.astype(np.float32), direct, measure_rt60(h, rate), tuple(float(v) for v in room),
               float(np.linalg.norm(src - mic)))


def reverberate(audio: np.ndarray, rir: Rir) -> np.ndarray:
    """`audio` convolved with `rir`, aligned on the direct path, same length and RMS as `audio`."""
    wet = fftconvolve(audio.astype(np.float64), rir.h.astype(np.float64))[rir.direct:rir.direct + audio.size]
    rms_in = np.sqrt(np.mean(np.square(audio, dtype=np.float64)))
    rms_out = np.sqrt(np.mean(wet**2))
    # level is the gain conditions' job: keep the stream's RMS so only the reverberation differs
    wet = wet * (rms_in / rms_out) if rms_out > 0 else wet
    peak = float(np.max(np.abs(wet)))
    return (wet / peak * 0.99 if peak > 0.99 else wet).astype(np.float32)
