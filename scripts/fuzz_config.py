"""Longer fuzzing of the config loader and the CLI than the test suite runs (tests/test_config_fuzz.py).

1. In-process: `--examples` hostile config files (random YAML trees, numbers at the range edges,
   aliases, other encodings, random bytes) through `load_settings`: Settings within the declared
   ranges, or one ConfigError line; any other exception is a failure.
2. CLI: `--cli-examples` such files through a real `edge-ser listen --config FILE --input <3 s file>`
   process, plus `edge-ser bench` with hostile --seconds/--threads: exit code 0 or 2, no traceback,
   peak RSS under `--max-rss-mb`, and on exit 2 one error line, last; for a refused config or flag
   it is the only line on stderr, for a problem found later (e.g. gate.vad: silero without the
   package) only the daemon's own log lines, at the config's log level, come before it.

Path-like keys (audio.record_dir, model.manifest, mqtt.host, ...) get no random values in CLI runs:
they would write files or reach the network. Each CLI run has its own empty HOME and working folder.

    python scripts/fuzz_config.py --examples 5000 --cli-examples 150
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from config_fuzz import check_loader, config_texts, numbers  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) edge_ser[\w.]*: ")
"""A line of the daemon's log (edge_ser.cli.setup_logging's format)."""

CONFIG_ERROR = re.compile(r"edge-ser: error: (config |unknown config key|--)")
"""An error about the config or the flags: raised before logging starts, so the only line."""

INPUT = REPO / "tests" / "fixtures" / "silence.wav"
"""3 s of silence: a config that loads runs the whole pipeline (model, gate) to the end quickly."""


class Tally:
    """What the CLI runs did."""

    def __init__(self) -> None:
        self.runs = 0
        self.exit_codes: dict[int, int] = {}
        self.max_rss_mb = 0.0
        self.max_wall_s = 0.0
        self.errors: dict[str, int] = {}
        """Exit-2 lines by their first words (what kind of input was refused)."""

    def line(self) -> str:
        codes = ", ".join(f"exit {k}: {v}" for k, v in sorted(self.exit_codes.items()))
        top = sorted(self.errors.items(), key=lambda kv: -kv[1])[:8]
        kinds = "; ".join(f"{v}x {k}" for k, v in top)
        return (f"{self.runs} CLI runs ({codes}); peak RSS max {self.max_rss_mb:.0f} MB; "
                f"longest run {self.max_wall_s:.1f} s\n  most frequent refusals: {kinds}")


def run_cli(args: list[str], folder: Path, timeout_s: float) -> tuple[int, str, float, float]:
    """Run `python -m edge_ser ARGS` in `folder`; (exit code, stderr, peak RSS MB, wall s)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(folder), XDG_DATA_HOME=str(folder / "data"),
               XDG_STATE_HOME=str(folder / "state"))
    env.pop("EDGE_SER_MQTT_PASSWORD", None)
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "edge_ser", *args], cwd=folder, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        # os.wait4 (not Popen.wait) reaps the child, so its own peak RSS comes back with it.
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout_s:
                proc.kill()
            time.sleep(0.02)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return code, stderr, usage.ru_maxrss / 1024, time.monotonic() - t0


def check_cli(args: list[str], folder: Path, tally: Tally, max_rss_mb: float, timeout_s: float) -> None:
    code, stderr, rss, wall = run_cli(args, folder, timeout_s)
    tally.runs += 1
    tally.exit_codes[code] = tally.exit_codes.get(code, 0) + 1
    tally.max_wall_s = max(tally.max_wall_s, wall)
    tally.max_rss_mb = max(tally.max_rss_mb, rss)
    assert code in (0, 2), (code, args, stderr[-2000:])
    assert "Traceback" not in stderr, (args, stderr[-2000:])
    if code == 2:
        lines = stderr.splitlines()
        error = lines[-1] if lines else ""
        assert error.startswith("edge-ser: error: "), (args, stderr[-2000:])
        # Before the config is accepted nothing else is printed; after it, the daemon's own log lines
        # (the config's log level) may precede the one error line.
        if CONFIG_ERROR.match(error) or args[0] == "bench":
            assert len(lines) == 1, (args, stderr[-2000:])
        else:
            assert all(LOG_LINE.match(line) for line in lines[:-1]), (args, stderr[-2000:])
        kind = " ".join(error.removeprefix("edge-ser: error: ").split()[:4])
        if kind.startswith("config /"):
            kind = "config FILE " + " ".join(error.split()[4:7])
        tally.errors[kind] = tally.errors.get(kind, 0) + 1
    assert rss <= max_rss_mb, (rss, args)


@click.command()
@click.option("--examples", default=2000, show_default=True, help="In-process loader examples.")
@click.option("--cli-examples", default=60, show_default=True, help="`edge-ser listen` runs.")
@click.option("--bench-examples", default=30, show_default=True, help="`edge-ser bench` runs.")
@click.option("--seed", "seed_", default=0, show_default=True, help="Hypothesis seed (reproducible runs).")
@click.option("--max-rss-mb", default=400.0, show_default=True, help="Peak RSS allowed per CLI run.")
@click.option("--timeout-s", default=120.0, show_default=True, help="Longest CLI run allowed.")
def main(examples: int, cli_examples: int, bench_examples: int, seed_: int, max_rss_mb: float,
         timeout_s: float) -> None:
    """Fuzz the config loader in-process, then the CLI; exit 1 on the first broken invariant."""
    work = Path(tempfile.mkdtemp(prefix="edge-ser-fuzz-"))
    common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    t0 = time.monotonic()
    outcomes = {"loaded": 0, "refused": 0}

    @seed(seed_)
    @settings(max_examples=examples, **common)
    @given(config_texts())
    def loader(data: bytes) -> None:
        got = check_loader(data, work)
        outcomes["refused" if isinstance(got, Exception) else "loaded"] += 1

    loader()
    click.echo(f"loader: {examples} examples, {outcomes['loaded']} loaded, {outcomes['refused']} refused "
               f"with one line, no other exception ({time.monotonic() - t0:.0f} s)")

    tally = Tally()
    t1 = time.monotonic()

    @seed(seed_)
    @settings(max_examples=cli_examples, **common)
    @given(config_texts(safe_paths=True))
    def listen(data: bytes) -> None:
        folder = Path(tempfile.mkdtemp(dir=work))
        (folder / "config.yaml").write_bytes(data)
        check_cli(["listen", "--config", str(folder / "config.yaml"), "--input", str(INPUT)], folder, tally,
                  max_rss_mb, timeout_s)

    listen()
    # Values `bench` accepts would start a benchmark: only the refused side is fuzzed here.
    seconds = st.one_of(numbers.filter(lambda x: not 3 <= x <= 3600), st.sampled_from(["nan", "inf", "x"]))
    threads = st.one_of(st.integers(-(2**40), 0), st.integers(65, 2**40), st.sampled_from(["x", "1.5"]))

    @seed(seed_)
    @settings(max_examples=bench_examples, **common)
    @given(st.one_of(seconds.map(lambda s: ["--seconds", str(s)]),
                     threads.map(lambda t: ["--seconds", "4", "--threads", str(t)])))
    def bench(args: list[str]) -> None:
        folder = Path(tempfile.mkdtemp(dir=work))
        check_cli(["bench", *args], folder, tally, max_rss_mb, timeout_s)

    bench()
    click.echo(f"cli: {tally.line()} ({time.monotonic() - t1:.0f} s)")
    click.echo("all invariants held")


if __name__ == "__main__":
    main()
