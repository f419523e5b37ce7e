"""The `edge-ser` command: listen, classify, devices, models, bench, report.

Every UserError (bad config, file, device, model, broker) ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from . import __version__, notify
from .config import load_settings
from .errors import AudioError, UserError
from .labels import NEUTRAL
from .message import encode, silence_probs
from .settings import PASSWORD_ENV, Settings

log = logging.getLogger("edge_ser")


def setup_logging(level: str) -> None:
    """Logs go to stderr (the journal under systemd); stdout is reserved for results."""
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger().setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="edge-ser")
def cli() -> None:
    """Speech emotion recognition: microphone or file -> 2 s windows -> emotion -> MQTT / JSON lines."""


# -- listen -----------------------------------------------------------------------------------------

@cli.command()
@click.option("--config", "config_path", metavar="FILE",
              help="YAML config (see systemd/config.example.yaml).")
@click.option("--device", metavar="NAME|INDEX", help="Input device, as `edge-ser devices` lists it.")
@click.option("--mqtt", "mqtt_addr", metavar="HOST[:PORT]", help="Publish to this MQTT broker.")
@click.option("--stdout", "to_stdout", is_flag=True, default=None,
              help="Also print results as JSON lines (the default when no broker is set).")
@click.option("--model", "model_id", metavar="ID", help="Model id from `edge-ser models`.")
@click.option("--input", "input_path", metavar="FILE", help="Stream an audio file instead of a microphone.")
@click.option("--realtime", is_flag=True, default=None, help="With --input: pace the file like a microphone.")
@click.option("--site", metavar="NAME", help="Site name (MQTT topic and message field).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level (logs go to stderr).")
@click.option("--http", "http_addr", metavar="[HOST:]PORT",
              help="Serve the live page at / and the result stream at /events (a bare port: 127.0.0.1 only).")
def listen(config_path: str | None, device: str | None, mqtt_addr: str | None, to_stdout: bool | None,
           model_id: str | None, input_path: str | None, realtime: bool | None, site: str | None,
           log_level: str | None, http_addr: str | None) -> None:
    """Classify live audio and publish one JSON message per 2 s window.

    Stops cleanly on SIGINT/SIGTERM (publishing `offline` over MQTT); SIGHUP re-reads --config.
    """
    overrides = listen_overrides(device=device, mqtt_addr=mqtt_addr, to_stdout=to_stdout, model_id=model_id,
                                 input_path=input_path, realtime=realtime, site=site, log_level=log_level,
                                 http_addr=http_addr)
    settings = load_settings(config_path, overrides)
    if realtime and not settings.audio.input:
        raise UserError("--realtime only applies to --input FILE")
    setup_logging(settings.output.log_level)
    http_token = None
    if settings.http.port is not None:
        from .publish.http import check_http

        http_token = check_http(settings.http)  # an open port is refused before anything starts

    from .gate import Gate
    from .model import load_model
    from .pipeline import Pipeline

    stopping: list[int] = []
    _install_stop_handlers(lambda signum: stopping.append(signum))
    if hasattr(signal, "SIGHUP"):  # the config is being read right now anyway
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    model = load_model(settings.model)
    log.info("model %s loaded (labels: %s)", model.id, ", ".join(model.labels))
    Gate(settings.gate, model)  # a VAD that cannot run is refused before a device or broker is touched
    source = open_source(settings)
    publishers: list[Any] = []
    pipeline = None
    try:
        publishers = make_publishers(settings, http_token)
        pipeline = Pipeline(
            settings, model, publishers,
            reloader=(lambda: load_settings(config_path, overrides)) if config_path else None,
            model_loader=load_model,
        )
        if stopping:
            pipeline.stop()
        if len(publishers) == 1 and hasattr(publishers[0], "on_closed"):
            publishers[0].on_closed = pipeline.stop  # `edge-ser listen | head`: nobody left to tell
        wire_live_page(publishers, pipeline)

        def on_stop(signum: int) -> None:
            log.info("%s: stopping", signal.Signals(signum).name)
            notify.stopping()
            pipeline.stop()

        _install_stop_handlers(on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: pipeline.request_reload())
        pipeline.run(source)
        for warning in getattr(source, "warnings", []):
            log.warning("%s: %s", settings.audio.input, warning)
    finally:
        source.close()
        # Once per model: the pipeline closes each model a reload replaced, this the one in use.
        close_model(pipeline.model if pipeline is not None else model)
        for publisher in publishers:
            try:
                publisher.close()
            except Exception:  # noqa: BLE001 - closing must reach every publisher
                log.exception("closing %s failed", type(publisher).__name__)


def close_model(model: Any) -> None:
    """Save what the model keeps across runs (adaptation statistics); once, at exit."""
    try:
        model.close()
    except Exception:  # noqa: BLE001 - exiting must go on (the state is saved periodically as well)
        log.exception("closing model %s failed", model.id)


def listen_overrides(**flags: Any) -> dict[str, Any]:
    """Dotted config overrides from the listen flags that were given."""
    out: dict[str, Any] = {}
    if flags.get("device") is not None:
        d = flags["device"]
        # Up to six decimal digits is an index (range-checked in the config); longer is a name.
        out["audio.device"] = int(d) if d.strip().isdecimal() and len(d.strip()) <= 6 else d
    if flags.get("mqtt_addr"):
        out["mqtt.host"], port = parse_host_port(flags["mqtt_addr"])
        if port is not None:
            out["mqtt.port"] = port
    if flags.get("to_stdout"):
        out["output.stdout"] = True
    if flags.get("model_id"):
        out["model.id"] = flags["model_id"]
    if flags.get("input_path"):
        out["audio.input"] = flags["input_path"]
    if flags.get("realtime"):
        out["audio.realtime"] = True
    if flags.get("site"):
        out["site"] = flags["site"]
    if flags.get("log_level"):
        out["output.log_level"] = flags["log_level"].upper()
    if flags.get("http_addr"):
        from .publish.http import parse_http_addr

        out["http.host"], out["http.port"] = parse_http_addr(flags["http_addr"])
    return out


def parse_host_port(addr: str) -> tuple[str, int | None]:
    """HOST, HOST:PORT, [IPv6] or [IPv6]:PORT."""
    addr = addr.strip()
    if "@" in addr:
        # USER:PASSWORD@HOST: never echo it (the command line is visible in ps and in logs anyway)
        raise UserError("--mqtt takes HOST[:PORT] without credentials; set mqtt.username in the config "
                        f"and the password in ${PASSWORD_ENV} or mqtt.password_file")
    host, port = addr, None
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise UserError(f"--mqtt {addr!r}: missing ] after the IPv6 address")
        host, rest = addr[1:end], addr[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UserError(f"--mqtt {addr!r}: expected HOST[:PORT]")
            port = rest[1:]
    elif addr.count(":") == 1:
        host, port = addr.split(":")
    if not host:
        raise UserError(f"--mqtt {addr!r}: empty host name")
    if port is None:
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(f"--mqtt {addr!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _install_stop_handlers(handler: Any) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: handler(signum))


def open_source(settings: Settings) -> Any:
    """The file source when audio.input is set, else the microphone (sounddevice imported only then)."""
    audio = settings.audio
    if audio.input:
        from .audio.source_file import FileSource

        return FileSource(audio.input, block_s=audio.block_s, realtime=audio.realtime)
    from .audio.source_mic import MicSource

    return MicSource(audio)


def make_publishers(settings: Settings, http_token: str | None = None) -> list[Any]:
    """MQTT when a broker is set; stdout when asked, or when there is no broker; the live page when
    http.port is set (`http_token` from publish.http.check_http)."""
    publishers: list[Any] = []
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


def wire_live_page(publishers: list[Any], pipeline: Any) -> None:
    """Give the live page the pipeline's counters and the broker state (its stats have no such flag)."""
    from .publish.http import HttpPublisher

    pages = [p for p in publishers if isinstance(p, HttpPublisher)]
    if not pages:
        return
    mqtt = next((p for p in publishers if hasattr(p, "connected")), None)

    def counters() -> dict[str, Any]:
        stats = pipeline.stats()
        stats["broker"] = "none" if mqtt is None else ("connected" if mqtt.connected else "disconnected")
        return stats

    for page in pages:
        page.stats_source = counters


