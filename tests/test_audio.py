"""Audio sources: files of any format, rate and channels, mixing, resampling, the mic (fake PortAudio)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from conftest import FIXTURES, SPEECH

from edge_ser.audio.resample import MonoResampler, to_mono
from edge_ser.audio.source_file import FileSource
from edge_ser.audio.source_mic import MicSource, resolve_device
from edge_ser.errors import AudioError
from edge_ser.settings import AudioSettings


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def test_to_mono_averages_channels() -> None:
    x = np.stack([np.ones(4), np.zeros(4)], axis=1)
    assert to_mono(x).tolist() == [0.5] * 4
    assert to_mono(np.ones((3, 1))).dtype == np.float32
    assert to_mono(np.ones(3)).shape == (3,)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_streaming_resampler_keeps_length_and_pitch(rate: int) -> None:
    t = np.arange(rate * 2) / rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    stereo = np.stack([tone, 0.5 * tone], axis=1)
    r = MonoResampler(rate)
    block = int(rate * 0.1)
    parts = [r.process(stereo[i : i + block]) for i in range(0, len(stereo), block)]
    out = np.concatenate([*parts, r.flush()])
    assert abs(len(out) - 32000) <= 2
    assert abs(peak_hz(out[1000:-1000], 16000) - 1000) < 5


def test_file_source_reads_the_48k_stereo_fixture_in_blocks() -> None:
    src = FileSource(FIXTURES / "angry_48k_stereo.flac", block_s=0.1)
    assert (src.rate, src.channels) == (48000, 2)
    blocks = list(src.blocks())
    assert all(b.shape[1] == 2 and b.dtype == np.float32 for b in blocks)
    assert max(len(b) for b in blocks) == 4800
    assert sum(len(b) for b in blocks) == src.frames
    src.close()


def test_file_source_reads_ogg_opus(tmp_path) -> None:
    x, sr = sf.read(SPEECH, dtype="float32", frames=16000)
    path = tmp_path / "a.opus"
    sf.write(path, x, 48000 if sr != 16000 else 16000, format="OGG", subtype="OPUS")
    src = FileSource(path)
    assert (src.rate, src.channels) == (16000 if sr == 16000 else 48000, 1)
    y = np.concatenate(list(src.blocks()))[:, 0]
    src.close()
    assert len(y) == len(x)  # every frame written comes back (Opus pre-skip and end trimming undone)
    level, back = float(np.sqrt(np.mean(x**2))), float(np.sqrt(np.mean(y**2)))
    assert level > 0.01 and abs(back - level) < 0.1 * level  # the speech itself, not silence or noise


def test_file_source_stops_when_asked() -> None:
    stop = threading.Event()
    src = FileSource(SPEECH, block_s=0.1, realtime=True)
    got = []
    for b in src.blocks(stop):
        got.append(b)
        stop.set()
    assert len(got) == 1 and src.live


@pytest.mark.parametrize("name, fragment", [
    ("empty.wav", "empty"),
    ("truncated.wav", "truncated"),
    ("header_only.wav", "cannot read audio file"),
    ("not_audio.wav", "cannot read audio file"),
    ("does_not_exist.wav", "not found"),
])
def test_broken_files_are_one_clear_error(name: str, fragment: str) -> None:
    with pytest.raises(AudioError, match=fragment) as e:
        FileSource(FIXTURES / name)
    assert "\n" not in str(e.value)


def test_file_without_samples(tmp_path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        FileSource(path)


# -- microphone, with a fake sounddevice module ---------------------------------------------------------

class FakeStream:
    def __init__(self, sd: FakeSD, callback, finished_callback, blocksize: int, channels: int, **_) -> None:
        self.sd, self.callback, self.finished = sd, callback, finished_callback
        self.blocksize, self.channels = blocksize, channels
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        status = SimpleNamespace(input_overflow=False)
        while not self._stop.is_set():
            if self.sd.unplugged:
                self.finished()  # PortAudio ends a stream whose device vanished
                return
            block = np.full((self.blocksize, self.channels), 0.1, np.float32)
            self.callback(block, self.blocksize, None, status)
            time.sleep(0.005)

    def abort(self, ignore_errors: bool = True) -> None:
        self._stop.set()

    def close(self, ignore_errors: bool = True) -> None:
        self._stop.set()


class FakeSD:
    """Just enough of the sounddevice API: one stereo-only 48 kHz USB mic that can be unplugged."""

    class PortAudioError(Exception):
        pass

    def __init__(self) -> None:
        self.default = SimpleNamespace(device=[1, -1])
        self.unplugged = False
        self.rescans = 0
        self.opened: list[FakeStream] = []

    def _devices(self) -> list[dict]:
        devs = [{"name": "HDA Intel PCH: ALC (hw:0,0)", "max_input_channels": 0,
                 "default_samplerate": 44100.0}]
        if not self.unplugged:
            devs.append({"name": "USB Audio Device: Mic (hw:1,0)", "max_input_channels": 2,
                         "default_samplerate": 48000.0})
        return devs

    def query_devices(self, device=None, kind=None):
        devs = self._devices()
        if device is None:
            return devs
        if device >= len(devs):
            raise self.PortAudioError(f"Error querying device {device}")
        return devs[device]

    def check_input_settings(self, device, channels, samplerate, dtype) -> None:
        if device >= len(self._devices()) or channels != 2 or samplerate != 48000:
            raise self.PortAudioError("Invalid number of channels [PaErrorCode -9998]")

    def InputStream(self, device, samplerate, channels, dtype, blocksize, callback, finished_callback):  # noqa: N802
        if device >= len(self._devices()):
            raise self.PortAudioError("Device unavailable")
        stream = FakeStream(self, callback, finished_callback, blocksize, channels)
        self.opened.append(stream)
        return stream

    def _terminate(self) -> None:
        self.rescans += 1

    def _initialize(self) -> None:
        pass


def test_device_by_name_index_default_and_missing() -> None:
    sd = FakeSD()
    assert resolve_device(None, sd) == 1
    assert resolve_device("usb audio", sd) == 1
    assert resolve_device("1", sd) == 1
    with pytest.raises(AudioError, match="not found"):
        resolve_device("webcam", sd)
    with pytest.raises(AudioError, match="not found"):
        resolve_device(7, sd)
    sd.unplugged = True
    with pytest.raises(AudioError, match="no audio input device"):
        resolve_device(None, sd)


def test_stereo_only_mic_opens_at_its_native_format() -> None:
    mic = MicSource(AudioSettings(device="USB"), sd=FakeSD())
    assert (mic.rate, mic.channels) == (48000, 2)
    stop = threading.Event()
    block = next(b for b in mic.blocks(stop) if b is not None)
    assert block.shape == (4800, 2)
    mic.close()


def test_unsupported_rate_is_a_clear_error() -> None:
    with pytest.raises(AudioError, match="does not support 44100 Hz"):
        MicSource(AudioSettings(device="USB", sample_rate=44100), sd=FakeSD())


def test_full_queue_counts_overruns_without_blocking() -> None:
    sd = FakeSD()
    mic = MicSource(AudioSettings(device="USB", queue_blocks=3), sd=sd)
    deadline = time.monotonic() + 5
    while mic.overruns == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mic.overruns > 0 and mic._queue.qsize() == 3
    mic.close()


def test_mic_unplugged_and_replugged_resumes_without_restart() -> None:
    sd = FakeSD()
    mic = MicSource(AudioSettings(device="USB", reopen_min_s=0.05, reopen_max_s=0.2), sd=sd)
    stop = threading.Event()
    got: list[float] = []

    ticks: list[float] = []

    def consume() -> None:
        for block in mic.blocks(stop):
            (ticks if block is None else got).append(time.monotonic())

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    sd.unplugged = True
    time.sleep(0.5)  # several failed reopen attempts with backoff
    assert mic.reopens == 0 and sd.rescans >= 2
    assert len(ticks) >= 2  # the reader hears "alive" while the mic is away (watchdog pets)
    n_before = len(got)
    sd.unplugged = False
    while mic.reopens == 0 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    while len(got) < n_before + 5 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    stop.set()
    t.join(timeout=2)
    mic.close()
    assert mic.reopens == 1
    assert len(got) >= n_before + 5
    assert len(sd.opened) >= 2
