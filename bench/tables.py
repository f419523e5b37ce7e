"""Rewrite the marked regions of the documentation from the committed results in bench/results.

    python3 -m bench.tables            # rewrite every region of README.md, bench/README.md, bench/ACCURACY.md
    python3 -m bench.tables --check    # exit 1 and name the regions that differ (nothing written)
    python3 -m bench.tables --print latency-full    # one region's Markdown on stdout

A region is the text between `<!-- bench.tables:NAME -->` and `<!-- /bench.tables:NAME -->`
(bench/regions.py); GENERATORS names what each NAME holds. Pure file generation: nothing is measured.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from bench import regions, render_perf, render_quality

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = ("README.md", "bench/README.md", "bench/ACCURACY.md")
"""Files whose regions are generated, relative to the repository root."""


class Results:
    """The committed results of one folder, each file parsed on first use (absent file = no records)."""

    def __init__(self, folder: Path = RESULTS, manifest: Path | None = None):
        self.folder = Path(folder)
        self._manifest = manifest

    def _json(self, name: str, empty: Any) -> Any:
        path = self.folder / name
        return json.loads(path.read_text()) if path.is_file() else empty

    @cached_property
    def latency(self) -> list[dict[str, Any]]:
        return self._json("latency.json", [])

    @cached_property
    def breakdown(self) -> list[dict[str, Any]]:
        return self._json("latency_breakdown.json", [])

    @cached_property
    def footprint(self) -> list[dict[str, Any]]:
        return self._json("footprint.json", [])

    @cached_property
    def stream(self) -> list[dict[str, Any]]:
        return self._json("stream.json", [])

    @cached_property
    def room(self) -> list[dict[str, Any]]:
        return self._json("room.json", [])

    @cached_property
    def room_val(self) -> list[dict[str, Any]]:
        return self._json("room_val.json", [])

    @cached_property
    def http_overhead(self) -> dict[str, Any]:
        return self._json("http_overhead.json", {})

    @cached_property
    def soak(self) -> dict[str, Any]:
        return self._json("soak.json", {})

    @cached_property
    def accuracy(self) -> list[dict[str, Any]]:
        return self._json("accuracy.json", [])

    @cached_property
    def egemaps_cost(self) -> dict[str, Any]:
        return self._json("egemaps_cost.json", {})

    @property
    def fused_cost(self) -> dict[str, Any] | None:
        from training.report import fused_cost

        return fused_cost(self.latency)

    @cached_property
    def manifest(self) -> Any:
        from edge_ser.manifest import load_manifest

        return load_manifest(self._manifest)

    @property
    def default(self) -> str | None:
        return self.manifest.default


def _accuracy_report(res: Results) -> str:
    from training.report import report_body

    return report_body(res.accuracy, res.egemaps_cost or None, res.fused_cost)


GENERATORS: dict[str, Callable[[Results], str]] = {
    "models": lambda r: render_perf.models_table(r.manifest, r.latency),
    "latency": lambda r: render_perf.latency_table(r.latency, r.default, full=False),
    "latency-full": lambda r: render_perf.latency_table(r.latency, r.default, full=True),
    "hubert-speedup": lambda r: render_perf.speedups(r.latency),
    "latency-pairs": lambda r: render_perf.pairs_table(r.latency),
    "breakdown": lambda r: render_perf.breakdown_table(r.breakdown),
    "footprint": lambda r: render_perf.footprint_table(r.footprint, full=False),
    "footprint-full": lambda r: render_perf.footprint_table(r.footprint, full=True),
    "footprint-targets": lambda r: render_perf.footprint_targets(r.footprint),
    "soak": lambda r: render_perf.soak_summary(r.soak),
    "accuracy": lambda r: render_quality.si_table(r.accuracy, r.default, r.egemaps_cost or None,
                                                  r.fused_cost),
    "recall": lambda r: render_quality.default_recall(r.accuracy, r.default),
    "stream": lambda r: render_quality.stream_summary(r.stream, r.default),
    "stream-full": lambda r: render_quality.stream_tables(r.stream),
    "room": lambda r: render_quality.room_table(r.room),
    "room-gate": lambda r: render_quality.gate_table(r.room_val),
    "accuracy-report": _accuracy_report,
    "http-overhead": lambda r: render_perf.http_overhead_table(r.http_overhead),
}
"""Region name -> its Markdown, from the results."""


def generate(name: str, res: Results) -> str:
    if name not in GENERATORS:
        known = ", ".join(sorted(GENERATORS))
        raise regions.RegionError(f"no generator for region {name!r} (known: {known})")
    return GENERATORS[name](res)


def render(text: str, res: Results) -> str:
    """`text` with every region regenerated."""
    return regions.fill(text, lambda name: generate(name, res))


def stale(root: Path = REPO, res: Results | None = None, docs: tuple[str, ...] = DOCS) -> list[str]:
    """"file: region" for every region whose text differs from what the results generate."""
    res = res or Results()
    out = []
    for doc in docs:
        text = (root / doc).read_text()
        now, want = regions.bodies(text), regions.bodies(render(text, res))
        out += [f"{doc}: {name}" for (name, a), (_, b) in zip(now, want, strict=True) if a != b]
    return out


def rewrite(root: Path = REPO, res: Results | None = None, docs: tuple[str, ...] = DOCS) -> list[str]:
    """Regenerate every region of `docs` in place; the files that changed."""
    res = res or Results()
    changed = []
    for doc in docs:
        path = root / doc
        old = path.read_text()
        new = render(old, res)
        if new != old:
            path.write_text(new)
            changed.append(doc)
    return changed


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming every region that is out of date.")
@click.option("--print", "print_name", metavar="REGION", help="Print one region's Markdown and exit.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=RESULTS,
              show_default=True, help="Folder of the result JSON files.")
def main(check: bool, print_name: str | None, results: Path) -> None:
    """Regenerate the marked regions of the documentation from bench/results."""
    res = Results(results)
    try:
        if print_name:
            click.echo(generate(print_name, res))
            return
        if check:
            bad = stale(REPO, res)
            for line in bad:
                click.echo(f"out of date: {line}", err=True)
            if bad:
                click.echo("run: python -m bench tables", err=True)
                sys.exit(1)
            click.echo(f"all regions of {', '.join(DOCS)} match bench/results")
            return
        changed = rewrite(REPO, res)
    except regions.RegionError as e:
        raise click.ClickException(str(e)) from e
    click.echo("rewrote " + (", ".join(changed) if changed else "nothing (already up to date)"))


if __name__ == "__main__":
    main()
