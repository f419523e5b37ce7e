"""Room benchmark: the condition generators measured (SNR, RT60, gain, telephone band), and its wiring.

Synthetic speech and a fake model only: a few seconds of audio per condition.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import FakeModel

from acoustics import conditions as conds
from acoustics import noises, reverb, telephone
from bench import plots, render_quality, room, stream_eval, tables
from edge_ser.audio import MODEL_RATE as RATE
from edge_ser.benchmark import speechlike
from edge_ser.settings import GateSettings


def _stream(seconds: float = 6.0) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Speech-like audio with pauses: 0.5 s silence, 2.5 s speech, 0.5 s pause, the rest speech."""
    audio = np.zeros(int(seconds * RATE), np.float32)
    segs = [(8000, 48000, "sadness"), (56000, audio.size - 4000, "anger_disgust")]
    for i, (a, b, _) in enumerate(segs):
        audio[a:b] = 0.5 * speechlike((b - a) / RATE, seed=i)[:b - a]
    return audio, segs


def _clips() -> list[np.ndarray]:
    """Other talkers' utterances for babble (different seeds than the stream's)."""
    return [0.1 * speechlike(1.0 + 0.3 * k, seed=10 + k) for k in range(5)]


def _snr(clean: np.ndarray, mixed: np.ndarray, segs) -> float:
    speech = np.concatenate([clean[a:b] for a, b, _ in segs]).astype(np.float64)
    return 10 * np.log10(np.mean(speech**2) / np.mean((mixed.astype(np.float64) - clean) ** 2))


def _t30(h: np.ndarray, rate: int) -> float:
    """RT60 from a straight-line fit of the Schroeder curve between -5 and -35 dB (T30)."""
    energy = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-30)
    idx = np.flatnonzero((edc <= -5) & (edc >= -35))
    slope, _ = np.polyfit(idx / rate, edc[idx], 1)
    return -60.0 / slope


# -- conditions -----------------------------------------------------------------------------------------

def test_registry_holds_the_benchmark_conditions_clean_first():
    names = list(conds.CONDITIONS)
    assert names[0] == "clean"
    for n in ("gain-10", "gain-20", "gain-30", "pink20", "pink0", "babble5", "household0", "household10",
              "rt60-0.3", "rt60-0.6", "rt60-0.9", "phone", "living-room"):
        assert n in names
    assert len(names) == 1 + 3 + 12 + 3 + 1 + 1
    assert all(c.name == n for n, c in conds.CONDITIONS.items())
    assert conds.ordered(["phone", "mystery", "clean", "rt60-0.3", "gain-10", "phone"]) == [
        "clean", "gain-10", "rt60-0.3", "phone", "mystery"]


def test_conditions_refuse_values_out_of_range():
    with pytest.raises(ValueError):
        conds.gain(3)
    with pytest.raises(ValueError):
        conds.noise("traffic", 10)
    with pytest.raises(ValueError):
        conds.room(5.0)
    with pytest.raises(ValueError):
        conds.Condition("x", "echo")
    with pytest.raises(ValueError):
        conds.Condition("x", "chain")
    with pytest.raises(ValueError):
        conds.Condition("x", "gain", (("db", 6.0),))
    with pytest.raises(ValueError):
        conds.Condition("x", "noise", (("noise", "pink"),))
    with pytest.raises(ValueError):
        conds.Condition("x", "reverb", (("rt60_s", 0.6),), seed=-1)
    with pytest.raises(KeyError):
        conds.get("pink3")


