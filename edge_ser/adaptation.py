"""Room/microphone adaptation: standardise pooled features with this device's own running statistics.

A head is trained on features from studio corpora; a living room with its own microphone shifts
every feature. The adapter keeps a running mean/variance of the pooled features of the windows the
daemon classifies (speech only: gated windows never reach the model), and maps each window so that
the device's statistics line up with the training data's (the model's reference statistics):

    x' = (x - mean_device) / std_device * std_ref + mean_ref

The head then standardises x' with the training statistics folded into it, so it sees features
standardised per device, the way per-corpus standardisation works in training. Until the device has
seen enough windows, its statistics are shrunk towards the reference (`prior` pseudo-windows), so
a fresh device starts as the identity. After `horizon` windows the statistics become an exponential
moving average, so they follow a device that moves rooms. Only the statistics (two vectors and a
count) are stored, never audio.

Manifest: the entry names its reference statistics file under `adaptation: {reference: <file>,
sha256: <hex>}` (a JSON with "mean" and "std" lists); edge_ser.model finds it along the search path
and checks its sha256 like any model file before handing it here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

PRIOR = 30.0
"""Pseudo-windows of reference statistics a fresh device starts with."""
HORIZON = 5000
"""Windows after which the statistics become an exponential moving average (about 1.4 h of speech)."""
SAVE_EVERY_S = 60.0
"""Seconds between writes of the state file (plus one at the end)."""


class RunningStats:
    """Welford mean/variance with an optional forgetting horizon."""

    def __init__(self, dim: int, horizon: int = HORIZON) -> None:
        self.n = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.var = np.zeros(dim, dtype=np.float64)
        self.horizon = horizon

    def update(self, x: np.ndarray) -> None:
        # w = 1/n is exactly Welford's population mean/variance; w = 1/horizon an EMA of both
        self.n += 1
        w = 1.0 / min(self.n, self.horizon)
        delta = x - self.mean
        self.mean += w * delta
        self.var = (1 - w) * (self.var + w * delta * delta)


class FeatureAdapter:
    """Callable features[dim] -> features[dim]; updates its statistics with every call."""

    def __init__(self, ref_mean: np.ndarray, ref_std: np.ndarray, state_path: str | Path | None = None,
                 model_id: str = "", prior: float = PRIOR, horizon: int = HORIZON,
                 save_every_s: float = SAVE_EVERY_S) -> None:
        self.ref_mean = np.asarray(ref_mean, dtype=np.float64)
        self.ref_std = np.maximum(np.asarray(ref_std, dtype=np.float64), 1e-6)
        self.stats = RunningStats(self.ref_mean.size, horizon)
        self.prior = float(prior)
        self.model_id = model_id
        self.state_path = Path(state_path) if state_path else None
        self.save_every_s = save_every_s
        self._last_save = time.monotonic()
        if self.state_path is not None:
            self._load()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64).reshape(-1)
        if x.size != self.ref_mean.size:
            raise ModelError(f"adaptation statistics have {self.ref_mean.size} features, the model "
                             f"gives {x.size}")
        self.stats.update(x)
        out = self.transform(x)
        if self.state_path is not None and time.monotonic() - self._last_save >= self.save_every_s:
            self.save()
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map x with the current statistics (no update)."""
        n = min(self.stats.n, self.stats.horizon)
        k = self.prior
        mean = (n * self.stats.mean + k * self.ref_mean) / (n + k)
        # variances blended like the means (no cross term: a device far from the reference would
        # otherwise look noisy for as long as the prior weighs in)
        var = (n * self.stats.var + k * self.ref_std ** 2) / (n + k)
        std = np.sqrt(np.maximum(var, 1e-12))
        return ((x - mean) / std * self.ref_std + self.ref_mean).astype(np.float32)

    def save(self) -> None:
        """Write the statistics atomically (mode 0600: they describe this device's audio)."""
        if self.state_path is None:
            return
        self._last_save = time.monotonic()
        state = {"version": 1, "model": self.model_id, "n": self.stats.n, "horizon": self.stats.horizon,
                 "mean": self.stats.mean.tolist(), "var": self.stats.var.tolist()}
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".adapt-")
            with os.fdopen(fd, "w") as fh:
                json.dump(state, fh)
            os.replace(tmp, self.state_path)
        except OSError as exc:  # a read-only state dir must not stop the daemon
            log.warning("cannot save adaptation state to %s: %s", self.state_path, exc)

    def _load(self) -> None:
        p = self.state_path
        if p is None or not p.is_file():
            return
        try:
            s = json.loads(p.read_text())
            mean, var = np.asarray(s["mean"], np.float64), np.asarray(s["var"], np.float64)
            if s.get("model") != self.model_id or mean.size != self.ref_mean.size or var.size != mean.size:
                log.warning("adaptation state %s belongs to another model; starting empty", p)
                return
            self.stats.n, self.stats.mean, self.stats.var = int(s["n"]), mean, var
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("adaptation state %s unreadable (%s); starting empty", p, exc)


def default_state_path(model_id: str) -> Path:
    """$XDG_STATE_HOME/edge-ser/adapt-<model>.json (~/.local/state by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-ser" / f"adapt-{model_id}.json"


def read_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Reference statistics file: {"mean": [...], "std": [...]}."""
    try:
        d = json.loads(Path(path).read_text())
        return np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"adaptation reference {path} unreadable: {exc}") from exc


def load_adapter(reference: Path, state: Path, model_id: str) -> FeatureAdapter:
    """The adapter of model `model_id`: `reference` is its statistics file, already found and checked
    by sha256 (edge_ser.model); `state` is where the device's statistics are kept across restarts."""
    mean, std = read_reference(reference)
    return FeatureAdapter(mean, std, state, model_id=model_id)
