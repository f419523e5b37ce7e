"""Shared test helpers: repository paths, a tiny fake model, running the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge_ser.labels import EMOTIONS

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "fixtures"
SPEECH = FIXTURES / "speech_angry_sad.wav"
TESS = SHARED / "corpora" / "tess" / "TESS Toronto emotional speech set data"


@dataclass(frozen=True)
class FakePrediction:
    probs: dict[str, float]
    speech: float | None
    infer_ms: float


class FakeModel:
    """Has the EmotionModel interface; its answer is a pure function of the window, so tests can predict it.

    Loud windows (RMS > 0.03) are anger_disgust, quieter ones sadness. `delay_s` simulates a slow model;
    `speech` is the fixed YAMNet-like speech score (None = model without one).
    """

    def __init__(self, delay_s: float = 0.0, speech: float | None = None, window_samples: int = 32000,
                 model_id: str = "fake") -> None:
        self.id = model_id
        self.labels = EMOTIONS
        self.window_samples = window_samples
        self.delay_s = delay_s
        self.speech = speech
        self.calls = 0

    def predict(self, window: np.ndarray) -> FakePrediction:
        t0 = time.perf_counter()
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        level = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
        top = "anger_disgust" if level > 0.03 else "sadness"
        probs = {k: (0.7 if k == top else 0.1) for k in self.labels}
        return FakePrediction(probs, self.speech, (time.perf_counter() - t0) * 1000)


def copy_savee(dst: Path, stems: tuple[str, ...]) -> Path:
    """A SAVEE corpus under dst holding only `stems` of each of its 4 speakers: tiny real training data."""
    src = SHARED / "corpora" / "savee" / "AudioData"
    for spk in ("DC", "JE", "JK", "KL"):
        for stem in stems:
            out = dst / "savee" / "AudioData" / spk / f"{stem}.opus"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / spk / f"{stem}.opus", out)
    return dst


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for an `edge-ser` subprocess that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python -m edge_ser ARGS` to completion; stdout/stderr as text."""
    return subprocess.run([sys.executable, "-m", "edge_ser", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or cli_env(), cwd=cwd)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr (besides runtime banners) naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("edge-ser: error:")]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
