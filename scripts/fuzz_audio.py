"""Long fuzz run of `edge-ser classify FILE --json` on hostile audio files, one process per file.

    python scripts/fuzz_audio.py --cases 200 --seed 1 --report bench/results/fuzz_audio.txt

Files come from the builders in tests/hostile_files.py with parameters drawn from random.Random(seed),
so a run is repeatable and a failing case is printed with what rebuilds it. Invariants of each run:

- exit code 0 or 2, within --timeout seconds, peak RSS at most --max-rss-mb;
- stderr: only lines starting `edge-ser: error: ` (exactly one when the exit code is 2, none when 0)
  or `edge-ser: warning: ` (at most 2 per file: damage, a signal that is no recording); no traceback;
- stdout: empty when the exit code is 2; otherwise JSON lines (json.loads with NaN and Infinity
  refused), the last being the file line with "path", "label" and "windows".
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hostile_files import SUFFIXES, base_file, float_wav, mutate, wav_bytes  # noqa: E402

MAX_WARNINGS = 2


def draw_case(rng: random.Random, bases: dict[str, bytes]) -> tuple[str, str, bytes, dict]:
    """(kind, file ending, bytes, parameters) of one hostile file."""
    kind = rng.choice(["header", "mutate", "mutate", "random", "extreme", "float", "garbage", "bomb"])
    if kind == "header":
        p = {"tag": rng.choice([1, 3, 6, 7, 0xFFFE, rng.randrange(1 << 16)]),
             "channels": rng.choice([0, 1, 2, 3, 65, 1000, rng.randrange(1 << 16)]),
             "rate": rng.choice([0, 1, 3999, 8000, 16000, 44100, 384001, rng.randrange(1 << 32)]),
             "bits": rng.choice([0, 8, 16, 24, 32, 64, rng.randrange(1 << 16)]),
             "body_len": rng.randrange(0, 40000),
             "data_size": rng.choice([None, 0, 0xFFFFFFFF, rng.randrange(1 << 32)])}
        body = rng.randbytes(p["body_len"])
        return kind, ".wav", wav_bytes(tag=p["tag"], channels=p["channels"], rate=p["rate"], bits=p["bits"],
                                       body=body, data_size=p["data_size"]), p
    if kind == "mutate":
        base = rng.choice(sorted(bases))
        p = {"base": base, "cut": rng.choice([None, rng.random()]),
             "patches": [(rng.random(), rng.randrange(1, 3000)) for _ in range(rng.randrange(0, 4))]}
        patches = [(at, rng.randbytes(n)) for at, n in p["patches"]]
        return kind, SUFFIXES[base], mutate(bases[base], cut=p["cut"], patches=patches), p
    if kind == "random":
        p = {"len": rng.randrange(0, 100000),
             "magic": rng.choice(["", "RIFF", "fLaC", "OggS", "ID3", "FORM"]),
             "suffix": rng.choice(sorted(set(SUFFIXES.values())))}
        return kind, p["suffix"], p["magic"].encode() + rng.randbytes(p["len"]), p
    if kind == "extreme":
        p = {"rate": rng.choice([1, 2, 100, 3999, 4000, 384000, 384001, 10**7, rng.randrange(1, 1 << 31)]),
             "channels": rng.choice([1, 2, 64, 65, 255, 4096, rng.randrange(1, 1 << 16)])}
        body = bytes(2 * p["channels"] * 100)
        return kind, ".wav", wav_bytes(rate=p["rate"], channels=p["channels"], body=body), p
    if kind == "float":
        p = {"n": rng.randrange(1, 40000),
             "special": rng.choice(["nan", "inf", "-inf", "huge", "none"]), "at": rng.random()}
        values = [0.1 * ((i * 7919) % 200 - 100) / 100 for i in range(p["n"])]
        if p["special"] != "none":
            values[int(p["at"] * (p["n"] - 1))] = {"nan": float("nan"), "inf": float("inf"),
                                                    "-inf": float("-inf"), "huge": 3e38}[p["special"]]
        return kind, ".wav", float_wav(values), p
    if kind == "garbage":
        p = {"seconds": rng.choice([1, 3, 11])}
        return kind, ".wav", wav_bytes(body=rng.randbytes(p["seconds"] * 32000)), p
    p = {"rate": rng.choice([1, 10, 100]), "body_len": rng.choice([7000, 400000])}  # bomb
    return kind, ".wav", wav_bytes(rate=p["rate"], body=rng.randbytes(p["body_len"])), p


def run_classify(path: Path, timeout: float) -> tuple[int, str, str, float, float]:
    """(exit code, stdout, stderr, seconds, peak RSS MB) of one `classify --json` process."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "edge_ser", "classify", str(path), "--json"],
                                stdout=out, stderr=err, env=env, cwd=REPO)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), seconds, usage.ru_maxrss / 1024


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def violations(path: Path, rc: int, stdout: str, stderr: str, seconds: float, rss_mb: float,
               timeout: float, max_rss_mb: float) -> list[str]:
    """The invariants (module docstring) that one run broke."""
    bad = []
    if rc not in (0, 2):
        bad.append(f"exit code {rc}")
    if seconds >= timeout:
        bad.append(f"ran {seconds:.0f} s")
    if rss_mb > max_rss_mb:
        bad.append(f"peak RSS {rss_mb:.0f} MB")
    if "Traceback" in stderr:
        bad.append("traceback on stderr")
    lines = stderr.splitlines()
    errors = [x for x in lines if x.startswith("edge-ser: error: ")]
    warnings = [x for x in lines if x.startswith("edge-ser: warning: ")]
    if len(errors) + len(warnings) != len(lines):
        bad.append(f"other stderr lines: {[x for x in lines if x not in errors + warnings][:3]}")
    if len(errors) != (1 if rc == 2 else 0):
        bad.append(f"{len(errors)} error lines with exit code {rc}")
    if len(warnings) > MAX_WARNINGS:
        bad.append(f"{len(warnings)} warning lines")
    if rc == 2 and stdout:
        bad.append("results printed for a refused file")
    if rc == 0:
        try:
            records = [json.loads(x, parse_constant=_no_constant) for x in stdout.splitlines()]
        except ValueError as e:
            return bad + [f"stdout is not strict JSON lines: {e}"]
        if not records or not {"path", "label", "windows"} <= set(records[-1]):
            bad.append("no file line at the end of stdout")
        elif records[-1]["windows"] != len(records) - 1:
            bad.append("window lines and the file line disagree")
    return bad


