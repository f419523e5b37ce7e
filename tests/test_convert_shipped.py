"""The shipped default model's TFLite files were made from the committed head folder (no drift)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from edge_ser.backends.tflite import TFLiteBackend  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "models" / "manifest.yaml"


def _converted_entries() -> list[tuple[str, dict]]:
    models = yaml.safe_load(MANIFEST.read_text())["models"]
    return [
        (mid, e)
        for mid, e in models.items()
        if "convert yamnet-head" in str((e.get("conversion") or {}).get("command", ""))
    ]


@pytest.mark.parametrize("mid,entry", _converted_entries())
def test_converted_head_matches_its_torch_head(mid: str, entry: dict) -> None:
    from artefact.heads import load_head

    report = json.loads((REPO / entry["parity_report"]).read_text())
    folder = REPO / report["source"]
    assert folder.is_dir(), f"{mid}: head folder {folder} is not committed"
    spec, ref = load_head(folder)
    mean, std = np.asarray(spec["feature_mean"], np.float32), np.asarray(spec["feature_std"], np.float32)
    x = np.maximum(0.0, mean + std * np.random.default_rng(0).standard_normal((200, mean.size))).astype(
        np.float32
    )
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    be = TFLiteBackend(REPO / "models" / entry["head"]["file"])
    got = np.concatenate([be.run({"features": row[None]})["probs"] for row in x])
    if entry["quantization"] == "float32":
        assert np.abs(got - want).max() < 1e-4
    else:  # quantized: same answers on nearly every row
        assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95
        assert np.abs(got - want).mean() < 0.01


def _foreground_entries() -> list[tuple[str, dict]]:
    models = yaml.safe_load(MANIFEST.read_text())["models"]
    return [(mid, e) for mid, e in models.items() if e.get("foreground_report")]


@pytest.mark.parametrize("mid,entry", _foreground_entries())
def test_shipped_foreground_head_matches_its_head_folder(mid: str, entry: dict) -> None:
    from artefact.heads import load_head
    from artefact.onnx_head import onnx_runner

    report = json.loads((REPO / entry["foreground_report"]).read_text())
    assert report["agreement"] >= report["min_agreement"]
    assert report["max_abs_diff"] <= report["max_abs_diff_limit"]
    folder = REPO / report["head_folder"]
    assert folder.is_dir(), f"{mid}: foreground head folder {folder} is not committed"
    spec, ref = load_head(folder)
    assert spec["labels"] == entry["foreground_labels"]
    mean, std = np.asarray(spec["feature_mean"], np.float32), np.asarray(spec["feature_std"], np.float32)
    x = (mean + std * np.random.default_rng(0).standard_normal((200, mean.size))).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    run = onnx_runner(REPO / "models" / entry["foreground_head"]["file"])
    got = np.concatenate([run(row[None]) for row in x])
    assert np.abs(got - want).max() < 1e-4
