"""A randomly initialised HuBERT-base classifier and its ONNX FP32 / INT8 files, for latency only.

Pretrained HuBERT weights are not available on these machines (../shared/weights/README.md). Latency
does not depend on weight values, so the architecture with random weights gives honest timings of the
ways to serve it: plain transformers/PyTorch float, ONNX FP32, ONNX INT8. Accuracy numbers must never
come from these files.

The ONNX files are made by the conversion toolkit (`convert.hubert.convert_hubert`: the
same export, head folding, input normalisation and INT8 candidate choice a real checkpoint gets), into
a separate manifest under cache/bench/ so the random model never enters models/manifest.yaml.
Everything is cached under cache/bench/ (git-ignored); reruns reuse it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_ser.audio import MODEL_RATE

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "cache" / "bench" / "hubert-random"
MANIFEST = CACHE / "manifest.yaml"
"""Manifest holding hubert-base-random-fp32 / -int8 (paths relative to CACHE)."""
NAME = "hubert-base-random"
LABELS = ("anger_disgust", "fear_surprise", "happiness", "sadness")
WINDOW_SAMPLES = 32000
CANDIDATES = ("int8-matmul",)
"""INT8 settings tried here (all-op INT8 measured slower than float, so only MatMuls are quantised)."""


def torch_dir(seed: int = 0) -> Path:
    """HubertForSequenceClassification, hubert-base config (95 M parameters), random weights, saved
    with a normalising feature-extractor config (as facebook/hubert-base-ls960 ships)."""
    out = CACHE / "torch"
    if not (out / "config.json").exists():
        import torch
        from transformers import HubertConfig, HubertForSequenceClassification, Wav2Vec2FeatureExtractor

        torch.manual_seed(seed)
        # HubertConfig() defaults are the hubert-base architecture (12 layers, 768 wide, 7 conv layers)
        config = HubertConfig(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                              label2id={k: i for i, k in enumerate(LABELS)})
        out.mkdir(parents=True, exist_ok=True)
        HubertForSequenceClassification(config).eval().save_pretrained(out)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=MODEL_RATE, padding_value=0.0,
                                 do_normalize=True, return_attention_mask=False).save_pretrained(out)
    return out


def _eval_npz() -> Path:
    """A few synthetic speech windows for convert's parity step (meaningless with random weights)."""
    from edge_ser.benchmark import speechlike

    path = CACHE / "eval.npz"
    if not path.exists():
        x = speechlike(8 * 2.0, seed=7).reshape(8, WINDOW_SAMPLES)
        np.savez(path, train_x=x[:2], test_x=x[2:], test_y=np.arange(6) % len(LABELS),
                 labels=np.array(LABELS))
    return path


def export_onnx() -> tuple[str, str]:
    """Manifest ids (fp32, int8) of the random HuBERT-base ONNX files in MANIFEST, converting once."""
    ids = (f"{NAME}-fp32", f"{NAME}-int8")
    if MANIFEST.exists():
        from edge_ser.manifest import load_manifest

        if all(i in load_manifest(MANIFEST).models for i in ids):
            return ids
    from convert.hubert import convert_hubert

    results = convert_hubert(
        torch_dir(), None, CACHE / "onnx", NAME, _eval_npz(), manifest=MANIFEST, keep_anyway=True,
        labels=list(LABELS), candidates=CANDIDATES, reports_dir=CACHE / "reports",
        command="python3 -m bench.hubert_random (random weights: latency only)", latency_runs=3,
    )
    for r in results:
        print(r.model_id, r.path, json.loads(r.report.read_text()).get("size_bytes"))
    return ids


if __name__ == "__main__":
    print(export_onnx())