# -- classify ---------------------------------------------------------------------------------------

class _Collector:
    """A publisher that keeps the messages of one file."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def publish_stats(self, stats: dict[str, Any]) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE_OR_DIR...")
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines: one per window, then one per file (\"path\", \"label\", \"probs\").")
@click.option("--config", "config_path", metavar="FILE", help="YAML config (model, window, gate).")
@click.option("--model", "model_id", metavar="ID", help="Model id from `edge-ser models`.")
def classify(paths: tuple[str, ...], as_json: bool, config_path: str | None, model_id: str | None) -> None:
    """Classify audio files (wav, flac, ogg/opus, mp3; any rate and channel count).

    Folders are searched recursively. The file label is the mean of the window probabilities over
    non-silent windows (`neutral` when every window is silence).
    """
    overrides: dict[str, Any] = {"model.id": model_id} if model_id else {}
    settings = load_settings(config_path, overrides)
    # Every window gets a line, and the file mean is the smoothing: no neutral_once, no smoothing.
    settings = replace(settings, gate=replace(settings.gate, neutral_once=False),
                       smoothing=replace(settings.smoothing, method="none"),
                       output=replace(settings.output, stats_interval_s=0.0))
    setup_logging("WARNING" if settings.output.log_level in ("DEBUG", "INFO") else settings.output.log_level)
    files = expand_paths(paths)

    from .audio.source_file import FileSource
    from .model import load_model
    from .pipeline import Pipeline

    model = load_model(settings.model)
    failed = 0
    try:
        for path in files:
            try:
                source = FileSource(path, block_s=1.0)
                collector = _Collector()
                Pipeline(settings, model, [collector]).run(source)
            except AudioError as e:
                click.echo(f"edge-ser: error: {e}", err=True)
                failed += 1
                continue
            summary = file_summary(path, collector.messages, model)
            summary.update(source.damage())
            if source.warnings:
                summary["warning"] = "; ".join(source.warnings)
            try:
                lines = [encode({"path": path, **m}) for m in collector.messages] + [encode(summary)]
            except ValueError as e:  # a non-finite number slipped through: print nothing rather than non-JSON
                click.echo(f"edge-ser: error: {path}: a result is not valid JSON ({e})", err=True)
                failed += 1
                continue
            for warning in source.warnings:
                click.echo(f"edge-ser: warning: {path}: {warning}", err=True)
            if as_json:
                for line in lines:
                    click.echo(line)
            else:
                click.echo(f"{path}\t{summary['label']}\t{summary['confidence']:.2f}\t"
                           f"{summary['speech_windows']}/{summary['windows']} speech windows")
    finally:
        close_model(model)
    if failed:
        sys.exit(2)


def expand_paths(paths: tuple[str, ...]) -> list[str]:
    """Files as given, plus the audio files under each folder (sorted); a missing path is an error."""
    from .audio.source_file import AUDIO_SUFFIXES

    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*")
                           if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise AudioError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {p}")
            out += found
        elif path.exists():
            out.append(p)
        else:
            raise AudioError(f"no such file or folder: {p}")
    return out


def file_summary(path: str, messages: list[dict[str, Any]], model: Any) -> dict[str, Any]:
    """The per-file line: mean window probabilities over non-silent windows."""
    speech = [m["probs"] for m in messages if not m["gated"]]
    if speech:
        probs = {k: round(sum(p[k] for p in speech) / len(speech), 4) for k in speech[0]}
        label = max(probs, key=probs.__getitem__)
    else:
        probs, label = silence_probs(model.labels), NEUTRAL
    return {"path": path, "label": label, "confidence": probs[label], "probs": probs,
            "windows": len(messages), "speech_windows": len(speech), "model": model.id}


# -- devices, models --------------------------------------------------------------------------------

@cli.command()
def devices() -> None:
    """List audio input devices: index, name, default rate, channels (* = system default)."""
    from .audio.source_mic import input_devices

    rows = input_devices()
    if not rows:
        raise AudioError("no audio input devices found")
    for d in rows:
        mark = "*" if d["default"] else " "
        click.echo(f"{mark}{d['index']:>3}  {d['name']}  ({d['default_rate']} Hz, {d['channels']} ch)")


@cli.command()
@click.option("--config", "config_path", metavar="FILE",
              help="YAML config (model.manifest, model.search_path).")
def models(config_path: str | None) -> None:
    """List the manifest's models, where each file was found and whether its sha256 matches."""
    settings = load_settings(config_path)
    click.echo(describe_models(settings.model.manifest, settings.model.search_path))


