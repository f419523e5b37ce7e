"""Shared test helpers: repository paths, a tiny fake model, running the CLI; the resource markers.

Markers (pyproject.toml) say what a test needs beyond this checkout; `pytest -m "not needs_shared and
not needs_broker and not needs_alsa"` runs the rest on any machine:

  needs_shared  the team's corpora and weights in ../shared (or where $EDGE_SER_SHARED points)
  needs_broker  a Debian `mosquitto` binary (tests start their own broker)
  needs_alsa    PortAudio and ALSA (tests capture from a virtual microphone)

They are applied here from what a test uses (its fixtures and the names in its code and in the
module helpers it calls), or set by hand where that cannot be seen; a marked test whose resource is
missing is skipped with the reason.
"""

from __future__ import annotations

import ctypes.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge_ser.labels import EMOTIONS
from edge_ser.publish.memory import MemoryPublisher

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_SER_SHARED") or REPO.parent / "shared")
"""The team's corpora and weights (read only): ../shared beside the checkout, or $EDGE_SER_SHARED."""
FIXTURES = REPO / "tests" / "fixtures"
SPEECH = FIXTURES / "speech_angry_sad.wav"
TESS = SHARED / "corpora" / "tess" / "TESS Toronto emotional speech set data"


@dataclass(frozen=True)
class FakePrediction:
    probs: dict[str, float]
    speech: float | None
    infer_ms: float
    foreground: float | None = None


class FakeModel:
    """Has the EmotionModel interface; its answer is a pure function of the window, so tests can predict it.

    Loud windows (RMS > 0.03) are anger_disgust, quieter ones sadness. `delay_s` simulates a slow model;
    `speech` is the fixed YAMNet-like speech score and `foreground` the fixed foreground-head score
    (None = model without one).
    """

    def __init__(self, delay_s: float = 0.0, speech: float | None = None, window_samples: int = 32000,
                 model_id: str = "fake", foreground: float | None = None) -> None:
        self.id = model_id
        self.labels = EMOTIONS
        self.window_samples = window_samples
        self.delay_s = delay_s
        self.speech = speech
        self.foreground = foreground
        self.calls = 0

    def predict(self, window: np.ndarray) -> FakePrediction:
        t0 = time.perf_counter()
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        level = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
        top = "anger_disgust" if level > 0.03 else "sadness"
        probs = {k: (0.7 if k == top else 0.1) for k in self.labels}
        return FakePrediction(probs, self.speech, (time.perf_counter() - t0) * 1000, self.foreground)

    def close(self) -> None:
        """Nothing to save."""


class LevelSink(MemoryPublisher):
    """The shared in-memory publisher, also keeping the levels (as the live page shows them)."""

    def __init__(self) -> None:
        super().__init__("levels")
        self.levels: list[dict] = []

    def publish_level(self, level: dict) -> None:
        self.levels.append(level)


def copy_savee(dst: Path, stems: tuple[str, ...]) -> Path:
    """A SAVEE corpus under dst holding only `stems` of each of its 4 speakers: tiny real training data."""
    src = SHARED / "corpora" / "savee" / "AudioData"
    for spk in ("DC", "JE", "JK", "KL"):
        for stem in stems:
            out = dst / "savee" / "AudioData" / spk / f"{stem}.opus"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / spk / f"{stem}.opus", out)
    return dst


def copy_savee_split(tmp: Path, stems: tuple[str, ...]) -> tuple[Path, list]:
    """copy_savee under tmp/corpora, its clips, and their speaker-independent splits under tmp/splits:
    (corpora root, clips)."""
    from training import loaders, splits

    root = copy_savee(tmp / "corpora", stems)
    clips = loaders.load_corpus("savee", root)
    splits.write_all({"savee": clips}, root, tmp / "splits")
    return root, clips


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


# -- resource markers -------------------------------------------------------------------------------

USES = {
    "needs_shared": re.compile(
        r"\b(SHARED|TESS|copy_savee(_split)?|devhead|tess_files|YAMNET|TFLITE|CORPORA)\b"),
    "needs_broker": re.compile(r"\bMosquitto\b"),
    "needs_alsa": re.compile(r"\b(VirtualMic|UnpluggableMic)\b"),
}
"""What in a test's code shows that it needs a resource."""

FIXTURES_NEEDING = {"broker": "needs_broker"}
"""Fixtures that start a resource."""

BY_HAND = {
    "needs_shared": (
        # the YAMNet backbone or the corpora, found by training/ and convert/ on their own
        "tests/test_convert_head.py::test_int8_and_fp16_match_the_torch_head",
        "tests/test_convert_head.py::test_missed_target_writes_nothing_unless_kept",
        "tests/test_finetune.py::",
        "tests/test_logmel_cnn.py::test_cache_train_resume_convert_and_serve",
    ),
}
"""Tests (node id prefixes) that need a resource their code does not show, in modules edited with
training/ and convert/; elsewhere the marker sits on the test itself."""


def have(marker: str) -> str | None:
    """None when this machine has what `marker` needs, else why not."""
    if marker == "needs_shared":
        return None if SHARED.is_dir() and any(SHARED.iterdir()) else f"no shared corpora/weights at {SHARED}"
    if marker == "needs_broker":
        return None if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists() else "no mosquitto"
    if marker == "needs_alsa":
        return None if ctypes.util.find_library("portaudio") and Path("/usr/share/alsa").is_dir() \
            else "no PortAudio/ALSA"
    return None


def _shared_names(module: object) -> set[str]:
    """Module-level names bound to paths under ../shared (REFERENCE = SHARED / ... .npz)."""
    roots = {str(SHARED), str(REPO.parent / "shared")}
    return {name for name, value in vars(module).items()
            if isinstance(value, Path) and any(str(value).startswith(r) for r in roots)}


def _code_of(item: pytest.Item, depth: int = 2) -> str:
    """The source of a test function, its fixtures, and the module functions they call (to `depth`)."""
    module = getattr(item, "module", None)
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        funcs += [d.func for d in defs if d.baseid and "conftest" not in d.baseid]
    seen: set = set()
    texts: list[str] = []
    for _ in range(depth + 1):
        called = []
        for f in funcs:
            if f is None or f in seen:
                continue
            seen.add(f)
            try:
                text = inspect.getsource(f)
            except (OSError, TypeError):
                continue
            texts.append(text)
            if module is not None:
                called += [getattr(module, n) for n in re.findall(r"\b([A-Za-z_]\w*)\(", text)
                           if inspect.isfunction(getattr(module, n, None))
                           or inspect.isclass(getattr(module, n, None))]
        funcs = called
    return "\n".join(texts)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing: dict[str, str | None] = {m: have(m) for m in USES}
    for item in items:
        wanted = {m.name for m in item.iter_markers() if m.name in USES}
        wanted |= {FIXTURES_NEEDING[f] for f in getattr(item, "fixturenames", ()) if f in FIXTURES_NEEDING}
        code = _code_of(item)
        wanted |= {m for m, pattern in USES.items() if pattern.search(code)}
        module = getattr(item, "module", None)
        names = _shared_names(module) if module is not None else set()
        if names and re.search(r"\b(" + "|".join(sorted(names)) + r")\b", code):
            wanted.add("needs_shared")
        wanted |= {m for m, prefixes in BY_HAND.items() if item.nodeid.startswith(prefixes)}
        for marker in sorted(wanted):
            if not item.get_closest_marker(marker):
                item.add_marker(getattr(pytest.mark, marker))
            if missing[marker]:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: {missing[marker]}"))
