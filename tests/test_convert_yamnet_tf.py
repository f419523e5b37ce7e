"""convert.yamnet_tf: a whole YAMNet + head from torch weights -> one waveform-in TFLite file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from convert.tflite_export import export_concrete  # noqa: E402
from convert.yamnet_tf import n_patches, yamnet_function  # noqa: E402
from edge_ser.backends.tflite import TFLiteBackend  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
YAMNET = REPO.parent / "shared" / "weights" / "yamnet" / "yamnet.tflite"


def test_tf_rebuild_matches_torch_yamnet_and_exports_with_a_head(tmp_path: Path) -> None:
    from training.yamnet_model import YAMNet

    torch.manual_seed(0)
    yamnet = YAMNet.from_tflite(YAMNET)
    x, _ = sf.read(REPO / "tests" / "fixtures" / "speech_angry_sad.wav", dtype="float32")
    x = x[:32000]
    with torch.no_grad():
        scores, emb, _ = yamnet(torch.from_numpy(x))
    assert n_patches(32000) == emb.shape[0] == 4

    fn = yamnet_function(yamnet.state_dict(), None, scores=True)
    out = fn(x[None])
    assert np.abs(out["output_0"].numpy() - emb.numpy()).max() < 1e-4
    assert np.abs(out["output_1"].numpy() - scores.numpy()).max() < 1e-4

    head = nn.Sequential(nn.Linear(1024, 5), nn.Softmax(dim=-1)).eval()
    blob = export_concrete(yamnet_function(yamnet.state_dict(), head), ["waveform"], ["probs"], "float16")
    (tmp_path / "yamnet-head.tflite").write_bytes(blob)
    with torch.no_grad():
        want = head(emb.mean(0, keepdim=True)).numpy()
    got = TFLiteBackend(tmp_path / "yamnet-head.tflite").run({"waveform": x[None]})["probs"]
    assert np.abs(got - want).max() < 1e-3
