"""`edge-ser listen`: open the model, gate, source and publishers once, run the pipeline, close each once.

Order matters for errors: everything that can be refused from the config alone (the live page's
address, the model, a VAD that cannot run) is checked before a device or broker is touched.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import notify
from .audio.base import Source
from .classifier import Classifier
from .config import load_settings
from .publish.base import Publisher
from .publish.fanout import Fanout
from .settings import Settings

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger("edge_ser")


def run_listen(settings: Settings, config_path: str | None, overrides: dict[str, Any]) -> None:
    """Classify live audio until the source ends or SIGINT/SIGTERM; SIGHUP re-reads `config_path`."""
    http_token = None
    if settings.http.port is not None:
        from .publish.http import check_http

        http_token = check_http(settings.http)  # an open port is refused before anything starts

    from .gate import Gate
    from .model import load_model
    from .pipeline import Pipeline

    stopping: list[int] = []
    install_stop_handlers(lambda signum: stopping.append(signum))
    if hasattr(signal, "SIGHUP"):  # the config is being read right now anyway
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    model = load_model(settings.model)
    log.info("model %s loaded (labels: %s)", model.id, ", ".join(model.labels))
    gate = Gate(settings.gate, model)  # a VAD that cannot run is refused before a device or broker is touched
    source = open_source(settings)
    sinks = Fanout([])
    pipeline = None
    try:
        sinks = Fanout(make_publishers(settings, http_token))
        pipeline = Pipeline(
            settings, model, sinks.publishers, gate=gate,
            reloader=(lambda: load_settings(config_path, overrides)) if config_path else None,
            model_loader=load_model,
        )
        _wire(pipeline, stopping)
        pipeline.run(source)
        for warning in source.warnings:
            log.warning("%s: %s", settings.audio.input, warning)
    finally:
        source.close()
        # Once per model: the pipeline closes each model a reload replaced, this the one in use.
        close_model(pipeline.model if pipeline is not None else model)
        sinks.close()


def _wire(pipeline: Pipeline, stopping: list[int]) -> None:
    """Signals, a stdout reader that goes away, and the live page's counters, all to `pipeline`."""
    from .publish.stdout import StdoutPublisher

    if stopping:
        pipeline.stop()
    publishers = pipeline.publishers
    if len(publishers) == 1 and isinstance(publishers[0], StdoutPublisher):
        publishers[0].on_closed = pipeline.stop  # `edge-ser listen | head`: nobody left to tell
    wire_live_page(publishers, pipeline)

    def on_stop(signum: int) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        notify.stopping()
        pipeline.stop()

    install_stop_handlers(on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: pipeline.request_reload())


def close_model(model: Classifier) -> None:
    """Save what the model keeps across runs (adaptation statistics); once, at exit."""
    try:
        model.close()
    except Exception:  # noqa: BLE001 - exiting must go on (the state is saved periodically as well)
        log.exception("closing model %s failed", model.id)


def install_stop_handlers(handler: Callable[[int], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: handler(signum))


def open_source(settings: Settings) -> Source:
    """The file source when audio.input is set, else the microphone (sounddevice imported only then)."""
    audio = settings.audio
    if audio.input:
        from .audio.source_file import FileSource

        return FileSource(audio.input, block_s=audio.block_s, realtime=audio.realtime)
    from .audio.source_mic import MicSource

    return MicSource(audio)


def make_publishers(settings: Settings, http_token: str | None = None) -> list[Publisher]:
    """MQTT when a broker is set; stdout when asked, or when there is no broker; the live page when
    http.port is set (`http_token` from publish.http.check_http)."""
    publishers: list[Publisher] = []
    if settings.mqtt.host:
        from .publish.mqtt import MqttPublisher

        publishers.append(MqttPublisher(settings.mqtt, settings.site))
    want_stdout = settings.output.stdout
    if want_stdout or (want_stdout is None and not settings.mqtt.host):
        from .publish.stdout import StdoutPublisher

        publishers.append(StdoutPublisher())
    if settings.http.port is not None:
        from .publish.http import HttpPublisher

        publishers.append(HttpPublisher(settings, http_token))
    return publishers


def wire_live_page(publishers: list[Publisher], pipeline: Pipeline) -> None:
    """Give the live page the pipeline's counters and the broker state (its stats have no such flag)."""
    from .publish.http import HttpPublisher
    from .publish.mqtt import MqttPublisher

    pages = [p for p in publishers if isinstance(p, HttpPublisher)]
    if not pages:
        return
    mqtt = next((p for p in publishers if isinstance(p, MqttPublisher)), None)

    def counters() -> dict[str, Any]:
        stats = pipeline.stats()
        stats["broker"] = "none" if mqtt is None else ("connected" if mqtt.connected else "disconnected")
        return stats

    for page in pages:
        page.stats_source = counters
