"""`python -m training finetune ...`: cache, train, jobs, report, export, embed, export-backbone,
pipeline-parity."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_ser.errors import UserError
from training.command import command_line

from . import DEFAULT_CACHE, DEFAULT_TFLITE, REPO

PATH = click.Path(path_type=Path)
RUNS = REPO / "runs" / "yamnet-ft"


@click.group()
def finetune() -> None:
    """Fine-tune YAMNet's top (training/finetune/__init__.py says what and why)."""


@finetune.command()
@click.option("--variant", default="base", show_default=True, help="base, or augN for augmented copy N.")
@click.option("--corpora", default="all+", show_default=True)
@click.option("--root", type=PATH, default=None)
@click.option("--cache", type=PATH, default=DEFAULT_CACHE, show_default=True)
@click.option("--tflite", type=PATH, default=DEFAULT_TFLITE, show_default=True)
@click.option("--limit", type=int, default=0, help="At most N clips per (corpus, label) (tests).")
@click.option("--max-per-corpus", type=int, default=0, help="Budget subset; 0 = every clip.")
def cache(variant: str, corpora: str, root: Path | None, cache: Path, tflite: Path, limit: int,
          max_per_corpus: int) -> None:
    """Trunk features of every clip (resumable)."""
    from .cache import build_cache

    click.echo(build_cache(variant, corpora, root, cache, tflite, limit, max_per_corpus))


@finetune.command()
@click.option("--protocol", type=click.Choice(["paper", "speaker_independent", "cross_corpus"]),
              required=True)
@click.option("--corpus", required=True, help="Corpus or set; for cross_corpus the training pool.")
@click.option("--heldout", default=None)
@click.option("--fold", type=int, default=0)
@click.option("--out", type=PATH, required=True)
@click.option("--root", type=PATH, default=None)
@click.option("--cache", type=PATH, default=DEFAULT_CACHE, show_default=True)
@click.option("--aug", default="aug1", show_default=True,
              help="Augmented copies to use (comma-separated, those cached).")
@click.option("--epochs", type=int, default=6, show_default=True)
@click.option("--patience", type=int, default=2, show_default=True)
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True,
              help="Learning rate of the conv's low-rank update.")
@click.option("--rank", type=int, default=64, show_default=True,
              help="Rank of the update of the pointwise conv.")
@click.option("--head-lr", type=float, default=1e-3, show_default=True)
@click.option("--dropout", type=float, default=0.3, show_default=True)
@click.option("--original-weight", type=float, default=0.5, show_default=True)
@click.option("--freeze", is_flag=True, help="Control: keep YAMNet's weights, train heads only.")
@click.option("--max-steps", type=int, default=0, help="Cap steps per epoch (tests).")
@click.option("--seed", type=int, default=0)
@click.option("--threads", type=int, default=1)
@click.option("--tflite", type=PATH, default=DEFAULT_TFLITE, show_default=True)
def train(**options) -> None:
    """One fine-tuning run (resumes from its folder)."""
    from .train import TrainOptions
    from .train import train as run

    res = run(TrainOptions(**options, command=command_line()))
    click.echo(f"test merged uar {res['test']['all']['merged']['uar']:.4f}")


@finetune.command()
@click.option("--plan", type=PATH, default=REPO / "training" / "ft_plan.json", show_default=True)
@click.option("--runs", type=PATH, default=RUNS, show_default=True)
@click.option("--parallel", type=int, default=2, show_default=True)
@click.option("--cache", type=PATH, default=DEFAULT_CACHE, show_default=True)
def jobs(plan: Path, runs: Path, parallel: int, cache: Path) -> None:
    """Run a plan of train jobs, N processes at a time."""
    from .jobs import run_jobs

    run_jobs(plan, runs, parallel, ["--cache", str(cache)])


@finetune.command()
@click.option("--runs", type=PATH, default=RUNS, show_default=True)
@click.option("--out", type=PATH, default=REPO / "bench" / "results" / "accuracy_yamnet_ft.json",
              show_default=True)
