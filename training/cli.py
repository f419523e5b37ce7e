"""Command line of the training pipeline (click group)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_ser.errors import UserError
from training import loaders


@click.group()
def cli() -> None:
    """Corpora -> embedding cache -> heads -> reports."""


@cli.command()
@click.option("--corpora", default="all+", show_default=True, help="Comma-separated corpora or sets.")
@click.option("--variant", default="base", show_default=True, help="base, or augN for augmented copy N.")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Corpora root.")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Cache folder.")
@click.option("--threads", default=1, show_default=True, help="TFLite threads.")
def extract(corpora: str, variant: str, root: Path | None, cache: Path | None, threads: int) -> None:
    """Compute (or resume) YAMNet frame embeddings of every clip, per 2 s window."""
    from training import features

    model = features.Yamnet(num_threads=threads)
    for c in loaders.expand(corpora.split(","), root):
        clips = loaders.load_corpus(c, root)
        out = features.extract(clips, c, variant, cache or features.DEFAULT_CACHE, model=model)
        click.echo(f"{c}: {len(clips)} clips -> {out}")


@cli.command()
@click.option("--corpora", default="all+", show_default=True, help="Comma-separated corpora or sets.")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Corpora root.")
def splits(corpora: str, root: Path | None) -> None:
    """(Re)write the seeded split files under training/splits/."""
    from training import splits as sp

    root = root or loaders.default_corpora_root()
    data = {c: loaders.load_corpus(c, root) for c in loaders.expand(corpora.split(","), root)}
    sp.write_all(data, root)
    click.echo(f"wrote splits for {', '.join(data)} under {sp.SPLITS_DIR}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
