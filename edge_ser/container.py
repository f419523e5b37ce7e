"""Container entry point: runs `edge-ser` as systemd would, and answers Docker's HEALTHCHECK.

    python -m edge_ser.container run -- listen --config /config/config.yaml
    python -m edge_ser.container health

The daemon already reports its health to its supervisor through the systemd notify protocol
(edge_ser/notify.py): READY=1 once audio flows, WATCHDOG=1 about every second while it keeps flowing
(and while a lost microphone is being reopened), STATUS= with its counters. Inside a container there
is no systemd, so `run` plays its part: it binds the NOTIFY_SOCKET datagram socket, starts the daemon
as its child with that socket, forwards signals to it, and writes what it heard to a small JSON state
file. `health` reads that file, so the check needs nothing beyond the package (no curl, no broker,
no open port) and means the same as the service's WatchdogSec: unhealthy when no audio has flowed
since the start or no watchdog ping came for `--max-age` seconds. Like WatchdogSec=, a ping overdue by
`--watchdog-s` gets the daemon aborted, so the container exits and its restart policy starts it anew.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

STATE_ENV = "EDGE_SER_HEALTH_FILE"
DEFAULT_STATE = "/tmp/edge-ser/health.json"
WATCHDOG_S = 30.0
"""Same as WatchdogSec= of systemd/edge-ser.service."""

KILL_AFTER_S = 10.0
"""After the abort (or a forwarded SIGTERM) the child gets this long before SIGKILL (TimeoutStopSec=)."""

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _fail(message: str) -> None:
    click.echo(f"edge-ser: error: {message}", err=True)
    sys.exit(2)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically, so `health` never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _parse(datagram: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in datagram.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run edge-ser under a notify-socket supervisor, or check the health it recorded."""


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--state", "state_path", envvar=STATE_ENV, default=DEFAULT_STATE, show_default=True,
              metavar="FILE", help=f"Health state file (also ${STATE_ENV}).")
@click.option("--watchdog-s", type=click.FloatRange(min=0), default=WATCHDOG_S, show_default=True,
              envvar="EDGE_SER_WATCHDOG_S",
              help="Abort the daemon when its watchdog ping is this late after READY; 0 = never "
                   "(also $EDGE_SER_WATCHDOG_S).")
@click.option("--kill-after-s", type=click.FloatRange(min=0), default=KILL_AFTER_S, show_default=True,
              help="SIGKILL the daemon this long after the abort or a forwarded SIGTERM/SIGINT.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(state_path: str, watchdog_s: float, kill_after_s: float, args: tuple[str, ...]) -> None:
    """Start `edge-ser ARGS...` with a notify socket; exit with its exit code."""
    if not args:
        _fail("run needs the edge-ser command to start, e.g. `run -- listen --config FILE`")
    state_file = Path(state_path)
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        sock_path = state_file.with_name(state_file.name + ".sock")
        sock_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
    except OSError as e:
        _fail(f"cannot create the notify socket beside {state_file}: {e.strerror or e}")
    sock.settimeout(0.5)

    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
    # The daemon as a child of this interpreter's own package, so PATH plays no part.
    child = subprocess.Popen([sys.executable, "-m", "edge_ser", *args], env=env)
    state: dict[str, Any] = {"supervisor_pid": os.getpid(), "pid": child.pid, "started": time.monotonic(),
                             "ready": False, "last_ping": None, "status": "starting", "exit_code": None}
    _write_state(state_file, state)

    stop_deadline: list[float] = []

    def forward(signum: int, _frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)
            if signum in (signal.SIGTERM, signal.SIGINT) and not stop_deadline:
                stop_deadline.append(time.monotonic() + kill_after_s)

    for sig in FORWARDED:
        signal.signal(sig, forward)

    aborted_at: float | None = None
    last_write = 0.0
    try:
        while child.poll() is None:
            changed = False
            try:
                fields = _parse(sock.recv(4096))
            except (TimeoutError, InterruptedError):
                fields = {}
            now = time.monotonic()
            if fields.get("READY") == "1":
                state["ready"], state["last_ping"], changed = True, now, True
            if fields.get("WATCHDOG") == "1":
                state["last_ping"] = now
            if "STATUS" in fields:
                state["status"], changed = fields["STATUS"], True
            if fields.get("STOPPING") == "1":
                state["status"], changed = "stopping", True
            late = state["ready"] and state["last_ping"] is not None and now - state["last_ping"]
            if watchdog_s and late and late > watchdog_s and aborted_at is None:
                # A hung capture, PortAudio call or model: what systemd does on WatchdogSec.
                click.echo(f"edge-ser: no watchdog ping for {late:.0f} s: aborting the daemon",
                           err=True)
                child.send_signal(signal.SIGABRT)
                aborted_at, state["status"], changed = now, "watchdog timeout", True
            if (aborted_at is not None and now - aborted_at > kill_after_s) or (
                    stop_deadline and now > stop_deadline[0]):
                child.kill()
            if changed or now - last_write >= 1.0:
                _write_state(state_file, state)
                last_write = now
        code = child.wait()
    finally:
        sock.close()
        sock_path.unlink(missing_ok=True)
    state["exit_code"] = code
    state["status"] = f"exited with {code}"
    _write_state(state_file, state)
    sys.exit(128 - code if code < 0 else code)


@cli.command()
@click.option("--state", "state_path", envvar=STATE_ENV, default=DEFAULT_STATE, show_default=True,
              metavar="FILE", help=f"Health state file written by `run` (also ${STATE_ENV}).")
@click.option("--max-age", type=click.FloatRange(min=0.5), default=WATCHDOG_S, show_default=True,
              help="Seconds since the last watchdog ping after which the daemon counts as unhealthy.")
def health(state_path: str, max_age: float) -> None:
    """Exit 0 and print the daemon's status when audio flows; else one line and exit 1."""
    try:
        state = json.loads(Path(state_path).read_text())
        supervisor, ready, last_ping = int(state["supervisor_pid"]), bool(state["ready"]), state["last_ping"]
    except FileNotFoundError:
        click.echo(f"unhealthy: no state file {state_path} (is the daemon started by `run`?)")
        sys.exit(1)
    except (OSError, ValueError, KeyError, TypeError) as e:
        click.echo(f"unhealthy: unreadable state file {state_path}: {e}")
        sys.exit(1)
    if state.get("exit_code") is not None:
        click.echo(f"unhealthy: the daemon exited with {state['exit_code']}")
        sys.exit(1)
    try:
        os.kill(supervisor, 0)
    except ProcessLookupError:
        click.echo("unhealthy: the supervisor is gone (stale state file)")
        sys.exit(1)
    except PermissionError:
        pass  # alive, owned by another user
    if not ready:
        click.echo(f"unhealthy: no audio yet ({state.get('status')})")
        sys.exit(1)
    age = time.monotonic() - float(last_ping)
    if age > max_age:
        click.echo(f"unhealthy: no watchdog ping for {age:.0f} s (audio stopped or the daemon hangs)")
        sys.exit(1)
    click.echo(f"healthy: {state.get('status')} (last ping {age:.1f} s ago)")


def main(argv: list[str] | None = None) -> None:
    """Usage errors are one line and exit 2, like the `edge-ser` command's."""
    try:
        cli.main(args=argv, prog_name="python -m edge_ser.container", standalone_mode=False)
    except click.ClickException as e:
        _fail(" ".join(e.format_message().split()))
    except click.exceptions.Abort:
        sys.exit(130)


if __name__ == "__main__":
    main()
