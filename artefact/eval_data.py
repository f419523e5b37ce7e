"""The features a conversion is calibrated and checked on: an .npz with the saved splits.

Format (written by `save_eval`, e.g. by training/ beside a head as `<head folder>/eval.npz`):
  train_x  float32 [n, input_dim]   training-split features (the INT8 representative dataset)
  test_x   float32 [m, input_dim]   test-split features (parity and accuracy)
  test_y   int64   [m]              index into `labels` of each test row
  labels   str     [n_labels]       label order of test_y (must equal the head's labels)
For whole models the rows are model inputs (e.g. waveforms [m, samples]) instead of features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ser.errors import UserError

EVAL_NAME = "eval.npz"
"""File name looked for inside a head folder when --features is not given."""


@dataclass(frozen=True)
class EvalData:
    """Calibration and test rows for one model."""

    train_x: np.ndarray
    """Training-split inputs (representative dataset)."""

    test_x: np.ndarray
    """Test-split inputs."""

    test_y: np.ndarray | None
    """Test labels as indices into `labels`; None for unlabelled rows (parity measures agreement only)."""

    labels: tuple[str, ...]
    """Label order of test_y."""

    source: str
    """Where the rows came from (for the report)."""

    def representative(self, n: int = 300, seed: int = 0, stretch: float = 1.0) -> list[list[np.ndarray]]:
        """Up to n training rows, seeded, each as a batch of one ([[x[None]], ...]).

        stretch > 1 adds the 8 most extreme rows pushed further from the mean (mean + stretch *
        (x - mean)), so calibrated ranges leave room for test rows beyond the training extremes
        (measured: a saturated range caused probability errors up to 0.27 on such rows).
        """
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(self.train_x))[:n]
        rows = [self.train_x[i][None].astype(np.float32) for i in idx]
        if stretch > 1.0:
            mean = self.train_x.mean(axis=0)
            z = np.abs(self.train_x - mean) / (self.train_x.std(axis=0) + 1e-6)
            for i in np.argsort(z.max(axis=1))[-8:]:
                rows.append((mean + stretch * (self.train_x[i] - mean))[None].astype(np.float32))
        return [[r] for r in rows]


def save_eval(
    path: str | Path,
    train_x: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    labels: list[str] | tuple[str, ...],
) -> Path:
    """Write the .npz this module reads (label indices must refer to `labels`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        train_x=np.asarray(train_x, np.float32),
        test_x=np.asarray(test_x, np.float32),
        test_y=np.asarray(test_y, np.int64),
        labels=np.array(list(labels)),
    )
    return path


def load_eval(
    path: str | Path, labels: list[str] | tuple[str, ...], input_dim: int | None = None
) -> EvalData:
    """Read and check an eval .npz against a model's labels and input size."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"features file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
        missing = [k for k in ("train_x", "test_x", "test_y") if k not in z.files]
        if missing:
            raise UserError(f"{path} lacks {', '.join(missing)} (see convert/README.md for the format)")
        train_x, test_x = z["train_x"].astype(np.float32), z["test_x"].astype(np.float32)
        test_y = z["test_y"]
        file_labels = tuple(str(s) for s in z["labels"]) if "labels" in z.files else tuple(labels)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read features file {path}: {exc}") from None
    if test_y.dtype.kind in "US":  # label names instead of indices
        lookup = {name: i for i, name in enumerate(labels)}
        unknown = sorted(set(test_y.tolist()) - set(lookup))
        if unknown:
            raise UserError(f"{path}: test labels {unknown} are not among the model's labels")
        test_y = np.array([lookup[s] for s in test_y.tolist()])
    elif file_labels != tuple(labels):
        raise UserError(f"{path} labels {list(file_labels)} differ from the model's {list(labels)}")
    if len(train_x) == 0 or len(test_x) == 0 or len(test_x) != len(test_y):
        raise UserError(f"{path}: need non-empty train_x, test_x and one test_y per test row")
    if input_dim is not None and (train_x.shape[-1] != input_dim or test_x.shape[-1] != input_dim):
        raise UserError(
            f"{path}: feature size {test_x.shape[-1]} does not match the head input_dim {input_dim}"
        )
    return EvalData(train_x, test_x, test_y.astype(np.int64), tuple(labels), str(path))
