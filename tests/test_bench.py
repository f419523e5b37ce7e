"""Benchmarks run and write valid records on a few windows (no timing assertions: numbers vary)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeModel, assert_user_error, run_cli

from bench import footprint, latency, stream_eval
from edge_ser import benchmark
from edge_ser.labels import EMOTIONS, NEUTRAL

STREAM_KEYS = {"model", "language", "snr_db", "smoothing", "weighted_f1", "uar", "n_windows"}


def check_latency_record(r: dict) -> None:
    assert set(benchmark.RECORD_KEYS) <= set(r), set(benchmark.RECORD_KEYS) - set(r)
    assert r["n_windows"] >= 3
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert r["infer_p50_ms"] > 0 and r["rss_mb"] > 0 and r["cpu_pct"] >= 0
    assert isinstance(r["machine"], str) and r["machine"]


def test_speechlike_passes_the_gate_in_every_window():
    x = benchmark.speechlike(6.0, seed=3)
    assert x.dtype == np.float32 and len(x) == 6 * 16000 and np.abs(x).max() <= 1.0
    win = x[: len(x) // 32000 * 32000].reshape(-1, 32000)
    assert (np.sqrt((win.astype(np.float64) ** 2).mean(axis=1)) > 0.05).all()
    assert np.array_equal(x, benchmark.speechlike(6.0, seed=3))


def test_bench_model_through_the_pipeline_gives_one_latency_per_window():
    model = FakeModel()
    r = benchmark.bench_model(model, seconds=6, threads=1, backend="fake", precision="float32", command="t")
    check_latency_record(r)
    assert r["n_windows"] == 5 == len(r["latencies_ms"])  # 2 s windows, 1 s hop, 6 s of audio
    assert r["model"] == "fake" and r["backend"] == "fake" and r["threads"] == 1
    table = benchmark.format_table([r])
    assert "p50 ms" in table and "fake" in table


def test_cli_bench_default_model_json():
    proc = run_cli("bench", "--seconds", "4", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(records) == 1
    check_latency_record(records[0])
    assert records[0]["command"].startswith("edge-ser bench")


def test_cli_bench_table_and_bad_seconds():
    proc = run_cli("bench", "--seconds", "4", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "p95 ms" in proc.stdout and "RTF" in proc.stdout
    assert_user_error(run_cli("bench", "--seconds", "1"), "--seconds")


@pytest.mark.needs_shared  # the YAMNet backbone
def test_latency_script_writes_records(tmp_path):
    out = tmp_path / "lat.json"
    assert latency.main(["--configs", "yamnet-backbone", "--threads", "1", "--seconds", "5",
                         "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert len(records) == 1
    check_latency_record(records[0])
    samples = json.loads((tmp_path / "lat_windows.json").read_text())
    assert len(samples["yamnet-backbone|1"]) == records[0]["n_windows"]


def test_reference_label_is_the_speech_a_window_mostly_covers():
    seg = [(0, 16000, "sadness"), (24000, 64000, "happiness")]
    assert stream_eval.reference(seg, 0, 32000) == "sadness"  # 1.0 s sad vs 0.5 s happy
    assert stream_eval.reference(seg, 16000, 32000) == "happiness"
    assert stream_eval.reference(seg, 64000, 32000) == NEUTRAL  # pause
    assert stream_eval.reference([(0, 4000, "sadness")], 0, 32000) == NEUTRAL  # 0.25 s < 0.5 s


def test_noise_is_added_at_the_requested_snr():
    rng = np.random.default_rng(0)
    audio = np.zeros(48000, np.float32)
    audio[8000:40000] = 0.1 * rng.standard_normal(32000)
    seg = [(8000, 40000, "sadness")]
    noisy = stream_eval.add_noise(audio, seg, 10.0, seed=1)
    noise = noisy - audio
    snr = 10 * np.log10(np.mean(audio[8000:40000] ** 2) / np.mean(noise**2))
    assert abs(snr - 10.0) < 0.5
    assert stream_eval.add_noise(audio, seg, None, seed=1) is audio


@pytest.mark.needs_shared  # TESS test speakers and the YAMNet models
def test_stream_eval_writes_records(tmp_path, monkeypatch):
    monkeypatch.setattr(stream_eval, "CACHE", tmp_path / "streams")
    out = tmp_path / "stream.json"
    assert stream_eval.main(["--languages", "en", "--snrs", "clean", "10", "--smoothing", "none", "majority",
                             "--vad", "none", "yamnet", "--per-class", "1", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert records and all(STREAM_KEYS <= set(r) for r in records)
    assert {(r["snr_db"], r["smoothing"], r["vad"]) for r in records if r["language"] == "en"} == {
        (s, sm, v) for s in (None, 10.0) for sm in ("none", "majority") for v in ("none", "yamnet")}
    en = {(r["model"], r["snr_db"], r["smoothing"], r["vad"]): r for r in records if r["language"] == "en"}
    for (model, snr, sm, vad), r in en.items():  # the speech gate only ever adds gated windows
        if vad == "yamnet":
            assert r["gated_windows"] >= en[(model, snr, sm, "none")]["gated_windows"]
    for r in records:
        assert 0 <= r["weighted_f1"] <= 100 and 0 <= r["uar"] <= 100 and r["n_windows"] > 0
    conf = json.loads((tmp_path / "stream_confusion.json").read_text())
    assert conf[0]["labels"] == [*EMOTIONS, NEUTRAL]
    by_key = {(r["model"], r["language"], r["snr_db"], r["vad"]): r
              for r in records if r["smoothing"] == "none"}
    for c in conf:
        key = (c["model"], c["language"], c["snr_db"], c["vad"])
        assert sum(map(sum, c["matrix"])) == by_key[key]["n_windows"]


@pytest.mark.parametrize("kind", ["silent"])
def test_footprint_measures_a_listen_run(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(footprint, "CACHE", tmp_path)
    wav = footprint.audio_files(4.0)[kind]
    from edge_ser.manifest import load_manifest

    r = footprint.measure(load_manifest().default, wav, None, settle=1.0)
    assert r["peak_rss_mb"] > 10 and r["published"] >= 1 and r["inferred"] == 0
    assert r["cpu_pct"] is None or r["cpu_pct"] >= 0


def test_footprint_runs_non_stop_speech_with_the_background_gate_off(tmp_path, monkeypatch):
    import yaml

    from edge_ser.config import load_settings

    monkeypatch.setattr(footprint, "CACHE", tmp_path / "absent")  # a fresh clone has no cache/bench yet
    base = tmp_path / "hubert.yaml"
    base.write_text(yaml.safe_dump({"model": {"manifest": "m.yaml"}, "gate": {"rms_threshold": 0.002}}))
    assert footprint.run_config(base, "silent") == base and footprint.run_config(None, "silent") is None
    speech = load_settings(footprint.run_config(base, "speech"))
    assert speech.gate.background_threshold == 0.0 and speech.gate.rms_threshold == 0.002
    assert speech.model.manifest == "m.yaml"
    assert load_settings(footprint.run_config(None, "speech")).gate.background_threshold == 0.0


def test_list_options_take_several_values_after_one_flag():
    from bench.options import spread

    argv = ["--models", "a", "b", "--vad", "none", "yamnet", "--merge", "--snrs", "clean", "-5", "--out", "x"]
    assert spread(argv, "--models", "--vad", "--snrs") == [
        "--models", "a", "--models", "b", "--vad", "none", "--vad", "yamnet", "--merge",
        "--snrs", "clean", "--snrs", "-5", "--out", "x"]
    ctx = stream_eval.command.make_context("stream-eval", spread(argv, "--models", "--vad", "--snrs"))
    assert ctx.params["models"] == ("a", "b") and ctx.params["snrs"] == ("clean", "-5")
    assert latency.main(["--threads", "1", "--bogus"]) == 2  # a usage error is an exit code, not an exception
