"""Bad input of every kind: one clear line on stderr, exit code 2, never a traceback.

Each case runs the real `edge-ser` CLI in a subprocess: config files, model files, audio files,
devices and brokers that are wrong in one way each. Transient faults (a broker that goes away later)
are retried instead; they live in test_faults.py.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import FIXTURES, REPO, SHARED, SPEECH, assert_user_error, cli_env, run_cli
from mosquitto import Mosquitto

MANIFEST = REPO / "models" / "manifest.yaml"


def write_config(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def unreadable_prefix() -> list[str]:
    """Command prefix under which a chmod 000 file really is unreadable (root has CAP_DAC_OVERRIDE)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's file-permission override"
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all"]


def run_unprivileged(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*unreadable_prefix(), sys.executable, "-m", "edge_ser", *args],
                          capture_output=True, text=True, timeout=120, env=cli_env(), cwd=REPO)


# -- config -------------------------------------------------------------------------------------

CONFIG_CASES = {
    "unknown key": ({"gate": {"rms_treshold": 0.02}}, ["gate.rms_treshold", "unknown"]),
    "unknown section": ({"micro": {"device": 1}}, ["micro"]),
    "wrong type": ({"window": {"hop_s": "fast"}}, ["window.hop_s"]),
    "wrong type section": ({"mqtt": "localhost"}, ["mqtt"]),
    "bool for number": ({"window": {"window_s": True}}, ["window.window_s"]),
    "out of range threshold": ({"gate": {"rms_threshold": 1.5}}, ["gate.rms_threshold"]),
    "out of range qos": ({"mqtt": {"qos": 3}}, ["mqtt.qos"]),
    "negative hop": ({"window": {"hop_s": -1}}, ["window.hop_s"]),
    "zero threads": ({"model": {"threads": 0}}, ["model.threads"]),
    "bad choice": ({"smoothing": {"method": "kalman"}}, ["smoothing.method"]),
    "topic prefix with +": ({"mqtt": {"host": "127.0.0.1", "topic_prefix": "home/+/ser"}},
                            ["mqtt.topic_prefix"]),
    "topic prefix with #": ({"mqtt": {"host": "127.0.0.1", "topic_prefix": "home/#"}},
                            ["mqtt.topic_prefix"]),
    "site with wildcard": ({"site": "kitchen/#"}, ["site"]),
    "not yaml": ("gate: [unclosed\n", ["not valid YAML"]),
    "not a mapping": ("- just\n- a list\n", ["mapping"]),
}


def run_in_process(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """The CLI's main() in this process (config errors happen before any model or signal handler)."""
    from edge_ser.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, exit_info.value.code, out, err)


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    data, fragments = CONFIG_CASES[case]
    cfg = write_config(tmp_path / "config.yaml", data)
    proc = run_in_process(capsys, "listen", "--config", str(cfg), "--input", str(SPEECH))
    assert_user_error(proc, *fragments)
    assert proc.stdout == "", "no result may be printed before the config is checked"