@pytest.mark.parametrize("db", [-10, -20, -30])
def test_gain_is_exact(db):
    audio, _ = _stream()
    out = conds.apply(conds.get(f"gain{db}"), audio, RATE)
    np.testing.assert_allclose(out, audio * 10 ** (db / 20), rtol=1e-6, atol=0)
    ratio = np.mean(out.astype(np.float64) ** 2) / np.mean(audio.astype(np.float64) ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(db, abs=1e-4)


@pytest.mark.parametrize("kind", ["pink", "babble", "household"])
@pytest.mark.parametrize("snr", [20, 10, 5, 0])
def test_noise_is_mixed_at_the_requested_snr_of_the_speech_samples(kind, snr):
    audio, segs = _stream()
    audio *= 0.1  # no peak rescaling: the difference is the noise alone
    out = conds.apply(conds.get(f"{kind}{snr}"), audio, RATE, segments=segs, babble_clips=_clips())
    assert abs(_snr(audio, out, segs) - snr) < 0.5
    assert np.abs(out[:8000]).max() > 0  # the pauses are noisy too


def test_a_loud_mix_is_scaled_down_and_keeps_its_snr():
    audio, segs = _stream()
    out = noises.mix_at_snr(audio * 1.5, noises.pink(audio.size, RATE, np.random.default_rng(0)), 0.0, segs)
    assert np.abs(out).max() <= 0.99 + 1e-6
    k = np.abs(out).max() / np.abs(audio * 1.5 + noises.pink(audio.size, RATE, np.random.default_rng(0))
                                   * np.sqrt(noises.speech_power(audio * 1.5, segs))).max()
    assert abs(_snr(audio * 1.5 * k, out, segs)) < 0.5


def test_babble_is_made_of_the_clips_passed_in():
    # constant "utterances" 1..5: one talker's track is the clips back to back, scaled as a whole
    clips = [np.full(800 + 100 * k, k + 1.0, np.float32) for k in range(5)]
    out = noises.babble(RATE, clips, np.random.default_rng(0), talkers=1)
    levels = np.round(out / out.max() * 5, 4)
    assert set(levels) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(set(levels)) >= 3
    two = noises.babble(RATE, clips, np.random.default_rng(0), talkers=2)
    assert len(set(np.round(two / two.max() * 10, 3))) > len(set(levels))  # two talkers overlap
    with pytest.raises(ValueError):
        noises.babble(100, [], np.random.default_rng(0))


@pytest.mark.parametrize("source", [noises.hum_fan, noises.clatter, noises.music, noises.household])
def test_household_sources_are_unit_rms_and_seeded(source):
    a = source(RATE * 2, RATE, np.random.default_rng(1))
    b = source(RATE * 2, RATE, np.random.default_rng(1))
    c = source(RATE * 2, RATE, np.random.default_rng(2))
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_hum_has_its_energy_at_the_mains_harmonics():
    x = noises.hum_fan(RATE * 4, RATE, np.random.default_rng(0))
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    assert p[np.argmin(abs(f - 50))] > 100 * np.median(p[(f > 40) & (f < 300)])


@pytest.mark.parametrize("rt60", [0.3, 0.6, 0.9])
def test_simulated_rir_has_the_requested_rt60(rt60):
    rir = reverb.simulate_rir(rt60, conds.get(f"rt60-{rt60:g}").seed, RATE)
    assert abs(_t30(rir.h, RATE) - rt60) < 0.2 * rt60
    assert abs(rir.rt60_s - rt60) < 0.2 * rt60
    assert 1.0 <= rir.distance_m <= 4.0
    assert rir.h[rir.direct] == pytest.approx(1.0)


def test_reverberation_is_aligned_on_the_direct_path_and_keeps_the_level():
    x = np.zeros(RATE, np.float32)
    x[4000] = 0.5
    rir = reverb.simulate_rir(0.3, 2, RATE)
    out = reverb.reverberate(x, rir)
    assert int(np.argmax(np.abs(out))) == 4000
    assert np.abs(out[4100:]).max() > 0.01 * np.abs(out).max()  # a tail follows
    audio, _ = _stream()
    wet = conds.apply(conds.get("rt60-0.3"), audio, RATE)
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(audio**2)), rel=1e-3)


def test_telephone_keeps_300_to_3400_hz_only():
    x = (0.1 * np.random.default_rng(0).standard_normal(RATE * 3)).astype(np.float32)
    y = conds.apply(conds.get("phone"), x, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    p = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / RATE)
    assert p[f < 200].sum() < 0.01 * p.sum()
    assert p[f > 3600].sum() < 0.02 * p.sum()
    assert p[(f > 500) & (f < 3000)].sum() > 0.8 * p.sum()


def test_opus_round_trip_is_lossy_and_keeps_the_length():
    x = speechlike(1.0, seed=3, rate=telephone.LINE_RATE)
    y = telephone.opus_round_trip(x, telephone.LINE_RATE)
    assert y.shape == x.shape
    assert 0 < np.mean((y - x) ** 2) < np.mean(x**2)


SEEDED = ["pink10", "babble10", "household10", "rt60-0.3", "living-room"]


@pytest.mark.parametrize("name", SEEDED)
def test_generators_are_deterministic_for_a_seed_and_differ_between_seeds(name):
    audio, segs = _stream(4.0)
    cond = conds.get(name)
    a = conds.apply(cond, audio, RATE, segments=segs, babble_clips=_clips())
    b = conds.apply(cond, audio, RATE, segments=segs, babble_clips=_clips())
    c = conds.apply(cond.with_seed(cond.seed + 1), audio, RATE, segments=segs, babble_clips=_clips())
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-4)


