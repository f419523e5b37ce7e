"""Windows, the silence gate, smoothing and the result message."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeModel

from edge_ser.errors import ConfigError, UserError
from edge_ser.gate import Gate, NoiseFloor, rms, silero_model_path
from edge_ser.labels import EMOTIONS, NEUTRAL
from edge_ser.message import KEYS, result_message, silence_probs, utc_iso
from edge_ser.settings import GateSettings, SmoothingSettings
from edge_ser.smoothing import Smoother
from edge_ser.windows import Windower


def windows_of(w: Windower, x: np.ndarray, block: int) -> list:
    out = []
    for i in range(0, len(x), block):
        out += list(w.push(x[i : i + block]))
    return out


@pytest.mark.parametrize("block", [1, 3, 7, 100])
def test_windows_every_hop_whatever_the_block_size(block: int) -> None:
    x = np.arange(20, dtype=np.float32)
    got = windows_of(Windower(8, 4), x, block)
    assert [w.start for w in got] == [0, 4, 8, 12]
    for w in got:
        assert np.array_equal(w.samples, x[w.start : w.start + 8])


def test_hop_longer_than_window_skips_samples() -> None:
    got = windows_of(Windower(4, 6), np.arange(20, dtype=np.float32), 5)
    assert [(w.start, w.samples.tolist()) for w in got] == [
        (0, [0, 1, 2, 3]), (6, [6, 7, 8, 9]), (12, [12, 13, 14, 15])]


def test_flush_pads_a_short_stream_and_covers_a_long_tail() -> None:
    w = Windower(8, 4)
    assert list(w.push(np.ones(5, np.float32))) == []
    tail = w.flush()
    assert tail.padded and tail.start == 0 and tail.samples.tolist() == [0] + [1] * 5 + [0] * 2
    assert w.flush() is None

    w = Windower(8, 4)
    got = list(w.push(np.arange(11, dtype=np.float32)))
    assert [x.start for x in got] == [0]
    tail = w.flush()
    assert tail.start == 3 and tail.samples.tolist() == list(range(3, 11))


def test_flush_skips_a_tail_shorter_than_half_a_hop() -> None:
    w = Windower(8, 4)
    list(w.push(np.arange(13, dtype=np.float32)))  # windows at 0 and 4 end at 12; 1 sample left
    assert w.flush() is None


def test_ring_buffer_memory_is_constant() -> None:
    w = Windower(32000, 16000)
    for _ in range(50):
        list(w.push(np.zeros(16000, np.float32)))
    assert w._ring.nbytes == 32000 * 4


def test_rms() -> None:
    assert rms(np.zeros(10)) == 0.0
    assert rms(np.array([])) == 0.0
    assert rms(np.full(100, 0.5)) == pytest.approx(0.5)
    t = np.arange(16000) / 16000
    assert rms(np.sin(2 * np.pi * 100 * t)) == pytest.approx(1 / np.sqrt(2), rel=1e-3)


def test_rms_gate_threshold() -> None:
    gate = Gate(GateSettings(rms_threshold=0.01))
    assert gate.before_inference(np.zeros(10), 0.009) == "rms"
    assert gate.before_inference(np.zeros(10), 0.011) is None
    assert gate.after_inference(FakeModel().predict(np.zeros(32000, np.float32))) is None  # no scores


def hum(seconds: float, amp: float, seed: int = 0) -> np.ndarray:
    """Steady noise: a fan or a fridge (white noise, `amp` RMS)."""
    return np.random.default_rng(seed).normal(0.0, amp, int(seconds * 16000)).astype(np.float32)


def bursts(seconds: float, amp: float) -> np.ndarray:
    """Speech-like: 200 ms syllables of a 150 Hz tone with 100 ms gaps of digital silence."""
    t = np.arange(int(seconds * 16000)) / 16000
    on = (t % 0.3) < 0.2
    return (on * amp * np.sqrt(2) * np.sin(2 * np.pi * 150 * t)).astype(np.float32)


def test_noise_floor_of_steady_noise_is_its_level_and_of_speech_its_gaps() -> None:
    floor = NoiseFloor(seconds=30, hop_s=1.0)
    level = floor.update(hum(2, 0.02))
    assert 0.018 < level < 0.02  # the quietest 20 ms frames of white noise: a fraction of a dB below
    speech = bursts(2, 0.1) + hum(2, 0.02, seed=1)
    assert 0.017 < floor.update(speech) <= level  # speech over the same fan: the floor stays the fan
    alone = bursts(2, 0.1) + hum(2, 0.0005, seed=1)
    assert NoiseFloor(30, 1.0).update(alone) < 0.001  # in a quiet room the gaps between syllables are


def test_noise_floor_forgets_after_its_seconds() -> None:
    floor = NoiseFloor(seconds=3, hop_s=1.0)
    floor.update(hum(2, 0.001))
    for _ in range(2):
        assert floor.update(hum(2, 0.05)) < 0.0011  # the quiet window is still in the last 3 s
    assert floor.update(hum(2, 0.05)) > 0.04  # ...and now it is not: the louder room is the floor
    assert floor.rms > 0.04


def test_floor_gate_sleeps_through_steady_noise_and_hears_speech_over_it() -> None:
    gate = Gate(GateSettings(rms_threshold=0.001, floor_margin_db=6.0))
    floor = NoiseFloor(30, 1.0)
    noise = hum(2, 0.02)
    assert gate.before_inference(noise, rms(noise), floor.update(noise)) == "floor"
    assert gate.threshold(floor.rms) == pytest.approx(2 * floor.rms, rel=0.01)  # 6 dB
    speech = noise + bursts(2, 0.1)
    assert gate.before_inference(speech, rms(speech), floor.update(speech)) is None
    far = bursts(2, 0.002)  # -54 dBFS speech in a quiet room: only the fixed threshold applies
    assert gate.before_inference(far, rms(far), NoiseFloor(30, 1.0).update(far)) is None
    assert gate.before_inference(far, 0.0009, 0.0) == "rms"


def test_the_default_gate_sleeps_in_the_footprints_silent_room_and_hears_far_speech() -> None:
    from bench.stream_eval import pink_noise

    gate, floor = Gate(GateSettings()), NoiseFloor(GateSettings().floor_s, 1.0)
    hiss = (0.002 * pink_noise(60 * 16000, np.random.default_rng(1))).astype(np.float32)
    windows = [hiss[i:i + 32000] for i in range(0, hiss.size - 32000 + 1, 16000)]
    assert all(gate.before_inference(w, rms(w), floor.update(w)) == "floor" for w in windows)
    far = bursts(2, 0.002)  # -54 dBFS syllables: across a room, over digital silence
    assert gate.before_inference(far, rms(far), NoiseFloor(30, 1.0).update(far)) is None


def test_floor_gate_off_keeps_the_fixed_threshold() -> None:
    gate = Gate(GateSettings(rms_threshold=0.003, floor_margin_db=0.0))
    noise = hum(2, 0.02)
    assert gate.threshold(0.5) == 0.003  # the floor is ignored
    assert gate.before_inference(noise, rms(noise), NoiseFloor(30, 1.0).update(noise)) is None


def test_yamnet_vad_uses_the_models_speech_score() -> None:
    model = FakeModel(speech=0.2)
    gate = Gate(GateSettings(vad="yamnet", vad_threshold=0.5), model)
    assert gate.after_inference(model.predict(np.full(32000, 0.1, np.float32))) == "vad"
    model.speech = 0.9
    assert gate.after_inference(model.predict(np.full(32000, 0.1, np.float32))) is None


def test_background_gate_uses_the_foreground_score_below_its_threshold() -> None:
    window = np.full(32000, 0.1, np.float32)
    gate = Gate(GateSettings(background_threshold=0.5))
    assert gate.after_inference(FakeModel(foreground=0.49).predict(window)) == "background"
    assert gate.after_inference(FakeModel(foreground=0.5).predict(window)) is None
    assert gate.after_inference(FakeModel(foreground=None).predict(window)) is None
    off = Gate(GateSettings(background_threshold=0.0))
    assert off.after_inference(FakeModel(foreground=0.0).predict(window)) is None
    both = Gate(GateSettings(vad="yamnet", background_threshold=0.5), FakeModel(speech=0.9))
    assert both.after_inference(FakeModel(speech=0.1, foreground=0.1).predict(window)) == "vad"
    assert both.after_inference(FakeModel(speech=0.9, foreground=0.1).predict(window)) == "background"


def test_yamnet_vad_needs_a_model_with_a_speech_score() -> None:
    with pytest.raises(ConfigError, match="gate.vad=yamnet"):
        Gate(GateSettings(vad="yamnet"), FakeModel(speech=None))


def test_silero_without_the_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "silero_vad" else real(n, *a))
    with pytest.raises(UserError, match="silero-vad"):
        silero_model_path()
    with pytest.raises(UserError, match="pip install --no-deps silero-vad"):
        Gate(GateSettings(vad="silero"))


def test_smoothing_none_passes_through() -> None:
    s = Smoother(SmoothingSettings(method="none"))
    assert s.update({"a": 0.2, "b": 0.8}) == ("b", {"a": 0.2, "b": 0.8})


def test_smoothing_ema() -> None:
    s = Smoother(SmoothingSettings(method="ema", alpha=0.5))
    s.update({"a": 1.0, "b": 0.0})
    label, probs = s.update({"a": 0.0, "b": 1.0})
    assert probs == {"a": 0.5, "b": 0.5}
    label, probs = s.update({"a": 0.0, "b": 1.0})
    assert label == "b" and probs["b"] == pytest.approx(0.75)
    s.reset()
    assert s.update({"a": 0.0, "b": 1.0})[1] == {"a": 0.0, "b": 1.0}


def test_smoothing_majority_over_last_n() -> None:
    s = Smoother(SmoothingSettings(method="majority", n=3))
    a, b = {"a": 0.9, "b": 0.1}, {"a": 0.2, "b": 0.8}
    assert s.update(a)[0] == "a"
    assert s.update(b)[0] == "b"  # tie 1:1 -> the most recent window wins
    assert s.update(a)[0] == "a"
    label, probs = s.update(b)  # last three: b, a, b
    assert label == "b"
    assert probs["b"] == pytest.approx((0.8 + 0.1 + 0.8) / 3)


def test_message_has_exactly_the_design_keys() -> None:
    probs = {"anger_disgust": 0.81, "fear_surprise": 0.05, "happiness": 0.09, "sadness": 0.05}
    m = result_message(site="kitchen", window_start=12.0, window_s=2.0, label="anger_disgust", probs=probs,
                       rms=0.0431234, gated=False, model="m", latency_ms=9.4123, ts=1795600802.0)
    assert tuple(m) == KEYS
    assert m["ts"] == "2026-11-25T10:00:02.000Z"
    assert m["confidence"] == 0.81 and m["rms"] == 0.0431 and m["latency_ms"] == 9.41


def test_silence_probs() -> None:
    p = silence_probs(EMOTIONS)
    assert p[NEUTRAL] == 1.0 and all(p[e] == 0.0 for e in EMOTIONS)
    assert utc_iso(0).endswith("Z")


def fake_silero_package(root) -> None:
    """A `silero_vad` package whose data/silero_vad.onnx has Silero v5's interface (input, state, sr ->
    output, stateN); its "speech probability" is the chunk's peak amplitude, so tests can steer it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Abs", ["input"], ["abs"]),
         helper.make_node("ReduceMax", ["abs"], ["output"], keepdims=1, axes=[1]),
         helper.make_node("Identity", ["state"], ["stateN"])],
        "fake_silero",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, None]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, 128]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, None, 128])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data = root / "silero_vad" / "data"
    data.mkdir(parents=True)
    (root / "silero_vad" / "__init__.py").write_text("raise ImportError('edge-ser must not import this')\n")
    onnx.save(model, data / "silero_vad.onnx")


def test_silero_gate_runs_the_wheels_onnx_file_without_importing_it(tmp_path, monkeypatch) -> None:
    fake_silero_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert silero_model_path() == tmp_path / "silero_vad" / "data" / "silero_vad.onnx"
    gate = Gate(GateSettings(vad="silero", vad_threshold=0.5, rms_threshold=0.01))
    loud_spike = np.full(32000, 0.02, np.float32)
    loud_spike[20000] = 0.9
    assert gate.before_inference(loud_spike, rms(loud_spike)) is None  # "speech" in one chunk is enough
    steady = np.full(32000, 0.3, np.float32)
    assert gate.before_inference(steady, rms(steady)) == "vad"
    assert gate.before_inference(steady, 0.001) == "rms"  # RMS first: the VAD is not even run