def test_bad_config_in_a_real_process(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", {"mqtt": {"host": "127.0.0.1", "topic_prefix": "a/+"}})
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)), "mqtt.topic_prefix")


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert_user_error(run_in_process(capsys, "listen", "--config", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_unreadable_config_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", {"site": "kitchen"})
    cfg.chmod(0)
    assert_user_error(run_unprivileged("listen", "--config", str(cfg), "--input", str(SPEECH)),
                      "config.yaml")


def test_topic_prefix_wildcard_from_command_line_site(capsys: pytest.CaptureFixture) -> None:
    assert_user_error(run_in_process(capsys, "listen", "--input", str(SPEECH), "--site", "a+b"), "site")


# -- model files ----------------------------------------------------------------------------------

def model_copy(tmp_path: Path, *, head_bytes: bytes | None = None, sha256: str | None = None,
               size: int | None = None, head_name: str = "heads/broken.onnx") -> tuple[Path, Path]:
    """A manifest copy whose default model's head is `head_name` in tmp_path/models; (config, head)."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    entry = manifest["models"][manifest["default"]]
    head = tmp_path / "models" / head_name
    head.parent.mkdir(parents=True, exist_ok=True)
    if head_bytes is not None:
        head.write_bytes(head_bytes)
    entry["head"]["file"] = head_name
    if sha256 is not None:
        entry["head"]["sha256"] = sha256
    if size is not None:
        entry["head"]["size"] = size
    mpath = tmp_path / "manifest.yaml"
    mpath.write_text(yaml.safe_dump(manifest))
    cfg = write_config(tmp_path / "config.yaml",
                       {"model": {"manifest": str(mpath), "search_path": [str(tmp_path / "models")]}})
    return cfg, head


def real_head() -> tuple[bytes, dict]:
    manifest = yaml.safe_load(MANIFEST.read_text())
    entry = manifest["models"][manifest["default"]]
    path = next(p / entry["head"]["file"] for p in (REPO / "models", SHARED / "weights")
                if (p / entry["head"]["file"]).is_file())
    return path.read_bytes(), entry["head"]


def test_unknown_model_id() -> None:
    assert_user_error(run_cli("listen", "--input", str(SPEECH), "--model", "no-such-model"),
                      "no-such-model")


def test_missing_model_file(tmp_path: Path) -> None:
    cfg, _ = model_copy(tmp_path, head_name="heads/missing.onnx")
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)),
                      "heads/missing.onnx", "not found")


def test_unreadable_model_file(tmp_path: Path) -> None:
    data, ref = real_head()
    cfg, head = model_copy(tmp_path, head_bytes=data, sha256=ref["sha256"], size=ref.get("size"),
                           head_name="heads/unreadable.onnx")
    head.chmod(0)
    assert_user_error(run_unprivileged("listen", "--config", str(cfg), "--input", str(SPEECH)),
                      "unreadable.onnx")


def test_sha256_mismatch(tmp_path: Path) -> None:
    data, ref = real_head()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF  # same size, different bytes
    cfg, _ = model_copy(tmp_path, head_bytes=bytes(flipped), sha256=ref["sha256"], size=ref.get("size"))
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)), "sha256")


def test_truncated_model_file(tmp_path: Path) -> None:
    data, ref = real_head()
    cfg, _ = model_copy(tmp_path, head_bytes=data[: len(data) // 2], sha256=ref["sha256"],
                        size=ref.get("size"))
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)), "broken.onnx")


def test_corrupt_model_file_with_matching_checksum(tmp_path: Path) -> None:
    # The manifest vouches for the bytes, but they are no ONNX model: the runtime refuses to load it.
    import hashlib

    junk = b"this is not an onnx model\n" * 100
    cfg, _ = model_copy(tmp_path, head_bytes=junk, sha256=hashlib.sha256(junk).hexdigest(), size=len(junk))
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)), "broken.onnx")


def test_corrupt_manifest(tmp_path: Path) -> None:
    mpath = tmp_path / "manifest.yaml"
    mpath.write_text("version: 1\nmodels: [\n")
    cfg = write_config(tmp_path / "config.yaml", {"model": {"manifest": str(mpath)}})
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)), "manifest")


# -- audio files --------------------------------------------------------------------------------

def huge_header_wav(path: Path) -> Path:
    """A WAV whose header claims 4 GiB of data (the most a RIFF size field holds) over 1 s of samples."""
    x = (np.sin(np.arange(16000) * 0.1) * 8000).astype("<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + fmt
                     + b"data" + struct.pack("<I", 0xFFFFFFF0) + x)
    return path


def odd_header_wav(path: Path, rate: int = 16000, channels: int = 1) -> Path:
    """A PCM WAV whose header states an impossible rate or channel count over 1 s of samples."""
    x = np.zeros(16000, dtype="<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(x)) + b"WAVE" + fmt
                     + b"data" + struct.pack("<I", len(x)) + x)
    return path


def float_wav(path: Path, value: float, at_s: float = 1.0) -> Path:
    """A float WAV of 3 s of tone with one non-finite sample (a broken float export or source)."""
    x = (0.1 * np.sin(np.arange(48000) * 0.1)).astype(np.float32)
    x[int(at_s * 16000)] = value
    sf.write(path, x, 16000, subtype="FLOAT")
    return path


AUDIO_CASES = {
    "zero-length": (lambda d: FIXTURES / "empty.wav", ["empty.wav"]),
    "truncated": (lambda d: FIXTURES / "truncated.wav", ["truncated.wav"]),
    "header only": (lambda d: FIXTURES / "header_only.wav", ["header_only.wav"]),
    "corrupt (text)": (lambda d: FIXTURES / "not_audio.wav", ["not_audio.wav"]),
    "corrupt (random bytes)": (
        lambda d: (d / "noise.flac").write_bytes(np.random.default_rng(0).bytes(50_000)) and d / "noise.flac",
        ["noise.flac"]),
    "huge header": (lambda d: huge_header_wav(d / "huge.wav"), ["huge.wav"]),
    "missing": (lambda d: d / "nope.wav", ["nope.wav"]),
    "zero channels": (lambda d: odd_header_wav(d / "nochan.wav", channels=0), ["nochan.wav"]),
    "zero sample rate": (lambda d: odd_header_wav(d / "norate.wav", rate=0), ["norate.wav"]),
    "folder": (lambda d: d, [""]),
    "1 Hz rate": (lambda d: odd_header_wav(d / "onehz.wav", rate=1), ["1 Hz", "4000-384000", "onehz.wav"]),
    "3 MHz rate": (lambda d: odd_header_wav(d / "fast.wav", rate=3_000_000), ["3000000 Hz", "fast.wav"]),
    "1000 channels": (lambda d: odd_header_wav(d / "wide.wav", channels=1000), ["1000 channels", "wide.wav"]),
    "NaN samples": (lambda d: float_wav(d / "nan.wav", np.nan), ["non-finite", "1.00 s", "nan.wav"]),
    "infinite samples": (lambda d: float_wav(d / "inf.wav", -np.inf, 0.0), ["non-finite", "inf.wav"]),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_bad_audio_file_listen(tmp_path: Path, case: str) -> None:
    make, fragments = AUDIO_CASES[case]
    path = make(tmp_path)
    assert_user_error(run_cli("listen", "--input", str(path)), *fragments)


# The rest of AUDIO_CASES through classify: tests/test_cli.py.
@pytest.mark.parametrize("case", ["huge header", "zero channels", "NaN samples", "1 Hz rate"])
def test_bad_audio_file_classify(tmp_path: Path, case: str) -> None:
    make, fragments = AUDIO_CASES[case]
    path = make(tmp_path)
    proc = run_cli("classify", "--json", str(path))
    assert_user_error(proc, *fragments)
    assert proc.stdout == "", "a refused file gets no result lines"


def test_odd_rate_and_channel_count_file_is_resampled(tmp_path: Path) -> None:
    # Not an error: any rate and channel count is mixed down and resampled to 16 kHz mono.
    x, rate = sf.read(SPEECH, dtype="float32")
    odd = tmp_path / "odd.wav"
    n = int(len(x) * 11025 / rate)
    y = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
    sf.write(odd, np.stack([y, 0.5 * y, -y], axis=1), 11025, subtype="PCM_U8")
    proc = run_cli("classify", "--json", str(odd))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 10  # ~11 s at a 1 s hop, plus the file line


def peak_rss_mb(*args: str) -> int:
    """Run the CLI; its peak RSS in MB (asserting a clean exit)."""
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'edge_ser', *sys.argv[1:]],\n"
        "                   capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
        "print(p.stderr[-2000:], file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          timeout=300, env=cli_env(), cwd=REPO)
    rc, peak_mb = map(int, proc.stdout.split())
    assert rc == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return peak_mb


def test_long_file_streams_in_constant_memory(tmp_path: Path) -> None:
    # 10 minutes of 48 kHz stereo (230 MB as decoded float32) must stream block by block: the peak
    # RSS stays near that of a 3 s file. Digital silence: a small FLAC, every window gated.
    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", samplerate=48000, channels=2, subtype="PCM_16") as f:
        block = np.zeros((48000 * 60, 2), dtype=np.float32)
        for _ in range(10):
            f.write(block)
    short = peak_rss_mb("listen", "--input", str(FIXTURES / "silence.wav"), "--log-level", "WARNING")
    long = peak_rss_mb("listen", "--input", str(path), "--log-level", "WARNING")
    print(f"peak RSS: {short} MB (3 s file), {long} MB (10 min file)")
    assert long < short + 60, f"peak RSS {long} MB vs {short} MB for 3 s: the file seems to be read whole"


# -- devices --------------------------------------------------------------------------------------

def test_missing_device(tmp_path: Path) -> None:
    from virtual_mic import VirtualMic

    with VirtualMic(tmp_path) as mic:
        proc = run_cli("listen", "--device", "no-such-microphone", env=cli_env(HOME=str(mic.home)),
                       timeout=60)
    assert_user_error(proc, "no-such-microphone")


def test_unsupported_channel_count(tmp_path: Path) -> None:
    from virtual_mic import VirtualMic

    # ALSA plugin devices convert any count up to PortAudio's 128; a USB mic would refuse sooner.
    with VirtualMic(tmp_path) as mic:
        cfg = write_config(tmp_path / "config.yaml", {"audio": {"device": "fakemic", "channels": 500}})
        proc = run_cli("listen", "--config", str(cfg), env=cli_env(HOME=str(mic.home)), timeout=60)
    assert_user_error(proc, "500 channel")


def test_unsupported_sample_rate(tmp_path: Path) -> None:
    from virtual_mic import VirtualMic

    with VirtualMic(tmp_path) as mic:
        cfg = write_config(tmp_path / "config.yaml", {"audio": {"device": "fakemic", "sample_rate": 7}})
        proc = run_cli("listen", "--config", str(cfg), env=cli_env(HOME=str(mic.home)), timeout=60)
    assert_user_error(proc, "7 Hz")


# -- brokers --------------------------------------------------------------------------------------
# Unreachable broker, a wrong CA and plain MQTT against a TLS port: tests/test_listen_mqtt.py.

def test_tls_client_against_plain_broker(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        cfg = write_config(tmp_path / "config.yaml",
                           {"mqtt": {"host": broker.host, "port": broker.port, "tls": True}})
        proc = run_cli("listen", "--config", str(cfg), "--input", str(SPEECH))
    assert_user_error(proc, "TLS", str(broker.port))


def test_missing_ca_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", {"mqtt": {
        "host": "127.0.0.1", "tls": True, "ca_file": str(tmp_path / "missing-ca.crt")}})
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH)), "missing-ca.crt")


def test_wrong_password(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, users={"ser": "right"}) as broker:
        cfg = write_config(tmp_path / "config.yaml", {"mqtt": {
            "host": broker.host, "port": broker.port, "username": "ser"}})
        proc = run_cli("listen", "--config", str(cfg), "--input", str(SPEECH),
                       env=cli_env(EDGE_SER_MQTT_PASSWORD="wrong"))
    assert_user_error(proc, "refused")
    assert "wrong" not in proc.stderr, "the password must never be logged"


def test_password_file_missing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", {"mqtt": {
        "host": "127.0.0.1", "username": "ser", "password_file": str(tmp_path / "pw")}})
    env = cli_env()
    env.pop("EDGE_SER_MQTT_PASSWORD", None)
    assert_user_error(run_cli("listen", "--config", str(cfg), "--input", str(SPEECH), env=env),
                      "password_file")