def test_living_room_is_reverb_then_babble_then_far_field():
    audio, segs = _stream(4.0)
    cond = conds.get("living-room")
    assert [(s.kind, dict(s.parameters)) for s in cond.steps] == [
        ("reverb", {"rt60_s": 0.6}), ("noise", {"noise": "babble", "snr_db": 10.0}), ("gain", {"db": -20.0})]
    out = conds.apply(cond, audio, RATE, segments=segs, babble_clips=_clips())
    wet = conds.apply(cond.steps[0], audio, RATE)
    noisy = conds.apply(cond.steps[1], wet, RATE, segments=segs, babble_clips=_clips())
    np.testing.assert_allclose(out, noisy * 10 ** (-20 / 20), rtol=1e-6)
    assert abs(_snr(wet, noisy, segs) - 10) < 0.5
    assert not np.allclose(wet, audio, atol=1e-3)


# -- the benchmark ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(conds.CONDITIONS))
def test_every_condition_streams_through_the_pipeline(name, tmp_path):
    audio, segs = _stream()
    wav = tmp_path / "stream.wav"
    sf.write(wav, audio, RATE, subtype="FLOAT")
    path = room.condition_file(wav, segs, conds.get(name), _clips())
    assert sf.info(path).frames == audio.size
    msgs = stream_eval.run_pipeline(FakeModel(), path, "none")
    assert len(msgs) == 5  # 6 s, 2 s windows, 1 s hop
    refs = [stream_eval.reference(segs, int(round(m["window_start"] * RATE)), 32000) for m in msgs]
    r = room.room_score(refs, [m["label"] for m in msgs])
    assert 0 <= r["weighted_f1"] <= 100 and r["n_windows"] == 5
    if name == "clean":  # the fake model answers loud windows angry, quiet ones sad
        assert [m["label"] for m in msgs][-2:] == ["anger_disgust", "anger_disgust"]
    if name == "gain-30":  # about -56 dBFS: above a -60 dBFS gate, below the paper's 0.01 (-40 dBFS)
        def gated(rms: float) -> list[bool]:
            gate = stream_eval.gate_settings(rms_threshold=rms)
            msgs = stream_eval.run_pipeline(FakeModel(), path, "none", gate)
            return [m["gated"] for m in msgs]

        assert not all(gated(0.001)) and all(gated(0.01))


def test_room_score_counts_false_sadness_and_the_four_emotion_uar():
    refs = ["sadness", "happiness", "happiness", "neutral", "anger_disgust"]
    preds = ["sadness", "sadness", "happiness", "sadness", "neutral"]
    r = room.room_score(refs, preds)
    assert r["sad_share"] == 50.0  # 2 of the 4 non-sad windows answered sadness
    assert r["uar_emotions"] == pytest.approx(100 * (1 + 0.5 + 0) / 3, abs=0.01)


def test_stream_speakers_are_the_speakers_build_stream_draws():
    from dataclasses import dataclass

    @dataclass
    class Clip:
        path: str
        speaker: str
        merged: str

    from edge_ser.labels import EMOTIONS

    clips = [Clip(f"/c/{lab}/{s}_{i}.wav", f"x:{s}", lab)
             for lab in EMOTIONS for s in range(4) for i in range(3)]
    one = room.stream_speakers(clips, 1, seed=0)
    assert 1 <= len(one) <= len(EMOTIONS)
    assert room.stream_speakers(clips, 100, seed=0) == {f"x:{s}" for s in range(4)}


def test_room_command_writes_records_chart_and_merges(tmp_path, monkeypatch):
    import edge_ser.model

    audio, segs = _stream()
    wav = tmp_path / "pl_pc1_s0.wav"
    sf.write(wav, audio, RATE, subtype="FLOAT")
    monkeypatch.setattr(stream_eval, "CACHE", tmp_path / "streams")
    monkeypatch.setattr(stream_eval, "stream_files", lambda lang, pc, seed, part: (wav, segs))
    monkeypatch.setattr(room, "babble_clips", lambda lang, pc, seed, part: _clips())
    monkeypatch.setattr(edge_ser.model, "load_model", lambda settings: FakeModel(model_id=settings.id))
    out = tmp_path / "room.json"
    args = ["--models", "yamnet-dev", "--languages", "pl", "--per-class", "1", "--out", str(out)]
    run = CliRunner().invoke(room.main, [*args, "--conditions", "clean", "--conditions", "babble10"])
    assert run.exit_code == 0, run.output
    recs = json.loads(out.read_text())
    assert [(r["model"], r["language"], r["condition"]) for r in recs] == [
        ("yamnet-dev", "pl", "clean"), ("yamnet-dev", "pl", "babble10")]
    assert {"weighted_f1", "uar", "uar_emotions", "sad_share", "n_windows"} <= set(recs[0])
    assert out.with_suffix(".png").stat().st_size > 1000
    run = CliRunner().invoke(room.main, [*args, "--conditions", "phone", "--merge"])
    assert run.exit_code == 0, run.output
    assert [r["condition"] for r in json.loads(out.read_text())] == ["clean", "babble10", "phone"]


