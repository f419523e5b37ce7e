"""eGeMAPS functionals (openSMILE eGeMAPSv02, 88 features) per 2 s window, as a training backbone.

A hand-crafted baseline next to the learned backbones: each window the daemon's windower cuts
(training.preprocess.windows) goes through openSMILE's eGeMAPSv02 functionals and becomes one row
of 88 values in the feature cache (`python -m training extract --egemaps`). The values are kept raw
(float32); the cache root's backbone.json marks them `standardise: corpus`, so training.features
z-scores every corpus with its own mean and standard deviation over all its cached windows when it
loads them. For a held-out corpus those are its own statistics, taken without its labels (what a
device could do after listening for a while), not the training corpora's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge_ser.errors import ModelError, UserError
from training.features import BACKBONE_FILE

BACKBONE = "egemaps"
N_FEATURES = 88
SAMPLE_RATE = 16000


class Egemaps:
    """Callable like features.Yamnet: window -> ([1, 88] eGeMAPSv02 functionals, [1] zero)."""

    dtype = np.float32
    """Cache rows are stored as float32 (raw functionals span Hz to fractions; no float16)."""

    def __init__(self) -> None:
        if "tensorflow" in sys.modules:  # the two native runtimes corrupt each other's heap (malloc abort)
            raise UserError("eGeMAPS (openSMILE) cannot run in a process that has loaded TensorFlow: "
                            "extract it in a process of its own (python -m training extract --egemaps)")
        try:
            import opensmile
        except ImportError as exc:  # the train extra installs it
            raise ModelError("opensmile is not installed (pip install -e '.[train]')") from exc
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                      feature_level=opensmile.FeatureLevel.Functionals,
                                      multiprocessing=False, num_workers=None)
        self.names = list(self._smile.feature_names)
        if len(self.names) != N_FEATURES:
            raise ModelError(f"eGeMAPSv02 functionals gave {len(self.names)} features, not {N_FEATURES}")

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(window, dtype=np.float32)
        row = self._smile.process_signal(x, SAMPLE_RATE).to_numpy(dtype=np.float32)
        row = np.nan_to_num(row.reshape(1, N_FEATURES), nan=0.0, posinf=0.0, neginf=0.0)
        return row, np.zeros(1, np.float32)


def mark_cache(cache: Path, names: list[str]) -> None:
    """Write (or check) the cache root's backbone.json for eGeMAPS features."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    mark = cache / BACKBONE_FILE
    new = {"backbone": BACKBONE, "feature_set": "eGeMAPSv02", "level": "functionals",
           "rows": f"one per window, {len(names)} functionals, raw float32", "standardise": "corpus",
           "names": names}
    if mark.is_file():
        old = json.loads(mark.read_text())
        if old.get("backbone") != BACKBONE:
            raise UserError(f"{cache} holds {old.get('backbone')} features ({mark}); use another --cache")
        return
    mark.write_text(json.dumps(new, indent=1) + "\n")


def standardise_corpus(rows: np.ndarray) -> np.ndarray:
    """Z-score every column of one corpus's rows [windows, ..., dim] with that corpus's own mean and
    standard deviation (a constant column becomes 0)."""
    x = np.asarray(rows, dtype=np.float32)
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    return ((x - mean) / std).astype(np.float32)


def measure_cost(n_windows: int = 50, root: Path | None = None, seed: int = 0) -> dict:
    """Seconds of eGeMAPS per 2 s window on this machine (one process, one thread, time.perf_counter),
    over the first `n_windows` windows of a seeded draw of clips from every corpus of All+."""
    import os
    import time
    from datetime import datetime, timezone

    from edge_ser.benchmark import machine
    from training import loaders
    from training.preprocess import load_audio, trim_silence, windows

    rng = np.random.default_rng(seed)
    pool = []
    for c in loaders.expand(["all+"], root):
        clips = sorted(loaders.load_corpus(c, root), key=lambda k: k.path)
        pool += [clips[i] for i in rng.permutation(len(clips))[:n_windows]]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    ws: list[np.ndarray] = []
    for clip in pool:
        ws.extend(windows(trim_silence(load_audio(clip.path))))
        if len(ws) >= n_windows:
            break
    ws = ws[:n_windows]
    model = Egemaps()
    model(ws[0])  # warm-up, not timed
    times = []
    for w in ws:
        t = time.perf_counter()
        model(w)
        times.append(time.perf_counter() - t)
    ms = 1000 * np.asarray(times)
    return {"backbone": BACKBONE, "n_windows": len(ws), "p50_ms": round(float(np.median(ms)), 2),
            "mean_ms": round(float(ms.mean()), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "threads": 1, "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
            "machine": machine(),
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
