"""The `edge-ser` command end to end with the default model: listen --input, classify, errors, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from conftest import FIXTURES, REPO, SPEECH, TESS, assert_user_error, cli_env, run_cli

from edge_ser import __version__
from edge_ser.message import KEYS


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_listen_input_streams_the_speech_fixture_and_exits_0() -> None:
    proc = run_cli("listen", "--input", str(SPEECH))
    assert proc.returncode == 0, proc.stderr
    msgs = json_lines(proc.stdout)
    assert len(msgs) >= 9
    assert all(tuple(m) == KEYS for m in msgs)
    starts = [m["window_start"] for m in msgs]
    assert starts == sorted(starts)
    # Two angry utterances, 3 s of near-silence (one neutral for the whole stretch), two sad ones.
    neutral = [m for m in msgs if m["label"] == "neutral"]
    assert neutral and any(m["gated"] for m in neutral)
    speech = [m for m in msgs if not m["gated"]]
    first = Counter(m["label"] for m in speech[:3]).most_common(1)[0][0]
    last = Counter(m["label"] for m in speech[-3:]).most_common(1)[0][0]
    assert (first, last) == ("anger_disgust", "sadness"), [(m["window_start"], m["label"]) for m in msgs]
    for m in speech:
        assert abs(sum(m["probs"].values()) - 1) < 1e-3 and m["confidence"] == max(m["probs"].values())


def tess(folder: str, n: int) -> list[str]:
    return [str(p) for p in sorted((TESS / folder).glob("*.opus"))[150 : 150 + n]]


def test_classify_tess_angry_and_sad_files_get_the_right_merged_label() -> None:
    files = {"anger_disgust": tess("YAF_angry", 3) + tess("OAF_angry", 3),
             "sadness": tess("YAF_sad", 3) + tess("OAF_Sad", 3)}
    # Pinned to the TESS-trained placeholder: the shipped default (All+, speaker-independent, ~45 %
    # accuracy) is measured in bench/, and 5 of 6 right on one corpus is no property it promises.
    proc = run_cli("classify", "--json", "--model", "yamnet-dev", *files["anger_disgust"], *files["sadness"])
    assert proc.returncode == 0, proc.stderr
    per_file = {m["path"]: m for m in json_lines(proc.stdout) if "window_start" not in m}
    assert len(per_file) == 12
    for want, paths in files.items():
        got = [per_file[p]["label"] for p in paths]
        assert got.count(want) >= 5, (want, got)
    for m in per_file.values():
        assert set(m) >= {"path", "label", "probs"}


def test_classify_silence_is_neutral_without_inference() -> None:
    proc = run_cli("classify", "--json", str(FIXTURES / "silence.wav"))
    assert proc.returncode == 0, proc.stderr
    *windows, summary = json_lines(proc.stdout)
    assert windows and all(w["gated"] and w["label"] == "neutral" for w in windows)
    assert summary["label"] == "neutral" and summary["speech_windows"] == 0


def test_classify_48k_stereo_flac_and_folders() -> None:
    proc = run_cli("classify", "--json", str(FIXTURES / "angry_48k_stereo.flac"))
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout)[-1]["label"] == "anger_disgust"

    text = run_cli("classify", str(FIXTURES / "speech_angry_sad.wav"), str(FIXTURES / "silence.wav"))
    assert text.returncode == 0
    assert [line.split("\t")[0] for line in text.stdout.splitlines()] == [
        str(FIXTURES / "speech_angry_sad.wav"), str(FIXTURES / "silence.wav")]


def test_classify_a_folder_recursively(tmp_path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "x.wav").write_bytes(SPEECH.read_bytes())
    (tmp_path / "notes.txt").write_text("not audio")
    proc = run_cli("classify", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(str(sub / "x.wav"))


@pytest.mark.parametrize("name, fragment", [
    ("empty.wav", "empty"),
    ("truncated.wav", "truncated"),
    ("header_only.wav", "cannot read audio file"),
    ("not_audio.wav", "cannot read audio file"),
    ("missing.wav", "no such file"),
])
def test_classify_bad_files_exit_2_with_one_line(name: str, fragment: str) -> None:
    assert_user_error(run_cli("classify", str(FIXTURES / name)), fragment)


def test_listen_bad_input_exits_2_with_one_line() -> None:
    assert_user_error(run_cli("listen", "--input", str(FIXTURES / "truncated.wav")), "truncated")
    proc = run_cli("listen", "--input", str(FIXTURES / "make_fixtures.py"))
    assert_user_error(proc, "cannot read audio file")


def test_wrong_sha256_is_refused(tmp_path) -> None:
    manifest = yaml.safe_load((REPO / "models" / "manifest.yaml").read_text())
    entry = manifest["models"][manifest["default"]]
    entry["head"]["sha256"] = "0" * 64
    entry["head"]["file"] = str(REPO / "models" / entry["head"]["file"])
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  manifest: {tmp_path / 'manifest.yaml'}\n")
    proc = run_cli("classify", "--config", str(config), str(SPEECH))
    assert_user_error(proc, "sha256")


def test_unknown_model_id() -> None:
    assert_user_error(run_cli("listen", "--model", "no-such-model", "--input", str(SPEECH)), "no-such-model")


def test_missing_device_exits_2(tmp_path) -> None:
    from virtual_mic import make_home

    home = make_home(tmp_path, tmp_path / "in.raw")
    (tmp_path / "in.raw").write_bytes(bytes(48000 * 4))
    proc = run_cli("listen", "--device", "no-such-mic", env=cli_env(HOME=str(home)))
    assert_user_error(proc, "no-such-mic", "not found")


def test_realtime_without_input_is_refused() -> None:
    assert_user_error(run_cli("listen", "--realtime"), "--realtime")


def test_classify_and_file_listen_work_without_portaudio() -> None:
    code = ("import sys; sys.modules['sounddevice'] = None\n"
            "from edge_ser.cli import main\n"
            f"main(['classify', {str(FIXTURES / 'angry_48k_stereo.flac')!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "anger_disgust" in proc.stdout


def test_version_models_and_help() -> None:
    assert run_cli("--version").stdout.strip().endswith(__version__)
    models = run_cli("models")
    assert models.returncode == 0 and "(default)" in models.stdout and "sha256 ok" in models.stdout
    helptext = run_cli("--help").stdout
    for cmd in ("listen", "classify", "devices", "models"):
        assert cmd in helptext


def start_listen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_ser", "listen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)


def read_messages(proc: subprocess.Popen, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(json.loads(line))
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_exit_0(sig) -> None:
    proc = start_listen("--input", str(SPEECH), "--realtime")
    try:
        assert len(read_messages(proc, 1)) == 1
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopping" in err
    print(f"stopped {took:.2f} s after {sig.name}")  # requirement: within 2 s (see report)


def test_sighup_reload_keeps_running_on_error_and_applies_a_good_config(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("window:\n  hop_s: 0.5\n")
    long_input = tmp_path / "long.wav"
    import numpy as np
    import soundfile as sf

    x, sr = sf.read(SPEECH, dtype="float32")
    sf.write(long_input, np.concatenate([x, x, x]), sr)
    proc = start_listen("--config", str(config), "--input", str(long_input), "--realtime")
    try:
        assert len(read_messages(proc, 1)) == 1
        config.write_text("window:\n  hop_s: 0.5\ngate:\n  rms_treshold: 0.5\n")
        proc.send_signal(signal.SIGHUP)
        read_messages(proc, 1)
        config.write_text("window:\n  hop_s: 0.5\ngate:\n  rms_threshold: 0.9\n  neutral_once: false\n")
        proc.send_signal(signal.SIGHUP)
        msgs = read_messages(proc, 5)
        assert proc.poll() is None  # still running after the bad reload
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert "config reload failed, keeping the running config: unknown config key gate.rms_treshold" in err
    assert "config reloaded" in err
    assert msgs[-1]["gated"] and msgs[-2]["gated"]
    assert proc.returncode == 0


def test_microphone_commands_without_portaudio_are_one_clear_error() -> None:
    code = ("import sys; sys.modules['sounddevice'] = None\n"
            "from edge_ser.cli import main\n"
            "main(['devices'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(),
                          timeout=60)
    assert_user_error(proc, "cannot use a microphone")


@pytest.mark.needs_shared  # gate.vad yamnet runs a YAMNet model
def test_vad_choices_through_the_cli(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("gate:\n  vad: yamnet\n  vad_threshold: 0.5\n")
    # the default has no speech score of its own: refused with the way out
    assert_user_error(run_cli("listen", "--config", str(config), "--input", str(SPEECH)), "gate.vad=yamnet",
                      "silero")
    proc = run_cli("listen", "--config", str(config), "--input", str(SPEECH),
                   "--model", "yamnet-mlp-allplus-int8")
    assert proc.returncode == 0, proc.stderr
    msgs = json_lines(proc.stdout)
    assert any(not m["gated"] for m in msgs) and any(m["gated"] for m in msgs)

    import importlib.util

    config.write_text("gate:\n  vad: silero\n")
    proc = run_cli("listen", "--config", str(config), "--input", str(SPEECH))
    if importlib.util.find_spec("silero_vad") is None:
        assert_user_error(proc, "silero-vad")
    else:  # a machine with the silero-vad wheel runs it
        assert proc.returncode == 0, proc.stderr