def describe_models(manifest: str | Path | None = None, extra: Sequence[str | Path] = ()) -> str:
    """The text of `edge-ser models`: each model, its files, where found, sha256 status."""
    import os

    from .manifest import load_manifest, model_status, search_path

    m = load_manifest(manifest)
    lines = [f"manifest: {m.path}",
             "search path: " + os.pathsep.join(str(d) for d in search_path(extra, m))]
    for row in model_status(m, extra):
        mark = " (default)" if row["default"] else ""
        lines.append("")
        lines.append(f"{row['id']}{mark}: {row['description']}")
        lines.append(f"  labels: {', '.join(row['labels'])}; quantization: {row['quantization']}")
        if row["license"]:
            lines.append(f"  license: {row['license']}")
        for f in row["files"]:
            where = f["path"] or (f"not found; download: {f['url']}" if f["url"] else "not found")
            status = {"ok": "sha256 ok", "mismatch": "SHA256 MISMATCH (refused)", "missing": "MISSING"}
            lines.append(f"  {f['role']}: {f['file']} -> {where} [{status[f['status']]}]")
    return "\n".join(lines)


@cli.command()
@click.option("--model", "model_ids", metavar="ID", multiple=True,
              help="Model id from `edge-ser models` (repeatable); default: the configured/default model.")
