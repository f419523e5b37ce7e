"""What the pipeline and the gate need of a model: EmotionModel (model.py) is the one the daemon loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class Scores(Protocol):
    """A model's answer for one window (model.Prediction)."""

    @property
    def probs(self) -> Mapping[str, float]:
        """Probability per label of the model, summing to 1."""
        ...

    @property
    def speech(self) -> float | None:
        """AudioSet Speech score when the backbone gives one (gate.vad = yamnet), else None."""
        ...

    @property
    def foreground(self) -> float | None:
        """Probability of a foreground talker when the model has a foreground head
        (gate.background_threshold), else None."""
        ...

    @property
    def infer_ms(self) -> float:
        """Model time for this window, in milliseconds."""
        ...


class Classifier(Protocol):
    """A loaded emotion model: one window of float32 MODEL_RATE mono samples in, Scores out."""

    id: str
    """Manifest id (each result message's `model`)."""

    labels: tuple[str, ...]
    """Labels of `Scores.probs`, in the head's order."""

    window_samples: int
    """Samples per window the model was trained on."""

    def predict(self, window: np.ndarray) -> Scores:
        """Classify one window; called from one thread only."""
        ...

    def close(self) -> None:
        """Save what outlives the process (adaptation statistics); once, when it is no longer used."""
        ...
