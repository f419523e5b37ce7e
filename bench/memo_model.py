"""A model wrapper that remembers its predictions by window content (the streaming benchmarks rerun
the same windows for every smoothing and gate setting)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np


class MemoModel:
    """Wraps an EmotionModel; remembers predictions by window content (reruns for other smoothings).

    With `store`, the memo is kept on disk (under cache/, keyed by the model's file hashes), so a rerun
    that adds models or smoothings does not recompute windows it has already seen.
    """

    def __init__(self, model: Any, store: Path | None = None):
        self._model = model
        self._store = store
        self._memo: dict[bytes, Any] = {}
        if store is not None and store.exists():
            with store.open("rb") as f:
                self._memo = pickle.load(f)
        self.id, self.labels, self.window_samples = model.id, model.labels, model.window_samples
        self.has_speech_score = getattr(model, "has_speech_score", False)
        self.calls = 0

    def predict(self, window: np.ndarray) -> Any:
        key = hashlib.blake2b(np.ascontiguousarray(window, np.float32).tobytes(), digest_size=16).digest()
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._model.predict(window)
            self.calls += 1
        return hit

    def close(self) -> None:
        """Nothing to release: save() writes the memo."""

    def save(self) -> None:
        if self._store is not None and self.calls:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._store.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump(self._memo, f)
            tmp.replace(self._store)
