"""Optional smoothing of class probabilities over consecutive speech windows."""

from __future__ import annotations

from collections import Counter, deque

from .settings import SmoothingSettings


class Smoother:
    """ema: exponential moving average of probabilities; majority: label voted over the last n windows.

    A silence stretch resets it, so one utterance's emotion does not leak into the next one.
    """

    def __init__(self, settings: SmoothingSettings) -> None:
        self.settings = settings
        self._ema: dict[str, float] | None = None
        self._recent: deque[dict[str, float]] = deque(maxlen=settings.n)

    def reset(self) -> None:
        self._ema = None
        self._recent.clear()

    def update(self, probs: dict[str, float]) -> tuple[str, dict[str, float]]:
        """Add one window's probabilities; return the (label, probabilities) to publish."""
        method = self.settings.method
        if method == "ema":
            a = self.settings.alpha
            if self._ema is None or set(self._ema) != set(probs):
                self._ema = dict(probs)
            else:
                self._ema = {k: a * probs[k] + (1 - a) * self._ema[k] for k in probs}
            out = self._ema
            return max(out, key=out.__getitem__), dict(out)
        if method == "majority":
            self._recent.append(dict(probs))
            votes = Counter(max(p, key=p.__getitem__) for p in self._recent)
            top = max(votes.values())
            # Ties go to the most recent window's winner among the tied labels.
            for p in reversed(self._recent):
                label = max(p, key=p.__getitem__)
                if votes[label] == top:
                    break
            keys = probs.keys()
            mean = {k: sum(p.get(k, 0.0) for p in self._recent) / len(self._recent) for k in keys}
            return label, mean
        return max(probs, key=probs.__getitem__), dict(probs)
