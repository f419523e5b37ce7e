"""Whisper log-mel frontend (edge_ser.whisper_mel) against transformers' WhisperFeatureExtractor."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ser.whisper_mel import n_frames, whisper_log_mel
from tests.conftest import SHARED

REFERENCE = SHARED / "weights" / "whisper-tiny.en" / "reference.npz"


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30,
                                   n_fft=400)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_matches_whisper_feature_extractor_on_30s_padded_clips(reference, extractor, i: int) -> None:
    audio = reference[f"audio_{i}"]
    padded = np.zeros(30 * 16000, np.float32)
    padded[: len(audio)] = audio
    ours = whisper_log_mel(padded)
    theirs = extractor(audio, sampling_rate=16000, return_tensors="np")["input_features"][0]
    assert ours.shape == theirs.shape == (80, 3000)
    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(ours - reference[f"mel_{i}"]).max() <= 1e-4


@pytest.mark.parametrize("i", [0, 2])
def test_matches_on_a_2s_window_normalised_on_its_own(reference, extractor, i: int) -> None:
    window = reference[f"audio_{i}"][4000:36000]
    ours = whisper_log_mel(window)
    theirs = extractor(window, sampling_rate=16000, return_tensors="np", padding="longest")
    theirs = theirs["input_features"][0]
    assert ours.shape == theirs.shape == (80, n_frames(32000)) == (80, 200)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_floor_is_eight_bels_below_the_loudest_bin() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(16000, np.float32), 0.5 * rng.standard_normal(16000).astype(np.float32)])
    mel = whisper_log_mel(x)
    assert mel.dtype == np.float32 and np.isfinite(mel).all()
    assert mel.min() == pytest.approx(mel.max() - 2.0, abs=1e-5)  # 8 bels / 4 after (x + 4) / 4


def test_too_short_input_is_refused() -> None:
    with pytest.raises(ValueError, match="samples"):
        whisper_log_mel(np.zeros(100, np.float32))
