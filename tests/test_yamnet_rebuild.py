"""The torch rebuild of YAMNet (training/yamnet_model.py) reproduces yamnet.tflite on real speech."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import SHARED  # noqa: E402
from training.tflite_weights import yamnet_arrays  # noqa: E402
from training.yamnet_model import YAMNet, mel_matrix, num_patches, periodic_hann  # noqa: E402
from training.yamnet_parity import TfliteYamnet, cosine  # noqa: E402

TFLITE = SHARED / "weights" / "yamnet" / "yamnet.tflite"
CORPORA = SHARED / "corpora"
# one clip each from four corpora (three languages), 1.3 s to 3.6 s long
FILES = [
    "ravdess/Audio_Speech_Actors_01-24/Actor_01/03-01-05-01-01-01-01.opus",
    "crema-d/AudioWAV/1001_DFA_ANG_XX.opus",
    "banglaser/01-01-04-02-03-01-15.opus",
    "nemo/samples/EB0_anger_1.opus",
]


@pytest.fixture(scope="module")
def reference():
    if not TFLITE.is_file():
        pytest.fail(f"YAMNet weights missing at {TFLITE} (see shared/weights/README.md)")
    return TfliteYamnet(TFLITE)


def _clip(rel: str) -> np.ndarray:
    from training.preprocess import load_audio

    return load_audio(str(CORPORA / rel))


def test_weights_are_read_and_dequantized():
    arrays = yamnet_arrays(TFLITE)
    assert arrays["backbone.layer14.pw.weight"].shape == (1024, 1024, 1, 1)
    assert arrays["backbone.layer7.dw.weight"].shape == (256, 1, 3, 3)
    assert arrays["logits.weight"].shape == (521, 1024)
    # the file stores the published frontend's constants: periodic Hann, HTK mel matrix (INT8), 0.001
    assert np.abs(arrays["frontend.window"] - periodic_hann()).max() < 1e-6
    assert np.abs(arrays["frontend.mel"] - mel_matrix()).max() < 0.005  # INT8 step of the stored matrix
    assert np.allclose(arrays["frontend.mel_bias"], 0.001)


def test_rebuild_matches_tflite_embeddings_and_top_class(reference):
    model = YAMNet.from_tflite(TFLITE, tflite_mel=True)
    cos, same_top = [], []
    for rel in FILES:
        wave = _clip(rel)
        out = reference(wave)
        with torch.no_grad():
            scores, emb, log_mel = model(torch.from_numpy(wave))
        assert emb.shape[0] == out["Identity_1"].shape[0] == num_patches(wave.size)
        # identical log-mel but for rare rounding ties in the emulated INT8 input quantization
        assert np.mean(np.abs(log_mel.numpy() - out["Identity_2"]) < 1e-3) > 0.999
        cos.append(cosine(emb.numpy(), out["Identity_1"]))
        same_top.append(scores.numpy().argmax(1) == out["Identity"].argmax(1))
    cos, same_top = np.concatenate(cos), np.concatenate(same_top)
    assert cos.min() >= 0.99, cos.min()
    assert same_top.mean() >= 0.98


def test_frame_count_matches_published_padding(reference):
    for n in (15600, 15601, 23280, 32000):
        out = reference(np.zeros(n, dtype=np.float32))
        assert out["Identity_1"].shape[0] == num_patches(n)