@click.command()
@click.option("--cases", default=200, show_default=True, help="Hostile files to generate and classify.")
@click.option("--seed", default=1, show_default=True, help="Seed of the case generator.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds one classify may take.")
@click.option("--max-rss-mb", default=400.0, show_default=True, help="Peak RSS one classify may reach.")
@click.option("--report", type=click.Path(dir_okay=False), help="Also write the summary to this file.")
def main(cases: int, seed: int, timeout: float, max_rss_mb: float, report: str | None) -> None:
    """Classify hostile audio files and check that every run keeps the CLI's invariants."""
    rng = random.Random(seed)
    bases = {kind: base_file(kind, seconds=3.0) for kind in SUFFIXES}
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    peak = (0.0, "")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(cases):
            kind, suffix, data, params = draw_case(rng, bases)
            path = Path(tmp) / f"case{i:04d}-{kind}{suffix}"
            path.write_bytes(data)
            rc, stdout, stderr, seconds, rss_mb = run_classify(path, timeout)
            warned = "warning" if "edge-ser: warning: " in stderr else "clean"
            outcomes[f"{kind} rc={rc} {warned if rc == 0 else ''}".strip()] += 1
            slowest = max(slowest, (seconds, f"case {i} {kind} {params}"))
            peak = max(peak, (rss_mb, f"case {i} {kind} {params}"))
            bad = violations(path, rc, stdout, stderr, seconds, rss_mb, timeout, max_rss_mb)
            if bad:
                failures.append(f"case {i} {kind} {params} ({len(data)} bytes): {'; '.join(bad)}\n"
                                f"    stderr: {stderr[-500:]!r}")
            click.echo(f"{i:4d} {kind:8s} rc={rc} {seconds:5.1f} s {rss_mb:4.0f} MB "
                       f"{'FAIL ' + '; '.join(bad) if bad else ''}", err=True)
    lines = [
        f"command: python scripts/fuzz_audio.py --cases {cases} --seed {seed} --timeout {timeout:g} "
        f"--max-rss-mb {max_rss_mb:g}",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"cases: {cases} in {time.monotonic() - started:.0f} s; failures: {len(failures)}",
        f"slowest: {slowest[0]:.1f} s ({slowest[1]})",
        f"peak RSS: {peak[0]:.0f} MB ({peak[1]})",
        "outcomes (kind, exit code, whether a warning was printed):",
        *[f"  {k}: {v}" for k, v in sorted(outcomes.items())],
        *failures,
    ]
    text = "\n".join(lines) + "\n"
    click.echo(text)
    if report:
        Path(report).write_text(text)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
