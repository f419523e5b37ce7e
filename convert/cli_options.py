"""What every `python -m convert` subcommand shares: the recorded command line, the common options,
the result lines and exit status."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from artefact import parity
from artefact.manifest import DEFAULT_MANIFEST

QUANT_CHOICES = click.Choice(["int8", "float16", "float32", "dynamic"])


def command_line() -> str:
    return "python -m convert " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def finish(results: list, keep_anyway: bool) -> None:
    """Print one line per variant; exit 1 when a variant missed its parity target."""
    failed = [r for r in results if not r.passed]
    for r in results:
        state = (
            "ok"
            if r.passed
            else ("FAILED parity, kept (--keep-anyway)" if r.path else "FAILED parity, not written")
        )
        click.echo(f"{r.model_id}: {state}; file {r.path or '-'}; report {r.report}")
    if failed:
        click.echo(
            f"error: {len(failed)} conversion(s) missed their parity target (see the reports)", err=True
        )
        sys.exit(1)


def common_options(f):
    f = click.option(
        "--manifest",
        type=click.Path(path_type=Path),
        default=DEFAULT_MANIFEST,
        show_default=True,
        help="Manifest to add the converted models to.",
    )(f)
    f = click.option("--no-manifest", is_flag=True, help="Do not touch the manifest.")(f)
    f = click.option("--keep-anyway", is_flag=True, help="Write a file even if it misses its parity target.")(
        f
    )
    f = click.option(
        "--reports",
        type=click.Path(path_type=Path),
        default=parity.REPORTS_DIR,
        show_default=True,
        help="Folder for the parity reports.",
    )(f)
    return f
