"""Audio preprocessing as in the paper: 16 kHz mono float32, leading/trailing silence trimmed at 25 dB,
then cut into the 2 s windows (1 s hop) that the daemon feeds its model."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr

from edge_ser.errors import AudioError
from edge_ser.windows import cut_windows

SAMPLE_RATE = 16000
WINDOW_S = 2.0
HOP_S = 1.0


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any libsndfile format to float32 mono at `sample_rate`."""
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"cannot decode {path}: {exc}") from exc
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="VHQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def trim_silence(wave: np.ndarray, top_db: float = 25.0, frame: int = 2048, hop: int = 512) -> np.ndarray:
    """Drop leading/trailing frames quieter than `top_db` below the loudest frame (librosa.effects.trim)."""
    if wave.size < frame:
        return wave
    pad = np.pad(wave, frame // 2, mode="constant")
    n = 1 + (pad.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(pad[idx] ** 2, axis=1))
    ref = rms.max()
    if ref <= 0:
        return wave[:0]
    loud = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-10) / ref) > -top_db)
    start = loud[0] * hop
    end = min(wave.size, loud[-1] * hop + frame)
    return wave[start:end]


def windows(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S,
            hop_s: float = HOP_S) -> np.ndarray:
    """Cut a clip into the daemon's windows [n, window] with the daemon's own windower.

    A clip shorter than one window becomes a single window with the speech in the middle; a tail
    of at least half a hop after the last full window gets a window aligned to the clip's end.
    """
    return cut_windows(wave, int(round(window_s * sample_rate)), int(round(hop_s * sample_rate)))
