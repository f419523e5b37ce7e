"""A telephone line: 300-3400 Hz band, 8 kHz sampling, and a low-bitrate Opus round trip.

libsndfile's Opus encoder maps `compression_level` 0..1 onto the bitrate, 1.0 being Opus's minimum
(6 kbit/s); OPUS_LEVEL is that setting.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

BAND_HZ = (300.0, 3400.0)
"""Pass band of the telephone filter (ITU-T narrowband)."""
LINE_RATE = 8000
"""Sample rate of the line (Hz)."""
OPUS_LEVEL = 1.0
"""soundfile compression_level of the Opus round trip: 1.0 = the lowest bitrate libsndfile sets."""


def band_limit(audio: np.ndarray, rate: int, order: int = 10) -> np.ndarray:
    """Butterworth band-pass over BAND_HZ (second-order sections, causal)."""
    sos = butter(order, BAND_HZ, btype="band", fs=rate, output="sos")
    return sosfilt(sos, audio.astype(np.float64)).astype(np.float32)


def opus_round_trip(audio: np.ndarray, rate: int, level: float = OPUS_LEVEL) -> np.ndarray:
    """Encode to OGG/Opus in memory at compression `level` (0..1) and decode; same length as `audio`."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"level must be 0..1, got {level}")
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), rate, format="OGG", subtype="OPUS", compression_level=level)
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    out = out[:audio.size]
    return np.pad(out, (0, audio.size - out.size))


def phone(audio: np.ndarray, rate: int) -> np.ndarray:
    """Band-limit, resample to 8 kHz, Opus at the lowest bitrate, back to `rate`; same length."""
    line = soxr.resample(band_limit(audio, rate), rate, LINE_RATE, quality="HQ")
    line = opus_round_trip(line.astype(np.float32), LINE_RATE)
    out = soxr.resample(line, LINE_RATE, rate, quality="HQ")[:audio.size]
    return np.pad(out, (0, audio.size - out.size)).astype(np.float32)
