"""The `edge-ser` command: listen, classify, devices, models, bench, report.

Every UserError (bad config, file, device, model, broker) ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import load_settings
from .errors import AudioError, UserError
from .settings import PASSWORD_ENV

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
    from .listen import run_listen

    run_listen(settings, config_path, overrides)


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


# -- classify ---------------------------------------------------------------------------------------

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
    setup_logging("WARNING" if settings.output.log_level in ("DEBUG", "INFO") else settings.output.log_level)
    from .classify import classify_files

    classify_files(settings, paths, as_json)


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