@click.option("--seconds", type=float, default=60.0, show_default=True,
              help="Seconds of synthetic speech streamed per model and thread count (one window per hop).")
@click.option("--threads", type=int, multiple=True, help="Inference threads (repeatable); default: 1 and 2.")
@click.option("--config", "config_path", metavar="FILE", help="YAML config (model, window, smoothing).")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line instead of a table.")
def bench(model_ids: tuple[str, ...], seconds: float, threads: tuple[int, ...], config_path: str | None,
          as_json: bool) -> None:
    """Time models through the listen pipeline on synthetic speech: latency p50/p95/p99, RTF, CPU, RSS."""
    from .benchmark import cli_bench

    command = " ".join(["edge-ser", *sys.argv[1:]])
    cli_bench(model_ids, seconds, threads, config_path, as_json, command=command)


@cli.command()
@click.argument("results", metavar="RESULTS.jsonl")
@click.option("--out", "out_path", required=True, metavar="FILE.html|FILE.png",
              help="Self-contained HTML (works offline), or PNG when matplotlib is installed.")
def report(results: str, out_path: str) -> None:
    """Timeline and label histogram of a recorded result log.

    RESULTS.jsonl: `edge-ser listen` stdout, `classify --json` output or `mosquitto_sub -v` lines.
    """
    from .report import write_report

    n = write_report(results, out_path)
    click.echo(f"{out_path}: {n} windows")


# -- entry point ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors -> one line on stderr, exit 2; no tracebacks for them."""
    try:
        code = cli.main(args=argv, prog_name="edge-ser", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("edge-ser: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        # Usage errors too are one line (click's own form is three, and repeats the bad value in full).
        message = " ".join(e.format_message().split())
        if len(message) > 200:
            message = message[:197] + "..."
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if isinstance(e, click.UsageError) and ctx else ""
        click.echo(f"edge-ser: error: {message}{hint}", err=True)
        sys.exit(e.exit_code)
    except UserError as e:
        click.echo(f"edge-ser: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
