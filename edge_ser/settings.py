"""Typed settings of the daemon: one frozen dataclass per concern, loaded from YAML by config.py.

Each field has a one-line docstring under it; `systemd/config.example.yaml` documents the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audio import to_samples

PASSWORD_ENV = "EDGE_SER_MQTT_PASSWORD"
"""Environment variable holding the broker password (wins over mqtt.password_file)."""

MAX_BUFFERED_AUDIO_S = 60.0
"""Capture queue limit, audio.queue_blocks x audio.block_s (48 kHz stereo: 23 MB at most)."""

MQTT_WILDCARDS = "+#\0"
"""Characters no topic we publish to may hold (+ and # are subscription wildcards; NUL is invalid)."""

FOREVER_S = 10**9
"""Upper bound of intervals where 0 means never (about 31 years): finite, so NaN/inf are refused."""


def bounded(default: Any, lo: float, hi: float) -> Any:
    """A numeric field whose value (when not null) must lie in [lo, hi]; config.py checks it.

    Every number that sizes memory, threads or time gets a finite range, so NaN and inf never pass.
    """
    return field(default=default, metadata={"range": (lo, hi)})


def setting_range(cls: type, name: str) -> tuple[float, float]:
    """The inclusive range `bounded` declared for field `name` of dataclass `cls`."""
    return cls.__dataclass_fields__[name].metadata["range"]


def one_of(*choices: str, default: str | None = None) -> Any:
    """A string field that must be one of `choices` (default: the first)."""
    return field(default=default or choices[0], metadata={"choices": choices})


def without(default: str | None, forbidden: str) -> Any:
    """A string field that must not contain any character of `forbidden` (MQTT topic wildcards)."""
    return field(default=default, metadata={"forbid": forbidden})


@dataclass(frozen=True)
class AudioSettings:
    """Where audio comes from."""

    device: str | int | None = bounded(None, 0, 1023)
    """Input device: index or (part of) its name as `edge-ser devices` lists it; null = system default."""

    sample_rate: int | None = bounded(None, 1, 768000)
    """Capture rate in Hz; null = the device's native default rate (resampled to 16 kHz after)."""

    channels: int | None = bounded(None, 1, 1024)
    """Capture channels; null = 1 if the device can, else its max (mixed down to mono after)."""

    block_s: float = bounded(0.1, 0.01, 1.0)
    """Seconds of audio per capture callback block."""

    queue_blocks: int = bounded(200, 1, 1000)
    """Capture blocks buffered between the audio callback and the pipeline; overruns are counted."""

    input: str | None = None
    """Audio file to stream instead of a microphone (wav, flac, ogg/opus)."""

    realtime: bool = False
    """With `input`: pace the file like a microphone instead of reading it as fast as possible."""

    reopen_min_s: float = bounded(1.0, 0.1, 3600)
    """First retry delay after the device fails or disappears (doubles up to reopen_max_s)."""

    reopen_max_s: float = bounded(30.0, 0.1, 3600)
    """Longest retry delay for reopening a lost device."""

    record_dir: str | None = None
    """If set, speech windows are written here as WAV; null = audio never touches the disk."""

    def problem(self) -> str | None:
        """What breaks a limit on several fields together (config.py reports it), else None."""
        if self.queue_blocks * self.block_s > MAX_BUFFERED_AUDIO_S:
            return (f"audio.queue_blocks x audio.block_s must be at most {MAX_BUFFERED_AUDIO_S:g} s "
                    f"of audio, got {self.queue_blocks} x {self.block_s:g} s")
        return None


@dataclass(frozen=True)
class WindowSettings:
    """How the 16 kHz stream is cut into windows."""

    window_s: float = bounded(2.0, 0.1, 30)
    """Window length in seconds (the models are trained on 2 s)."""

    hop_s: float = bounded(1.0, 0.1, 30)
    """Seconds between window starts."""

    max_pending: int = bounded(8, 1, 64)
    """Windows waiting for inference; when full the oldest is dropped and counted."""

    @property
    def window_samples(self) -> int:
        """window_s in samples at MODEL_RATE."""
        return to_samples(self.window_s)

    @property
    def hop_samples(self) -> int:
        """hop_s in samples at MODEL_RATE."""
        return to_samples(self.hop_s)


@dataclass(frozen=True)
class GateSettings:
    """Which windows count as silence (published as `neutral`, no inference)."""

    rms_threshold: float = bounded(0.0003, 0.0, 1.0)
    """Windows with RMS below this (-70 dBFS) are silence; the paper's 0.01 silenced far speech."""

    floor_margin_db: float = bounded(3.0, 0.0, 30.0)
    """Windows less than this many dB louder than the room's noise floor are silence; 0 = off."""

    floor_s: float = bounded(30.0, 2.0, 600.0)
    """Seconds of past windows whose quietest frames make the noise floor."""

    vad: str = one_of("none", "yamnet", "silero")
    """Extra speech check after RMS: none, yamnet (AudioSet Speech score) or silero."""

    vad_threshold: float = bounded(0.5, 0.0, 1.0)
    """Speech probability below which a window is gated by the VAD."""

    background_threshold: float = bounded(0.4, 0.0, 1.0)
    """Windows whose foreground score is below this are background talk or noise (`neutral`), for
    models with a foreground head (other models: no effect); 0 = off."""

    neutral_once: bool = True
    """Publish `neutral` once per silence stretch instead of for every silent window."""


@dataclass(frozen=True)
class SmoothingSettings:
    """Optional smoothing of probabilities over consecutive speech windows."""

    method: str = one_of("none", "ema", "majority")
    """none, ema (exponential moving average) or majority (vote over the last `n` labels)."""

    n: int = bounded(3, 1, 100)
    """Windows in the majority vote."""

    alpha: float = bounded(0.5, 0.0, 1.0)
    """EMA weight of the newest window (1.0 = no smoothing)."""


@dataclass(frozen=True)
class ModelSettings:
    """Which model classifies speech windows."""

    id: str | None = None
    """Model id from the manifest (`edge-ser models`); null = the manifest's default."""

    manifest: str | None = None
    """Path of a manifest.yaml; null = the one shipped in the package's models/."""

    search_path: tuple[str, ...] = ()
    """Folders searched first for model files (then $EDGE_SER_MODELS, user dir, models/, shared/weights)."""

    threads: int = bounded(1, 1, 64)
    """Inference threads for TFLite / onnxruntime."""

    adapt: bool = False
    """Standardise features with running statistics of this device's own audio (room/mic adaptation)."""

    adapt_state: str | None = None
    """File that keeps the adaptation statistics across restarts (no audio is stored)."""

    download: bool = False
    """Download a model file found nowhere locally from its manifest URL (checked by sha256)."""


@dataclass(frozen=True)
class MqttSettings:
    """MQTT publishing; disabled while `host` is null."""

    host: str | None = None
    """Broker host name or address; null = no MQTT."""

    port: int = bounded(1883, 1, 65535)
    """Broker port (8883 is usual with TLS)."""

    topic_prefix: str | None = without(None, MQTT_WILDCARDS)
    """Topic prefix; null = edge_ser/<site>. Must not contain + or #."""

    client_id: str | None = None
    """MQTT client id; null = edge-ser-<site>-<pid>."""

    qos: int = bounded(1, 0, 2)
    """QoS of result messages (0, 1 or 2)."""

    keepalive_s: int = bounded(30, 1, 65535)
    """Keepalive interval; the broker publishes the Last Will after 1.5x this without contact."""

    username: str | None = None
    """User name (not secret). The password comes from EDGE_SER_MQTT_PASSWORD or password_file."""

    password_file: str | None = None
    """File holding the broker password (first line); never put secrets on the command line."""

    tls: bool = False
    """Connect with TLS; server certificates are verified unless tls_insecure."""

    ca_file: str | None = None
    """CA bundle that signed the broker certificate; null = system CAs."""

    cert_file: str | None = None
    """Client certificate for mutual TLS."""

    key_file: str | None = None
    """Private key of cert_file."""

    tls_insecure: bool = False
    """Skip hostname verification (testing only)."""

    queue_size: int = bounded(1000, 1, 100000)
    """Results kept while the broker is away; when full the oldest is dropped and counted."""

    reconnect_min_s: float = bounded(1.0, 0.1, 3600)
    """First reconnect delay (doubles up to reconnect_max_s)."""

    reconnect_max_s: float = bounded(60.0, 0.1, 3600)
    """Longest reconnect delay."""

    ha_discovery: bool = False
    """Publish a retained Home Assistant discovery config for an emotion sensor."""

    discovery_prefix: str = "homeassistant"
    """Home Assistant discovery prefix."""

    expire_after_s: int = bounded(0, 0, FOREVER_S)
    """Home Assistant marks the sensor unavailable after this many seconds without a result; 0 = never."""


@dataclass(frozen=True)
class HttpSettings:
    """The live page (/) and its event stream (/events) served by the daemon; off while `port` is null."""

    port: int | None = bounded(None, 1, 65535)
    """TCP port of the live page; null = no HTTP server (the default: no listening socket)."""

    host: str = "127.0.0.1"
    """Address to bind; anything beyond loopback needs a token (EDGE_SER_HTTP_TOKEN or token_file)."""

    token_file: str | None = None
    """File holding the access token (first line, 16+ URL-safe characters); EDGE_SER_HTTP_TOKEN wins."""

    max_clients: int = bounded(4, 1, 16)
    """Browsers streaming /events at once (1-16); one more is answered 503."""

    queue_size: int = bounded(64, 8, 4096)
    """Events buffered per browser (8-4096); a slow browser loses its oldest events, counted."""

    history: int = bounded(300, 0, 3600)
    """Windows replayed to a browser when it connects, so its timeline starts filled (0-3600)."""


@dataclass(frozen=True)
class OutputSettings:
    """Local output and bookkeeping."""

    stdout: bool | None = None
    """Print results as JSON lines; null = only when MQTT is off."""

    stats_interval_s: float = bounded(60.0, 0, FOREVER_S)
    """Seconds between stats messages (windows, dropped, published); 0 = off."""

    log_level: str = one_of("DEBUG", "INFO", "WARNING", "ERROR", default="INFO")
    """DEBUG, INFO, WARNING or ERROR (logs go to stderr / the journal)."""


@dataclass(frozen=True)
class Settings:
    """Everything `edge-ser listen` needs."""

    site: str = without("default", MQTT_WILDCARDS + "/")
    """Name of this device's place (topic and message field), e.g. kitchen."""

    audio: AudioSettings = field(default_factory=AudioSettings)
    """Audio source."""

    window: WindowSettings = field(default_factory=WindowSettings)
    """Windowing."""

    gate: GateSettings = field(default_factory=GateSettings)
    """Silence gate."""

    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    """Smoothing."""

    model: ModelSettings = field(default_factory=ModelSettings)
    """Model."""

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    """MQTT."""

    output: OutputSettings = field(default_factory=OutputSettings)
    """Output."""

    http: HttpSettings = field(default_factory=HttpSettings)
    """Live page."""
