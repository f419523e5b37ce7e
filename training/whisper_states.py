"""Whisper encoder features for the training cache: a 2 s window -> each hidden state, pooled.

Runs the encoder graph that `python -m convert whisper-encoder` exported (FP32, every hidden state)
through the daemon's own ONNX backend, on the daemon's own Whisper log-mel of the window, and pools
each state's frames with the daemon's pool_frames. Only mean_std rows are kept per state (mean is
their first half), so any choice of states and pooling can be trained from one cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ser.backends.onnx import OnnxBackend
from edge_ser.errors import ModelError
from edge_ser.pooling import pool_frames
from edge_ser.speech_level import LEVELS, prepare, speech_frames
from edge_ser.whisper_mel import whisper_log_mel
from training import features

STATE_POOLING = "mean_std"


class WhisperStates:
    """Callable like features.Yamnet: window -> ([n_states, 2 * d_model] pooled rows, zeros).

    window_level speech: the window goes through edge_ser.speech_level.prepare first (as the daemon
    does for such a model) and each state gets two rows, all frames and speech frames only:
    [state_0 .. state_k, state_0 over speech .. state_k over speech].
    """

    def __init__(self, encoder: Path, threads: int = 1, window_level: str = "raw") -> None:
        if not Path(encoder).is_file():
            raise ModelError(f"Whisper encoder graph not found: {encoder} "
                             "(make it with `python -m convert whisper-encoder --layers all`)")
        self._backend = OnnxBackend(encoder, threads=threads)
        self.name = Path(encoder).name
        if window_level not in LEVELS:
            raise ModelError(f"window level must be one of {', '.join(LEVELS)}, got {window_level!r}")
        self.window_level = window_level

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prepared = prepare(window) if self.window_level == "speech" else None
        x = window if prepared is None else prepared.samples
        states = self._backend.run({"mel": whisper_log_mel(x)[None]})["hidden"]
        rows = [pool_frames(s, STATE_POOLING) for s in states]
        if prepared is not None:
            rows += [pool_frames(s, STATE_POOLING) for s in speech_frames(states, prepared.speech)]
        return np.stack(rows), np.zeros(len(rows), np.float32)


def mark_cache(cache: Path, backbone: str, encoder: Path, window_level: str = "raw",
               states: tuple[int, ...] | None = None) -> None:
    """training.features.mark_cache for a hidden-state cache (its rows: one per state, pooled)."""
    rows = f"one per hidden state, {STATE_POOLING}"
    if window_level == "speech":
        rows += "; then one per hidden state over the speech frames only"
    features.mark_cache(cache, backbone, encoder, window_level, states, rows)