@click.option("--append-to", type=PATH, default=None, help="Also insert them with training.report.")
def report(runs: Path, out: Path, append_to: Path | None) -> None:
    """Records of every finished run -> a JSON list (and accuracy.json)."""
    from .jobs import records

    recs = records(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recs, indent=1) + "\n")
    if append_to:
        from training.report import append_record

        for rec in recs:
            append_record(rec, append_to)
    click.echo(f"{len(recs)} records -> {out}")


@finetune.command()
@click.option("--run", type=PATH, required=True)
@click.option("--out", type=PATH, default=REPO / "models" / "heads" / "yamnet-ft.tflite", show_default=True)
@click.option("--model-id", default="yamnet-ft", show_default=True)
@click.option("--cache", type=PATH, default=DEFAULT_CACHE, show_default=True)
@click.option("--tflite", type=PATH, default=DEFAULT_TFLITE, show_default=True)
@click.option("--max-clips", type=int, default=0, help="Parity on the first N test clips only.")
@click.option("--register", "add_entry", is_flag=True, help="Add/replace the manifest entry.")
def export(run: Path, out: Path, model_id: str, cache: Path, tflite: Path, max_clips: int,
           add_entry: bool) -> None:
    """One TFLite file (waveform in, probabilities out) + parity report."""
    from artefact.parity import summary, write_report

    from . import export as ex

    path = ex.export(run, out, tflite)
    result = ex.parity(run, path, cache, tflite=tflite, max_clips=max_clips)
    result["command"] = command_line()
    result["model"] = model_id
    jpath, _ = write_report(model_id, result)
    click.echo(summary(model_id, result))
    if not result["parity"]["passed"]:
        raise UserError(f"{model_id}: exported file misses the parity targets (see {jpath})")
    if add_entry:
        ex.register(run, model_id, path, jpath)


@finetune.command()
@click.option("--run", type=PATH, required=True)
@click.option("--out", type=PATH, required=True, help="Cache root for `python -m training run --cache`.")
@click.option("--corpora", default="all+", show_default=True)
@click.option("--cache", type=PATH, default=DEFAULT_CACHE, show_default=True)
def embed(run: Path, out: Path, corpora: str, cache: Path) -> None:
    """A run's fine-tuned embeddings in the frozen cache layout."""
    from .export import write_embeddings

    click.echo(write_embeddings(run, out, corpora, cache))


@finetune.command("export-backbone")
@click.option("--run", type=PATH, required=True)
@click.option("--out", type=PATH, required=True)
@click.option("--tflite", type=PATH, default=DEFAULT_TFLITE, show_default=True)
@click.option("--pw-dtype", type=click.Choice(["float16", "int8", "float32"]), default="float16",
              show_default=True)
def export_backbone(run: Path, out: Path, tflite: Path, pw_dtype: str) -> None:
    """yamnet.tflite with the run's fine-tuned layer 14."""
    from .export import export_backbone as write

    click.echo(write(run, out, tflite, pw_dtype))


@finetune.command("pipeline-parity")
@click.option("--model-id", required=True)
@click.option("--run", type=PATH, required=True, help="The fine-tune run of the backbone.")
@click.option("--head", type=PATH, required=True, help="The head folder trained on its embeddings.")
@click.option("--emb-cache", type=PATH, required=True, help="The `embed` output of the run.")
@click.option("--max-clips", type=int, default=400, show_default=True)
def pipeline_parity(model_id: str, run: Path, head: Path, emb_cache: Path, max_clips: int) -> None:
    """A registered fine-tuned-backbone model vs torch."""
    from artefact.parity import summary, write_report

    from .export import pipeline_parity as measure

    result = measure(model_id, run, head, emb_cache, max_clips)
    result["command"] = command_line()
    jpath, _ = write_report(f"{model_id}-pipeline", result)
    click.echo(summary(model_id, result))
    if not result["parity"]["passed"]:
        raise UserError(f"{model_id}: the daemon's pipeline misses the parity targets (see {jpath})")
