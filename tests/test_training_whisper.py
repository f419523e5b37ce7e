"""Whisper hidden-state features through the training pipeline, on a tiny real SAVEE subset:
encoder graph -> cache of pooled states -> state choice -> heads (linear, weighted sum of states)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from artefact.heads import build_head
from convert.whisper_encoder import encoder_states, export_onnx
from edge_ser.backends.onnx import OnnxBackend
from edge_ser.pooling import pool_states
from edge_ser.whisper_mel import whisper_log_mel
from tests.conftest import copy_savee_split
from training import features, runner
from training.dataset import _pool_all
from training.whisper_states import WhisperStates, mark_cache

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WHISPER = SHARED / "weights" / "whisper-tiny.en"
PICK = ("a01", "d01", "f01", "h01", "n01", "sa01", "su01", "a02", "h02", "sa02")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whisper")
    root, clips = copy_savee_split(tmp, PICK)
    graph = export_onnx(encoder_states(WHISPER, (0, 1, 2, 3, 4))[0], tmp / "enc.onnx")
    cache = tmp / "cache"
    mark_cache(cache, "whisper-tiny.en", graph)
    features.extract(clips, "savee", "base", cache, progress=False, model=WhisperStates(graph))
    return tmp, root, clips, graph, cache


def test_cached_states_are_what_the_daemon_pools(tiny):
    tmp, root, clips, graph, cache = tiny
    assert features.backbone_of(cache) == "whisper-tiny.en"
    cc = features.load_cache("savee", "base", cache)
    assert cc.frames.shape[1:] == (5, 768)
    c = clips[3]
    window = features.clip_windows(c.path, "base")[0]
    states = OnnxBackend(graph).run({"mel": whisper_log_mel(window)[None]})["hidden"]
    s, _ = cc.index[c.path]
    # state 2 alone, mean_std, as a daemon whose graph returns only state 2 pools it
    daemon = pool_states(states[2:3], "mean_std")
    assert np.allclose(_pool_all(cc.frames[s:s + 1], "mean_std@2")[0], daemon, atol=2e-2)
    both = pool_states(states[[1, 2]], "mean")
    assert np.allclose(_pool_all(cc.frames[s:s + 1], "mean@1+2")[0], both, atol=2e-2)


@pytest.mark.parametrize("arch,pooling,dim",
                         [("linear", "mean_std@2", 768), ("wsum", "mean@0+1+2+3+4", 1920)])
def test_heads_train_on_chosen_states(tiny, arch, pooling, dim):
    tmp, root, _, _, cache = tiny
    rec, results = runner.run_protocol("speaker_independent", "savee", None, "merged", arch, pooling, 0,
                                       "one", 0.0, f"w-{arch}", "python -m training run ...",
                                       save_to=tmp / f"head-{arch}", root=root, cache=cache,
                                       split_dir=tmp / "splits", log=None)
    spec = results[0].fitted.spec
    assert spec["backbone"] == "whisper-tiny.en" and spec["pooling"] == pooling and spec["input_dim"] == dim
    assert rec["n_test"] == 40 and 0.0 <= rec["uar"] <= 1.0
    head = build_head(spec)
    assert head(torch.zeros(3, dim)).shape == (3, 5)
    if arch == "wsum":
        assert head.n_states == 5 and head.dim == 384