def test_validation_streams_are_built_from_validation_speakers_into_files_of_their_own(tmp_path, monkeypatch):
    audio, segs = _stream()
    asked: list[str] = []
    monkeypatch.setattr(stream_eval, "CACHE", tmp_path)
    clip = type("Clip", (), {"speaker": "x:1"})()
    monkeypatch.setattr(stream_eval, "speaker_clips", lambda lang, part="test": asked.append(part) or [clip])
    monkeypatch.setattr(stream_eval, "build_stream", lambda clips, pc, seed: (audio, segs))
    val, _ = stream_eval.stream_files("pl", 1, 0, "val")
    test, _ = stream_eval.stream_files("pl", 1, 0)
    assert asked == ["val", "test"] and val != test and val.name == "pl_pc1_s0_val.wav"


def test_the_floor_gate_is_part_of_a_room_records_column_and_key():
    base = {"model": "a", "condition": "clean", "vad": "none", "rms_threshold": GateSettings().rms_threshold}
    assert room.record_key(dict(base, floor_margin_db=6.0)) != room.record_key(base)
    assert "floor 6 dB" in render_quality.room_series(dict(base, floor_margin_db=6.0))


def test_the_background_gate_is_part_of_a_room_records_column_and_key():
    base = {"model": "a", "condition": "clean", "vad": "none", "rms_threshold": GateSettings().rms_threshold,
            "floor_margin_db": 3.0}
    default = GateSettings().background_threshold
    assert room.record_key(dict(base, background_threshold=None)) == room.record_key(
        dict(base, background_threshold=0.0)) == room.record_key(base)  # no head, or off: the same run
    assert room.record_key(dict(base, background_threshold=default)) != room.record_key(base)
    heads = [dict(base, background_threshold=default, foreground_head=f"heads/{h}.onnx") for h in "ab"]
    assert room.record_key(heads[0]) != room.record_key(heads[1])  # another foreground head: another run
    assert stream_eval.gate_record(GateSettings(), None)["background_threshold"] is None
    assert stream_eval.gate_record(GateSettings(), "h.onnx")["foreground_head"] == "h.onnx"
    off = GateSettings(background_threshold=0.0)
    assert stream_eval.gate_record(off, "h.onnx")["foreground_head"] is None
    assert render_quality.room_series(dict(base, background_threshold=default)) == "a"
    assert render_quality.room_series(dict(base, background_threshold=0.0)) == "a (gate no background gate)"
    assert render_quality.room_series(dict(base, background_threshold=0.3)) == "a (gate background 0.3)"
    assert render_quality.room_series(base) == "a"  # a model without a foreground head
    from edge_ser.manifest import load_manifest

    shipped = load_manifest().get()
    now = dict(base, model=shipped.id, background_threshold=default,
               foreground_head=shipped.foreground_head.file)
    assert render_quality.room_series(now) == shipped.id
    before = dict(now, foreground_head="heads/an-earlier-head.onnx")  # the column says whose head gated
    assert render_quality.room_series(before) == f"{shipped.id} (gate foreground head an-earlier-head)"


def test_gate_table_ranks_gates_by_their_mean_over_the_conditions():
    def rec(rms, floor, cond, f1):
        return {"model": "a", "language": "all", "condition": cond, "smoothing": "none", "vad": "none",
                "rms_threshold": rms, "floor_margin_db": floor, "weighted_f1": f1, "n_windows": 9}

    recs = [rec(0.003, 0.0, "clean", 60.0), rec(0.003, 0.0, "gain-20", 40.0),
            rec(0.001, 6.0, "clean", 58.0), rec(0.001, 6.0, "gain-20", 56.0),
            dict(rec(0.001, 6.0, "clean", 99.0), language="pl")]
    lines = render_quality.gate_table(recs).splitlines()
    assert lines[2] == ("| model | gate.rms_threshold | gate.floor_margin_db | gate.vad | "
                        "gate.background_threshold | foreground head | clean | gain-20 | mean |")
    assert lines[4] == "| a | 0.001 | 6 | none | 0 | - | 58.0 | 56.0 | 57.0 |"
    assert lines[5] == "| a | 0.003 | 0 | none | 0 | - | 60.0 | 40.0 | 50.0 |"
    heard = [dict(rec(0.001, 6.0, c, f), background_threshold=0.6, foreground_head=f"heads/{h}.onnx")
             for h, f in (("fg1", 70.0), ("fg2", 10.0)) for c in ("clean", "gain-20")]
    lines = render_quality.gate_table(recs + heard).splitlines()
    assert lines[4] == "| a | 0.001 | 6 | none | 0.6 | fg1 | 70.0 | 70.0 | 70.0 |"
    assert lines[-1] == "| a | 0.001 | 6 | none | 0.6 | fg2 | 10.0 | 10.0 | 10.0 |"


