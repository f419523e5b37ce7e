"""`edge-ser listen --device fakemic` through the real sounddevice/PortAudio/ALSA path (no hardware).

The virtual mic (tests/virtual_mic.py) is a 48 kHz stereo S16_LE ALSA device fed in real time from a
FIFO; the daemon opens it at its native rate, mixes to mono and resamples to 16 kHz.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import soundfile as sf
from conftest import FIXTURES, REPO, SPEECH, cli_env, run_cli
from virtual_mic import DEVICE, VirtualMic

from edge_ser.message import KEYS


class Daemon:
    """`edge-ser listen` in the background; stdout JSON lines collected by a thread."""

    def __init__(self, mic: VirtualMic, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_ser", "listen", "--device", DEVICE, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=mic.env(cli_env()), cwd=REPO)
        self.messages: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.messages.append(json.loads(line))

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if predicate(self.messages):
                return True
            time.sleep(0.1)
        return predicate(self.messages)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        finally:
            self.proc.kill()
        self._reader.join(timeout=5)
        return self.proc.returncode, self.proc.stderr.read()


def speech_labels(messages: list[dict]) -> list[str]:
    return [m["label"] for m in messages if not m["gated"]]


def test_devices_lists_the_virtual_mic(tmp_path) -> None:
    with VirtualMic(tmp_path) as mic:  # the ALSA file plugin needs its infile to exist
        proc = run_cli("devices", env=mic.env(cli_env()))
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.split()[1:2] == [DEVICE])
    assert "48000 Hz" in line


def test_listen_on_a_48k_stereo_mic_publishes_the_right_labels(tmp_path) -> None:
    x, sr = sf.read(SPEECH, dtype="float32")
    with VirtualMic(tmp_path, audio=x, rate=sr) as mic:
        daemon = Daemon(mic)
        try:
            # angry utterances, then the silence's neutral, then sad ones (about 13 s in real time)
            done = daemon.wait_for(lambda ms: "sadness" in speech_labels(ms)[-2:] and mic.wait_played(0),
                                   timeout=60)
            daemon.wait_for(lambda ms: len(ms) >= 11, timeout=5)
        finally:
            rc, err = daemon.stop()
    msgs = daemon.messages
    assert done, (err[-2000:], [(m["window_start"], m["label"]) for m in msgs])
    assert rc == 0, err[-2000:]
    assert "open at 48000 Hz" in err
    assert all(tuple(m) == KEYS for m in msgs)
    labels = [m["label"] for m in msgs]
    assert "neutral" in labels
    first_neutral = labels.index("neutral")
    before, after = speech_labels(msgs[:first_neutral]), speech_labels(msgs[first_neutral:])
    assert before.count("anger_disgust") > len(before) / 2, labels
    assert after.count("sadness") > len(after) / 2, labels


def test_listen_captures_stereo_when_configured(tmp_path) -> None:
    x, sr = sf.read(FIXTURES / "angry_48k_stereo.flac", dtype="float32")
    config = tmp_path / "c.yaml"
    config.write_text("audio:\n  channels: 2\n")
    with VirtualMic(tmp_path, audio=x, rate=sr) as mic:
        daemon = Daemon(mic, "--config", str(config))
        try:
            got = daemon.wait_for(lambda ms: "anger_disgust" in speech_labels(ms), timeout=40)
        finally:
            rc, err = daemon.stop()
    assert got, (err[-2000:], daemon.messages)
    assert rc == 0 and "open at 48000 Hz, 2 channel(s)" in err


def test_a_silent_room_gives_one_neutral_and_no_inference(tmp_path) -> None:
    with VirtualMic(tmp_path) as mic:  # silence only
        daemon = Daemon(mic)
        try:
            assert daemon.wait_for(lambda ms: len(ms) >= 1, timeout=40)
            time.sleep(3)  # three more silent windows: no more messages (neutral once per stretch)
        finally:
            rc, err = daemon.stop()
    assert rc == 0, err[-2000:]
    assert [(m["label"], m["gated"]) for m in daemon.messages] == [("neutral", True)]
    assert "inferred=0" in err
