"""Whisper encoder features for the training cache: a 2 s window -> each hidden state, pooled.

Runs the encoder graph that `python -m convert whisper-encoder` exported (FP32, every hidden state)
through the daemon's own ONNX backend, on the daemon's own Whisper log-mel of the window, and pools
each state's frames with the daemon's pool_frames. Only mean_std rows are kept per state (mean is
their first half), so any choice of states and pooling can be trained from one cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_ser.backends.onnx import OnnxBackend
from edge_ser.errors import ModelError
from edge_ser.features import pool_frames
from edge_ser.whisper_mel import whisper_log_mel
from training.features import BACKBONE_FILE

STATE_POOLING = "mean_std"


class WhisperStates:
    """Callable like features.Yamnet: window -> ([n_states, 2 * d_model] pooled rows, zeros)."""

    def __init__(self, encoder: Path, threads: int = 1) -> None:
        if not Path(encoder).is_file():
            raise ModelError(f"Whisper encoder graph not found: {encoder} "
                             "(make it with `python -m convert whisper-encoder --layers all`)")
        self._backend = OnnxBackend(encoder, threads=threads)
        self.name = Path(encoder).name

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        states = self._backend.run({"mel": whisper_log_mel(window)[None]})["hidden"]
        rows = np.stack([pool_frames(s, STATE_POOLING) for s in states])
        return rows, np.zeros(len(rows), np.float32)


def mark_cache(cache: Path, backbone: str, encoder: Path) -> None:
    """Write the cache root's backbone.json (which backbone, which graph, how rows are pooled)."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / BACKBONE_FILE).write_text(json.dumps(
        {"backbone": backbone, "encoder": str(encoder), "rows": f"one per hidden state, {STATE_POOLING}"},
        indent=1) + "\n")
