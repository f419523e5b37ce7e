"""convert hubert: a random tiny HuBERT + head -> ONNX (dynamic length) -> INT8 ONNX, and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from convert import cli, hubert, hubert_ckpt  # noqa: E402
from edge_ser.backends.onnx import OnnxBackend  # noqa: E402
from edge_ser.errors import UserError  # noqa: E402
from edge_ser.manifest import load_manifest  # noqa: E402


def test_tiny_hubert_exports_and_quantizes(tmp_path: Path) -> None:
    results = hubert.convert_hubert(
        None,
        None,
        tmp_path / "models" / "heads",
        "tiny",
        None,
        tmp_path / "models" / "manifest.yaml",
        random_tiny=True,
        candidates=("int8-matmul",),
        reports_dir=tmp_path / "reports",
        latency_runs=2,
        command="test",
    )
    fp32, int8 = results
    assert fp32.passed and int8.passed and int8.path.is_file()
    report = json.loads(int8.report.read_text())
    assert report["chosen"] == "int8-matmul" and report["opset"] >= 17
    assert report["parity"]["accuracy_drop_pt"] <= 1.0

    # dynamic length axis: the daemon's ONNX backend runs other window lengths too
    model, _, _ = hubert.load_model(None, None, None, random_tiny=True)
    be = OnnxBackend(fp32.path)
    x = np.random.default_rng(1).normal(0, 0.1, (1, 24000)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = be.run({"waveform": x})["probs"]
    assert got.shape == (1, 5) and np.abs(got - want).max() < 1e-4

    m = load_manifest(tmp_path / "models" / "manifest.yaml")
    assert m.get("tiny-int8").backbone is None and m.get("tiny-int8").quantization == "dynamic"


def test_fairseq_names_map_onto_transformers() -> None:
    tr = hubert._transformers()
    model = tr.HubertModel(tr.HubertConfig(**hubert.TINY_CONFIG))
    inverse = {
        "feature_projection.projection.": "post_extract_proj.",
        "feature_projection.layer_norm.": "layer_norm.",
        "encoder.pos_conv_embed.conv.": "encoder.pos_conv.0.",
        "masked_spec_embed": "mask_emb",
    }
    layer = {b: a for a, b in hubert_ckpt._LAYER_RENAMES}
    fairseq = {}
    for k, v in model.state_dict().items():
        k2 = k.replace(".conv_layers.0.layer_norm.", ".conv_layers.0.2.").replace(".conv.weight", ".0.weight")
        k2 = k2.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        for a, b in inverse.items():
            k2 = b + k2[len(a) :] if k2.startswith(a) else k2
        if k2.startswith("encoder.layers."):
            p = k2.split(".", 3)
            k2 = ".".join(
                p[:3] + [next((layer[a] + p[3][len(a) :] for a in layer if p[3].startswith(a)), p[3])]
            )
        fairseq[k2] = v
    fairseq["label_embs_concat"] = torch.zeros(3, 4)
    back = hubert_ckpt.fairseq_to_hf(fairseq)
    assert set(back) == set(model.state_dict())
    layers = hubert_ckpt.conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")
    assert layers[1:3] == [(512, 3, 2)] * 2


def test_bad_hubert_input_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(UserError, match="checkpoint not found"):
        hubert.load_model(tmp_path / "nope", None, None)
    monkeypatch.setattr(sys, "argv", ["convert", "hubert", "--checkpoint", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: checkpoint not found: {tmp_path / 'nope'}"
    ]


def test_head_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    from convert.synthetic import make_head_folder

    head = make_head_folder(tmp_path / "h64", dim=64, hidden=(8,), n_train=40, n_test=10, epochs=2)
    with pytest.raises(UserError, match="does not match backbone hubert"):
        hubert.load_model(None, head, None, random_tiny=True)
