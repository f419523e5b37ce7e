"""Measure how faithfully training/yamnet_model.py rebuilds yamnet.tflite on real corpus files.

    python -m training yamnet-parity --files 200 --out training/reports/yamnet_rebuild_parity.json

Per frame: cosine similarity of the 1024-d embeddings (rebuild vs the file's Identity_1) and
whether the top AudioSet class (Identity) is the same. Reported for both frontends of the rebuild:
`tflite_mel` (emulates the file's INT8 mel product, the mode the fine-tuned model trains in) and
`float` (the published float frontend).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from training.loaders import available, load_corpus
from training.yamnet_model import YAMNet

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TFLITE = REPO.parent / "shared" / "weights" / "yamnet" / "yamnet.tflite"


class TfliteYamnet:
    """yamnet.tflite through ai_edge_litert, resized per clip."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(str(path), num_threads=threads)
        self.input = self.interp.get_input_details()[0]["index"]

    def __call__(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        self.interp.resize_tensor_input(self.input, [wave.size])
        self.interp.allocate_tensors()
        self.interp.set_tensor(self.input, wave.astype(np.float32))
        self.interp.invoke()
        outputs = self.interp.get_output_details()
        return {d["name"]: self.interp.get_tensor(d["index"]).copy() for d in outputs}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; two all-zero rows (silent frames after ReLU) count as identical."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    return np.where(both_zero, 1.0, cos)


def compare(paths: list[str], tflite: Path, threads: int = 1) -> dict:
    from training.preprocess import load_audio

    torch.set_num_threads(threads)
    ref = TfliteYamnet(tflite, threads)
    rebuilds = {"tflite_mel": YAMNet.from_tflite(tflite, tflite_mel=True),
                "float": YAMNet.from_tflite(tflite, tflite_mel=False)}
    per = {k: {"cos": [], "top": []} for k in rebuilds}
    for path in paths:
        wave = load_audio(path)
        out = ref(wave)
        for name, model in rebuilds.items():
            with torch.no_grad():
                scores, emb, _ = model(torch.from_numpy(wave))
            per[name]["cos"].append(cosine(emb.numpy(), out["Identity_1"]))
            per[name]["top"].append(scores.numpy().argmax(1) == out["Identity"].argmax(1))
    report = {"files": len(paths), "tflite": str(tflite.name)}
    for name, vals in per.items():
        cos = np.concatenate(vals["cos"])
        top = np.concatenate(vals["top"])
        report[name] = {
            "frames": int(cos.size),
            "cosine_mean": float(cos.mean()),
            "cosine_min": float(cos.min()),
            "cosine_p01": float(np.percentile(cos, 1)),
            "frames_cosine_ge_0.99": float((cos >= 0.99).mean()),
            "files_mean_cosine_ge_0.99": float(np.mean([c.mean() >= 0.99 for c in vals["cos"]])),
            "top_class_agreement": float(top.mean()),
        }
    return report


def sample_files(n: int, seed: int = 0) -> list[str]:
    """n files spread evenly over every corpus found, seeded."""
    corpora = available()
    rng = random.Random(seed)
    picked: list[str] = []
    for i, name in enumerate(corpora):
        clips = sorted(c.path for c in load_corpus(name))
        k = n // len(corpora) + (1 if i < n % len(corpora) else 0)
        picked += rng.sample(clips, min(k, len(clips)))
    return picked
