"""Honest measurement of edge_ser.adaptation on a held-out corpus (protocol c).

The test corpus is streamed window by window through the same FeatureAdapter the daemon uses,
statistics starting empty: in corpus order (sorted file names, which for several corpora means
grouped by speaker or even by emotion, a hard case) and in a seeded random clip order (closer to
a room where emotions alternate). For reference, 'oracle' standardises with the statistics of the
whole test corpus at once (not available to a device).
"""

from __future__ import annotations

import numpy as np
import torch

from artefact.heads import build_inference_model
from edge_ser.adaptation import FeatureAdapter
from training.dataset import Part
from training.evaluate import clip_probs, metrics


def _probs(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, np.float32))).numpy()


def streamed(spec: dict, state: dict, part: Part, order: str = "corpus", seed: int = 0) -> np.ndarray:
    """Clip probabilities when each window is adapted with the statistics seen so far."""
    model = build_inference_model(spec, state)
    adapter = FeatureAdapter(np.asarray(spec["feature_mean"]), np.asarray(spec["feature_std"]))
    clips = np.arange(part.n_clips)
    if order == "shuffled":
        clips = np.random.default_rng(seed).permutation(part.n_clips)
    windows_of = [[] for _ in range(part.n_clips)]
    for w, c in enumerate(part.clip):
        windows_of[c].append(w)
    adapted = np.empty_like(part.x, dtype=np.float32)
    for c in clips:
        for w in windows_of[c]:
            adapted[w] = adapter(part.x[w])
    return clip_probs(_probs(model, adapted), part.clip, part.n_clips)


def oracle(spec: dict, state: dict, part: Part) -> np.ndarray:
    model = build_inference_model(spec, state)
    mu, sd = part.x.mean(axis=0), np.maximum(part.x.std(axis=0), 1e-3)
    x = (part.x - mu) / sd * np.asarray(spec["feature_std"]) + np.asarray(spec["feature_mean"])
    return clip_probs(_probs(model, x), part.clip, part.n_clips)


def evaluate_adaptation(spec: dict, state: dict, part: Part, labels: tuple[str, ...]) -> dict:
    """Metrics for each way of adapting: stream_corpus_order, stream_shuffled, oracle_batch."""
    out = {}
    for name, p in (("stream_corpus_order", streamed(spec, state, part, "corpus")),
                    ("stream_shuffled", streamed(spec, state, part, "shuffled")),
                    ("oracle_batch", oracle(spec, state, part))):
        m = metrics(part.y, p.argmax(axis=1), labels)
        out[name] = {k: m.get(k) for k in ("accuracy", "macro_f1", "uar", "uar4", "n_test")}
    return out