def test_stream_summary_says_which_rows_had_a_background_gate():
    def rec(model, background):
        return {"model": model, "language": "all", "smoothing": "none", "snr_db": None, "vad": "none",
                "rms_threshold": 0.001, "floor_margin_db": 3.0, "background_threshold": background,
                "weighted_f1": 50.0, "n_windows": 9}

    lines = render_quality.stream_summary([rec("a", 0.6), rec("b", None)], "a").splitlines()
    assert lines[2].startswith("| model | gate.rms_threshold | gate.floor_margin_db | gate.vad | "
                               "gate.background_threshold | clean")
    assert lines[4] == "| a (default) | 0.001 | 3 | none | 0.6 | 50.0 |"
    assert lines[5] == "| b | 0.001 | 3 | none | - | 50.0 |"


def test_room_table_orders_conditions_clean_first_one_column_per_model(tmp_path):
    recs = [{"model": m, "language": "all", "condition": c, "kind": conds.get(c).kind, "smoothing": "none",
             "weighted_f1": 30.0 + i, "uar": 30.0, "uar_emotions": 40.0, "sad_share": 5.0 * i,
             "n_windows": 99, "floor_margin_db": GateSettings().floor_margin_db}
            for m in ("a", "b") for i, c in enumerate(["phone", "clean", "gain-20"])]
    text = render_quality.room_table(recs)
    lines = text.splitlines()
    assert lines[2] == "| condition | a | b |"
    assert [ln.split(" | ")[0] for ln in lines[4:]] == ["| clean", "| gain-20", "| phone"]
    assert "| clean | 31.0 / 40.0 / 5.0 | 31.0 / 40.0 / 5.0 |" in text
    assert tables.GENERATORS["room"](tables.Results(folder=tmp_path)) == "No room records."


def test_a_gate_other_than_the_default_is_a_column_and_a_rerun_of_its_own(tmp_path):
    base = {"model": "a", "language": "all", "condition": "clean", "kind": "clean", "smoothing": "none",
            "weighted_f1": 50.0, "uar_emotions": 40.0, "sad_share": 1.0, "n_windows": 9}
    gated = dict(base, weighted_f1=60.0, vad="none", rms_threshold=0.01, floor_margin_db=3.0)
    text = render_quality.room_table([base, gated])
    assert "| condition | a (gate no floor) | a (gate rms 0.01) |" in text
    assert "| clean | 50.0 / 40.0 / 1.0 | 60.0 / 40.0 / 1.0 |" in text
    out = tmp_path / "room.json"
    out.write_text(json.dumps([base, gated]))
    again = room.merged(out, [dict(gated, weighted_f1=61.0)])
    assert sorted(r["weighted_f1"] for r in again) == [50.0, 61.0]


def test_room_chart_puts_clean_first(tmp_path):
    recs = [{"model": "a", "language": "pl", "condition": c, "kind": conds.get(c).kind, "smoothing": "none",
             "weighted_f1": 30.0, "n_windows": 9} for c in ["phone", "clean"]]
    out = plots.room_chart(recs, tmp_path / "room.png")
    assert out.stat().st_size > 1000


def test_bench_all_reruns_the_room_benchmark_once_it_has_results(tmp_path):
    from bench import cli as bench_cli

    assert "room" not in {s.name for s in bench_cli.plan(tmp_path)}
    (tmp_path / "room.json").write_text(json.dumps([{"model": "a"}, {"model": "b"}, {"model": "a"}]))
    step = next(s for s in bench_cli.plan(tmp_path) if s.name == "room")
    # --merge: records of the same models under other gates (their own columns) stay
    assert step.argv == ["-m", "bench.room", "--models", "a", "--models", "b", "--merge"]
