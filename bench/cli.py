"""`python -m bench`: one command for the benchmark scripts, and `all` to rerun what the docs show.

    python -m bench latency --configs yamnet-dev --seconds 20     # = python -m bench.latency ...
    python -m bench all --dry-run                                  # the commands `all` would run

The script subcommands hand their arguments to the script unchanged (`python -m bench latency --help`
is the script's own help). `all` reruns, one after the other, every benchmark whose result is in a
generated region of the documentation, then the plots and the tables; it refuses to start while other
processes load the machine, because every timing it wrote would be pessimistic.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from edge_ser.benchmark import is_loaded, load_limit

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PASSTHROUGH = {"latency": "bench.latency", "footprint": "bench.footprint", "stream-eval": "bench.stream_eval",
               "soak": "bench.soak", "plots": "bench.plots"}
"""Subcommand -> script module whose main(argv) parses the arguments itself."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """edge-ser benchmarks: latency, footprint, streaming accuracy, room conditions, soak, plots, tables."""


def _passthrough(name: str, module: str) -> None:
    @cli.command(name=name, add_help_option=False, help=f"= python -m {module} ARGS (its own --help).",
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        import importlib

        code = importlib.import_module(module).main(list(args))
        sys.exit(code or 0)


for _name, _module in PASSTHROUGH.items():
    _passthrough(_name, _module)


@cli.command(name="compare", add_help_option=False, help="= python -m bench.compare ARGS (its own --help).",
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def compare_cmd(args: tuple[str, ...]) -> None:
    from bench import compare

    compare.main.main(args=list(args), prog_name="python -m bench compare")


@cli.command(name="room", add_help_option=False, help="= python -m bench.room ARGS (its own --help).",
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def room_cmd(args: tuple[str, ...]) -> None:
    from bench import room

    room.main.main(args=list(args), prog_name="python -m bench room")


@cli.command(name="tables", add_help_option=False, help="= python -m bench.tables ARGS (its own --help).",
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def tables_cmd(args: tuple[str, ...]) -> None:
    from bench import tables

    tables.main.main(args=list(args), prog_name="python -m bench tables")


# -- all ----------------------------------------------------------------------------------------------

@dataclass
class Step:
    """One benchmark of `bench all`: a command line (with environment settings) and what it writes."""

    name: str
    argv: list[str]
    writes: str
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        words = [f"{k}={v}" for k, v in self.env.items()] + ["python3", *self.argv]
        return " ".join(shlex.quote(w) if " " in w else w for w in words)


def _records(name: str, results: Path) -> list[dict]:
    path = results / name
    data = json.loads(path.read_text()) if path.is_file() else []
    return data if isinstance(data, list) else [data]


def compare_steps(results: Path) -> list[Step]:
    """One step per interleaved run in latency.json, from the exact command its records carry."""
    steps, seen = [], set()
    for r in _records("latency.json", results):
        cmd = r.get("command", "")
        if not r.get("run") or cmd in seen:
            continue
        seen.add(cmd)
        words = shlex.split(cmd)
        env = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            k, _, v = words.pop(0).partition("=")
            env[k] = v
        if words[:3] != ["python3", "-m", "bench.compare"]:
            raise click.ClickException(f"latency.json: run {r['run']!r} has no bench.compare command: "
                                       f"{cmd!r}")
        steps.append(Step("compare", words[1:], "latency.json (run records), latency_breakdown.json", env))
    return steps


def plan(results: Path = RESULTS) -> list[Step]:
    """Every benchmark behind the generated regions, in an order where each step's output survives:
    the sweep rewrites latency.json, so the interleaved runs merge into it afterwards."""
    streamed = list(dict.fromkeys(r["model"] for r in _records("stream.json", results)))
    stream_argv = ["-m", "bench.stream_eval", "--vad", "none", "yamnet"]
    if streamed:  # the models the docs show; models without a speech score skip gate.vad yamnet
        stream_argv += ["--models", *streamed]
    # the room benchmark reruns once its results exist, for the models they hold (all conditions)
    roomed = list(dict.fromkeys(r["model"] for r in _records("room.json", results)))
    room = [Step("room", ["-m", "bench.room", *(w for m in roomed for w in ("--models", m)), "--merge"],
                 "room.json, room.png")] if roomed else []
    return [
        Step("latency", ["-m", "bench.latency"], "latency.json, latency_windows.json"),
        *compare_steps(results),
        Step("footprint", ["-m", "bench.footprint"], "footprint.json"),
        Step("stream-eval", stream_argv, "stream.json, stream_confusion.json"),
        *room,
        Step("soak", ["-m", "bench.soak", "--out", "bench/results/soak.json"], "soak.json"),
        Step("plots", ["-m", "bench.plots"], "*.png"),
        Step("tables", ["-m", "bench.tables"], "README.md, bench/README.md, bench/ACCURACY.md"),
    ]


def load_now() -> tuple[float, int]:
    return os.getloadavg()[0], os.cpu_count() or 1


@cli.command(name="all")
@click.option("--dry-run", is_flag=True, help="Print the load verdict and the commands; run nothing.")
@click.option("--force", is_flag=True, help="Run even when the machine is loaded (every record is marked).")
@click.option("--skip", multiple=True, metavar="STEP", help="Leave out a step by name (repeatable).")
def all_cmd(dry_run: bool, force: bool, skip: tuple[str, ...]) -> None:
    """Rerun every benchmark whose result the documentation shows, then the plots and the tables.

    Accuracy (bench/results/accuracy.json) comes from training/ and is not rerun here.
    """
    everything = plan(RESULTS)
    unknown = set(skip) - {s.name for s in everything}
    if unknown:
        raise click.BadParameter(f"no step {', '.join(sorted(unknown))}; steps: "
                                 + ", ".join(dict.fromkeys(s.name for s in everything)), param_hint="--skip")
    steps = [s for s in everything if s.name not in skip]
    load, cores = load_now()
    busy = is_loaded(load, cores)
    verdict = f"1-minute load average {load:.2f}, {cores} cores: " + (
        f"LOADED (above {load_limit(cores):g}); timings would be pessimistic" if busy else "idle enough")
    click.echo(verdict, err=busy)
    if dry_run:
        if busy and not force:
            click.echo("(without --dry-run this would refuse to start: wait for an idle machine, "
                       "or pass --force)")
        for s in steps:
            click.echo(f"{s.shell()}    # {s.name}: writes {s.writes}")
        click.echo("accuracy.json: from training/ (python -m training ...), not rerun by bench all")
        return
    if busy and not force:
        raise click.ClickException("refusing to benchmark a loaded machine; rerun when it is idle, or pass "
                                   "--force to measure anyway (the tables will mark every record †)")
    for i, s in enumerate(steps, 1):
        load, _ = load_now()
        note = "  LOADED" if is_loaded(load, cores) else ""
        click.echo(f"[{i}/{len(steps)}] {s.shell()}   (load {load:.2f}{note})", err=bool(note))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, *s.argv], cwd=REPO, env={**os.environ, **s.env})
        if proc.returncode != 0:
            raise click.ClickException(f"step {s.name} failed with exit code {proc.returncode}: {s.shell()}")
        click.echo(f"[{i}/{len(steps)}] {s.name} done in {time.monotonic() - t0:.0f} s")
