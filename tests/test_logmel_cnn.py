"""The compact log-mel CNN end to end on a tiny TESS subset: cache -> train (+ resume) -> TFLite -> daemon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from artefact.heads import build_cnn  # noqa: E402
from convert import logmel_cnn as convert_cnn  # noqa: E402
from edge_ser.logmel import log_mel  # noqa: E402
from edge_ser.model import load_model  # noqa: E402
from edge_ser.settings import ModelSettings  # noqa: E402
from training import logmel_cnn  # noqa: E402
from training.cli import cli  # noqa: E402
from training.features import clip_windows  # noqa: E402


def test_cache_train_resume_convert_and_serve(tmp_path: Path) -> None:
    cache, run = tmp_path / "cache", tmp_path / "run"
    logmel_cnn.build_cache("tess", cache=cache, limit=6)
    mel = np.load(cache / "logmel.npy", mmap_mode="r")
    assert mel.shape[1:] == (198, 64)
    args = ["logmel-cnn", "train", "--protocol", "paper", "--corpus", "tess", "--out", str(run),
            "--cache", str(cache), "--max-steps", "2", "--threads", "1", "--no-record"]
    for more in (["--epochs", "1"], ["--epochs", "2", "--patience", "5"]):  # the second resumes
        done = CliRunner().invoke(cli, [*args, *more])
        assert done.exit_code == 0, done.output
    history = [json.loads(ln) for ln in (run / "train.log").read_text().splitlines() if ln.startswith("{")]
    assert [h["epoch"] for h in history] == [1, 2]
    spec = json.loads((run / "head.json").read_text())
    assert sum(p.numel() for p in build_cnn(spec).parameters()) < 2_000_000

    manifest = tmp_path / "models" / "manifest.yaml"
    results = convert_cnn.convert_logmel_cnn(run, None, tmp_path / "models" / "heads", "cnn", ("float32",),
                                             manifest, builder=spec["builder"], reports_dir=tmp_path / "rep",
                                             latency_runs=2)
    assert results[0].passed and results[0].path.is_file()
    # the daemon's own log-mel frontend + the converted file == the trained torch model
    meta = json.loads((cache / "index.json").read_text())
    window = clip_windows(str(Path(meta["root"]) / next(iter(meta["clips"]))), "base")[0]
    model = load_model(ModelSettings(id="cnn-fp32", manifest=str(manifest)))
    got = model.predict(window).probs
    _, ref = convert_cnn.load(run, spec["builder"])
    with torch.no_grad():
        want = ref(torch.from_numpy(log_mel(window)[None, None].astype(np.float32))).numpy()[0]
    assert np.abs(np.array([got[lab] for lab in spec["labels"]]) - want).max() < 1e-3
