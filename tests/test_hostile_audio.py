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
from test_pipeline import ArraySource, tone

from edge_ser.audio import MODEL_RATE as RATE
from edge_ser.audio.source_file import FileSource
from edge_ser.errors import AudioError
from edge_ser.message import encode
from edge_ser.pipeline import Pipeline
from edge_ser.publish.memory import MemoryPublisher
from edge_ser.publish.stdout import StdoutPublisher
from edge_ser.settings import GateSettings, Settings

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
    out = MemoryPublisher()
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
    out = MemoryPublisher()
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


# -- absurd headers, work per byte ------------------------------------------------------------------

def test_one_hertz_header_is_refused_at_once(tmp_path) -> None:
    # 7 KB of samples under a header that claims 1 Hz used to become 3599 windows (37 s, 270 MB).
    from test_bad_input import odd_header_wav

    path = odd_header_wav(tmp_path / "onehz.wav", rate=1)
    with pytest.raises(AudioError, match="1 Hz is outside"):
        FileSource(path)


@pytest.mark.parametrize("rate, ok", [(3999, False), (4000, True), (384000, True), (384001, False)])
def test_rate_limits(tmp_path, rate: int, ok: bool) -> None:
    path = tmp_path / "r.wav"
    sf.write(path, np.zeros(rate // 10, np.float32), rate)
    if ok:
        assert FileSource(path).rate == rate
    else:
        with pytest.raises(AudioError, match=f"{rate} Hz"):
            FileSource(path)


def test_channel_limit(tmp_path) -> None:
    sf.write(tmp_path / "64.wav", np.zeros((160, 64), np.float32), 16000)
    sf.write(tmp_path / "65.wav", np.zeros((160, 65), np.float32), 16000)
    assert FileSource(tmp_path / "64.wav").channels == 64
    with pytest.raises(AudioError, match="65 channels"):
        FileSource(tmp_path / "65.wav")


def test_header_claiming_more_audio_than_its_size_allows(tmp_path, monkeypatch) -> None:
    # Ten minutes of digital silence is ~190 B/s in FLAC, above the limit; a stricter limit refuses it.
    from edge_ser.audio import source_file

    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros((48000 * 600, 1), np.float32), 48000)
    assert FileSource(path).frames == 48000 * 600
    monkeypatch.setattr(source_file, "MIN_BYTES_PER_S", path.stat().st_size / 300)
    with pytest.raises(AudioError, match=r"claims 600 s of audio in \d+ bytes \(at most 300 s"):
        FileSource(path)


def test_blocks_of_a_wide_fast_file_stay_small(tmp_path) -> None:
    sf.write(tmp_path / "wide.wav", np.zeros((384000, 64), np.float32), 384000, subtype="PCM_16")
    src = FileSource(tmp_path / "wide.wav", block_s=1.0)
    assert max(b.size for b in src.blocks()) <= 1 << 20


# -- damage in the middle ---------------------------------------------------------------------------

def chirp(seconds: float, rate: int = RATE) -> np.ndarray:
    """A rising tone: every position of the file sounds different, so a wrong resync point shows."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 20 * t) * t)).astype(np.float32)


def damaged(tmp_path, name: str, x: np.ndarray, at: float = 0.5, nbytes: int = 1500, **kw) -> str:
    path = tmp_path / name
    sf.write(path, x, RATE, **kw)
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i : i + nbytes] = np.random.default_rng(0).bytes(nbytes)
    path.write_bytes(bytes(data))
    return str(path)


def test_flac_with_a_corrupt_frame_keeps_the_rest(tmp_path) -> None:
    x = chirp(20)
    src = FileSource(damaged(tmp_path, "bad.flac", x), block_s=0.5)
    got = np.concatenate(list(src.blocks()))[:, 0]
    (start, end), = src.damage()["damaged"]
    assert 8 < start < end < 12 and end - start < 2
    assert len(got) + src.damage()["lost_s"] * RATE == pytest.approx(len(x), abs=2 * RATE / 100)
    a, b = src._reader.spans[0]
    # Before the damage: the recording exactly (no zeros of the corrupt frame); after it: the
    # recording from where it resumed, so the skip is accounted for precisely.
    np.testing.assert_allclose(got[:a], x[:a], atol=1e-4)
    np.testing.assert_allclose(got[a : a + 4000], x[b : b + 4000], atol=1e-4)
    assert "could not decode 10." in src.warnings[0] and "\n" not in src.warnings[0]


def test_flac_damaged_in_two_places_keeps_everything_between(tmp_path) -> None:
    x = chirp(20)
    path = damaged(tmp_path, "bad.flac", x, at=0.3)
    data = bytearray(open(path, "rb").read())
    data[int(0.7 * len(data)) : int(0.7 * len(data)) + 1500] = np.random.default_rng(1).bytes(1500)
    open(path, "wb").write(bytes(data))
    src = FileSource(path, block_s=0.5)
    got = np.concatenate(list(src.blocks()))[:, 0]
    (a1, b1), (a2, b2) = src._reader.spans
    assert 0 < a1 < b1 < a2 < b2 < len(x)
    np.testing.assert_allclose(got[a1 : a1 + a2 - b1], x[b1:a2], atol=1e-4)  # all of the middle part
    np.testing.assert_allclose(got[-4000:], x[-4000:], atol=1e-4)
    assert len(got) == len(x) - (b1 - a1) - (b2 - a2)
    assert src.warnings[0].count(" s") >= 2 and "could not decode" in src.warnings[0]


def test_ogg_with_a_corrupt_page_is_reported_as_shortened(tmp_path) -> None:
    src = FileSource(damaged(tmp_path, "bad.ogg", chirp(20), nbytes=200, format="OGG", subtype="VORBIS"))
    got = sum(len(b) for b in src.blocks())
    lost = src.damage()["lost_s"]
    # One Ogg page (about 4 KB: some 5 s of this 1 KB/s chirp) is skipped, and nothing else.
    assert 0 < lost < 8 and lost == round((src.frames - got) / RATE, 2)
    assert "did not come out" in src.warnings[0]


def test_undamaged_files_have_no_warning(tmp_path) -> None:
    for name, kw in [("a.flac", {}), ("a.ogg", {"format": "OGG", "subtype": "VORBIS"}), ("a.wav", {})]:
        sf.write(tmp_path / name, chirp(5), RATE, **kw)
        src = FileSource(tmp_path / name)
        assert sum(len(b) for b in src.blocks()) == src.frames
        assert src.warnings == [] and src.damage() == {}


def test_nothing_decodable_is_an_error(tmp_path) -> None:
    path = tmp_path / "dead.flac"
    sf.write(path, chirp(5), RATE)
    data = bytearray(path.read_bytes())
    data[200:] = np.random.default_rng(1).bytes(len(data) - 200)  # keep the header, ruin every frame
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="cannot decode any audio"):
        list(FileSource(path).blocks())


def test_flac_without_a_stated_length_reads_whole(tmp_path) -> None:
    # A streaming encoder leaves STREAMINFO's total-samples field 0; pysoundfile's read() fails on it.
    path = tmp_path / "stream.flac"
    sf.write(path, chirp(5), RATE)
    data = bytearray(path.read_bytes())
    data[8 + 13] &= 0xF0
    data[8 + 14 : 8 + 18] = bytes(4)
    path.write_bytes(bytes(data))
    src = FileSource(path)
    assert src.frames >= 1 << 62
    assert sum(len(b) for b in src.blocks()) == 5 * RATE and src.warnings == []


def test_classify_reports_damage_in_the_file_line_and_on_stderr(tmp_path) -> None:
    from conftest import run_cli

    path = damaged(tmp_path, "bad.flac", chirp(20))
    proc = run_cli("classify", "--json", path)
    assert proc.returncode == 0, proc.stderr
    *windows, summary = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(windows) >= 17
    assert summary["damaged"][0][0] > 8 and 0 < summary["lost_s"] < 2
    assert "damaged file" in summary["warning"]
    assert proc.stderr.splitlines() == [f"edge-ser: warning: {path}: {summary['warning']}"]


# -- decoded signals that are no recording ------------------------------------------------------------

def garbage_wav(path, seconds: float = 11.0):
    """A valid 16-bit PCM WAV header over random bytes."""
    body = np.random.default_rng(2).bytes(int(seconds * RATE) * 2)
    sf.write(path, np.frombuffer(body, "<i2"), RATE, subtype="PCM_16")
    return path


def checked(x: np.ndarray, block: int = RATE) -> str | None:
    from edge_ser.audio.signal_check import SignalCheck

    check = SignalCheck()
    for i in range(0, len(x), block):
        check.update(x[i : i + block])
    return check.verdict()


def test_signals_that_are_no_recording_are_named() -> None:
    rng = np.random.default_rng(0)
    assert "white noise" in checked(rng.uniform(-1, 1, 5 * RATE))
    assert "constant level (+0.500)" in checked(np.full(5 * RATE, 0.5))
    assert "constant level (-1.000)" in checked(np.full(5 * RATE, -1.0))
    assert "full scale (clipped)" in checked(np.sign(tone(5, 0.1)))
    assert "far beyond full scale" in checked(tone(5, 0.1) * np.float32(1e30))


def test_recordings_are_not_flagged() -> None:
    from conftest import SPEECH

    rng = np.random.default_rng(0)
    x, _ = sf.read(SPEECH, dtype="float32")
    assert checked(x) is None
    assert checked(tone(5, 0.5)) is None
    assert checked(np.zeros(5 * RATE)) is None
    assert checked(rng.normal(0, 0.05, 5 * RATE)) is None  # a quiet hiss is a recording of a room
    assert checked(x + 0.02) is None  # speech over a DC offset of a cheap microphone
    assert checked(tone(5, 1.5)) is None  # a float file may go a little past full scale


def test_classify_warns_about_a_garbage_body(tmp_path) -> None:
    from conftest import run_cli

    path = garbage_wav(tmp_path / "garbage.wav")
    proc = run_cli("classify", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["windows"] >= 10
    assert "white noise" in summary["warning"] and "labels mean nothing" in summary["warning"]
    assert proc.stderr.splitlines() == [f"edge-ser: warning: {path}: {summary['warning']}"]


def test_decoder_chatter_on_stderr_is_captured_and_log_records_pass(capfd) -> None:
    import os

    from edge_ser.audio.reader import decoder_stderr_to_log

    record = "2026-12-06 22:00:00,000 WARNING edge_ser.pipeline: from another thread\n"
    with decoder_stderr_to_log() as notes:
        os.write(2, b"Note: Trying to resync...\n")
        os.write(2, record.encode())
    assert notes == ["Note: Trying to resync..."]
    assert capfd.readouterr().err == record


def test_damaged_mp3_is_one_warning_not_decoder_noise(tmp_path) -> None:
    # libmpg123 prints its own lines ("[src/libmpg123/...] error: ...", "Note: ...") for a damaged
    # stream, straight to stderr; they become one warning of ours.
    from conftest import run_cli
    from hostile_files import base_file, mutate

    rng = np.random.default_rng(4)
    path = tmp_path / "bad.mp3"
    path.write_bytes(mutate(base_file("mp3", 3.0), patches=[(rng.random() * 0.9, rng.bytes(1000))]))
    proc = run_cli("classify", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert "decoder skipped damaged data" in summary["warning"]
    assert proc.stderr.splitlines() == [f"edge-ser: warning: {path}: {summary['warning']}"]


def test_mqtt_never_sends_nan(tmp_path) -> None:
    from mosquitto import Mosquitto
    from test_mqtt import PREFIX, mqtt_settings, result

    from edge_ser.publish.mqtt import MqttPublisher

    bad = {**result(0), "rms": float("nan")}
    with Mosquitto(tmp_path) as broker, broker.subscriber(f"{PREFIX}/emotion") as sub, \
            MqttPublisher(mqtt_settings(broker), "kitchen") as pub:
        pub.publish(bad)
        pub.publish(result(1))
        got = [json.loads(m.payload) for m in sub.wait_for(f"{PREFIX}/emotion")]
        assert pub.stats()["dropped"] == 1
    assert [m["window_start"] for m in got] == [result(1)["window_start"]]
