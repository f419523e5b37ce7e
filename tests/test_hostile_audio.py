"""Hostile audio in-process: non-finite samples, absurd headers, damaged streams, signals that are no audio.

The same files through the real CLI (exit codes, stderr lines): tests/test_bad_input.py and
tests/test_cli.py; random files: tests/test_fuzz_audio.py.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from conftest import FakeModel
from test_pipeline import ArraySource, Collect, tone

from edge_ser.audio.source_file import FileSource
from edge_ser.errors import AudioError
from edge_ser.message import encode
from edge_ser.pipeline import Pipeline
from edge_ser.publish.stdout import StdoutPublisher
from edge_ser.settings import GateSettings, Settings

RATE = 16000


# -- non-finite samples ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_file_with_non_finite_samples_is_refused(tmp_path, bad: float) -> None:
    x = tone(3, 0.1)
    x[RATE + 10] = bad
    path = tmp_path / "f.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    src = FileSource(path)
    with pytest.raises(AudioError, match=r"non-finite samples .* at 1\.00 s") as e:
        list(src.blocks())
    assert "\n" not in str(e.value)


def test_live_non_finite_samples_are_a_gated_source_fault(caplog) -> None:
    # 12 s of speech-like tone with NaN/Inf bursts at 4.3-4.4 s and 9.5-9.6 s.
    x = tone(12, 0.1)
    x[int(4.3 * RATE) : int(4.4 * RATE)] = np.nan
    x[int(9.5 * RATE) : int(9.6 * RATE)] = np.inf
    settings = Settings(gate=GateSettings(neutral_once=False))
    out = Collect()
    p = Pipeline(settings, FakeModel(), [out])
    with caplog.at_level(logging.WARNING, logger="edge_ser.pipeline"):
        stats = p.run(ArraySource(x, live=True))
    assert stats["source_faults"] == 2
    assert any("non-finite" in r.getMessage() for r in caplog.records)
    for m in out.messages:
        assert np.isfinite(m["rms"])
        json.loads(encode(m))
        start, end = m["window_start"], m["window_start"] + m["window_s"]
        over_fault = (start < 4.4 and end > 4.3) or (start < 9.6 and end > 9.5)
        assert m["gated"] == over_fault, m
    assert sum(m["gated"] for m in out.messages) == 4  # [3, 5] [4, 6] [8, 10] [9, 11]
    # The resampler is not poisoned: windows after a fault are classified from their samples again.
    assert out.messages[-1]["label"] == "anger_disgust" and out.messages[-1]["rms"] > 0.05


def test_non_finite_at_another_rate_poisons_nothing() -> None:
    # At 48 kHz the samples go through soxr, whose filter state a single NaN would ruin for good.
    x = np.repeat(tone(8, 0.1), 3)
    x[int(3.5 * 48000)] = np.nan
    out = Collect()
    p = Pipeline(Settings(gate=GateSettings(neutral_once=False)), FakeModel(), [out])
    p.run(ArraySource(x, rate=48000, live=True))
    assert p.counters.source_faults == 1
    assert all(np.isfinite(m["rms"]) for m in out.messages)
    assert [m["gated"] for m in out.messages] == [False, False, True, True, False, False, False]


def test_encoder_refuses_nan_and_publisher_goes_on() -> None:
    with pytest.raises(ValueError):
        encode({"rms": float("nan")})
    stream = io.StringIO()
    pub = StdoutPublisher(stream)
    pub.publish({"rms": float("inf")})
    pub.publish({"rms": 0.5})
    assert stream.getvalue() == '{"rms": 0.5}\n'
    assert pub.stats() == {"published": 1, "failed": 1}
