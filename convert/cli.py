"""Command line of the conversion toolkit (click group); bad input -> one line, exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from artefact.manifest import DEFAULT_MANIFEST, HEADS_DIR
from edge_ser.errors import UserError

from .cli_options import QUANT_CHOICES, command_line, common_options, finish
from .whisper_cli import whisper_encoder, whisper_model


@click.group()
def cli() -> None:
    """Trained models -> TFLite / INT8 ONNX files for the daemon, with parity reports."""


@cli.command(name="yamnet-head")
@click.argument("head_folder", type=click.Path(path_type=Path))
@click.option(
    "--features",
    type=click.Path(path_type=Path),
    default=None,
    help="eval .npz (train_x, test_x, test_y, labels); default <head folder>/eval.npz.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=HEADS_DIR,
    show_default=True,
    help="Folder for the .tflite files.",
)
@click.option("--name", default=None, help="Model name (default: the head folder's name).")
@click.option(
    "--quant",
    "quants",
    multiple=True,
    type=QUANT_CHOICES,
    help="Variants to write (repeatable; default int8, float16, float32).",
)
@click.option(
    "--default",
    "default",
    type=QUANT_CHOICES,
    default=None,
    help="Make this variant the manifest's default model.",
)
@click.option(
    "--backbone-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="The YAMNet file the head was trained on, when not the shared one (a fine-tuned backbone).",
)
@common_options
def yamnet_head(
    head_folder: Path,
    features: Path | None,
    out: Path,
    name: str | None,
    quants: tuple[str, ...],
    default: str | None,
    backbone_file: Path | None,
    manifest: Path,
    no_manifest: bool,
    keep_anyway: bool,
    reports: Path,
) -> None:
    """A trained YAMNet head folder (head.pt + head.json) -> TFLite float32/float16/INT8."""
    from .head_export import convert_head

    results = convert_head(
        head_folder,
        features,
        out,
        name,
        quants or ("int8", "float16", "float32"),
        manifest,
        keep_anyway,
        default,
        command=command_line(),
        reports_dir=reports,
        register_manifest=not no_manifest,
        backbone_file=backbone_file,
    )
    finish(results, keep_anyway)


cli.add_command(yamnet_head, name="head")


@cli.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Local Hugging Face HuBERT folder (HubertModel or HubertForSequenceClassification) "
    "or a fairseq .pt checkpoint.",
)
@click.option("--random-tiny", is_flag=True, help="A random-init tiny HuBERT + head (tests, demos).")
@click.option(
    "--head",
    "head_folder",
    type=click.Path(path_type=Path),
    default=None,
    help="Trained head folder on HuBERT features (folded into the ONNX graph).",
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(path_type=Path),
    default=None,
    help="eval .npz with test waveforms (test_x [m, samples], test_y, labels).",
)
@click.option("--labels", default=None, help="Comma-separated output labels (override the checkpoint's).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=HEADS_DIR,
    show_default=True,
    help="Folder for the .onnx files.",
)
@click.option("--name", default="hubert", show_default=True, help="Model name.")
@click.option(
    "--candidate",
    "candidates",
    multiple=True,
    type=click.Choice(["int8-matmul", "int8-matmul-gemm", "int8-all"]),
    help="Quantization settings to measure (repeatable; default int8-matmul, int8-all).",
)
@click.option("--make-default", is_flag=True, help="Make the INT8 model the manifest's default.")
@common_options
def hubert(
    checkpoint: Path | None,
    random_tiny: bool,
    head_folder: Path | None,
    eval_path: Path | None,
    labels: str | None,
    out: Path,
    name: str,
    candidates: tuple[str, ...],
    make_default: bool,
    manifest: Path,
    no_manifest: bool,
    keep_anyway: bool,
    reports: Path,
) -> None:
    """HuBERT (+ head) -> ONNX (opset 17, dynamic length) -> INT8 ONNX (fastest within 1 pt)."""
    from .hubert import convert_hubert

    results = convert_hubert(
        checkpoint,
        head_folder,
        out,
        name,
        eval_path,
        manifest,
        keep_anyway,
        labels.split(",") if labels else None,
        random_tiny,
        candidates,
        command=command_line(),
        reports_dir=reports,
        register_manifest=not no_manifest,
        make_default=make_default,
    )
    finish(results, keep_anyway)


@cli.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="torchvggish state_dict (.pth, e.g. vggish-10086976.pth) or TF-slim vggish_model.ckpt prefix.",
)
@click.option("--random-tiny", is_flag=True, help="A narrow random-init VGGish + head (tests, demos).")
@click.option(
    "--head",
    "head_folder",
    type=click.Path(path_type=Path),
    default=None,
    help="Trained head folder on VGGish embeddings (backbone vggish, input_dim 128).",
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(path_type=Path),
    default=None,
    help="eval .npz with 2 s test waveforms (train_x, test_x [m, 32000], test_y, labels).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=HEADS_DIR,
    show_default=True,
    help="Folder for the .tflite files.",
)
@click.option("--name", default="vggish", show_default=True, help="Model name.")
@click.option(
    "--quant",
    "quants",
    multiple=True,
    type=QUANT_CHOICES,
    help="Variants to write (repeatable; default dynamic, float16, float32).",
)
@common_options
def vggish(
    checkpoint: Path | None,
    random_tiny: bool,
    head_folder: Path | None,
    eval_path: Path | None,
    out: Path,
    name: str,
    quants: tuple[str, ...],
    manifest: Path,
    no_manifest: bool,
    keep_anyway: bool,
    reports: Path,
) -> None:
    """VGGish + head -> one TFLite file (waveform [1, 32000] in, probs out)."""
    from .vggish import convert_vggish

    results = convert_vggish(
        checkpoint,
        head_folder,
        out,
        name,
        eval_path,
        quants or ("dynamic", "float16", "float32"),
        manifest,
        keep_anyway,
        random_tiny,
        command=command_line(),
        reports_dir=reports,
        register_manifest=not no_manifest,
    )
    finish(results, keep_anyway)


@cli.command(name="logmel-cnn")
@click.argument("model_folder", type=click.Path(path_type=Path))
@click.option(
    "--features",
    type=click.Path(path_type=Path),
    default=None,
    help="eval .npz of log-mel inputs; default <model folder>/eval.npz.",
)
@click.option(
    "--builder",
    default=None,
    help="module:function building the torch module from head.json (default artefact.heads:build_head).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=HEADS_DIR,
    show_default=True,
    help="Folder for the .tflite files.",
)
@click.option("--name", default=None, help="Model name (default: the folder's name).")
@click.option(
    "--quant",
    "quants",
    multiple=True,
    type=QUANT_CHOICES,
    help="Variants to write (repeatable; default int8, float16, float32).",
)
@click.option(
    "--default",
    "default",
    type=QUANT_CHOICES,
    default=None,
    help="Make this variant the manifest's default model.",
)
@common_options
def logmel_cnn(
    model_folder: Path,
    features: Path | None,
    builder: str | None,
    out: Path,
    name: str | None,
    quants: tuple[str, ...],
    default: str | None,
    manifest: Path,
    no_manifest: bool,
    keep_anyway: bool,
    reports: Path,
) -> None:
    """A compact log-mel CNN (head.pt + head.json) -> TFLite float32/float16/INT8 (logmel in, probs out)."""
    from .logmel_cnn import convert_logmel_cnn

    results = convert_logmel_cnn(
        model_folder,
        features,
        out,
        name,
        quants or ("int8", "float16", "float32"),
        manifest,
        keep_anyway,
        builder,
        default,
        command=command_line(),
        reports_dir=reports,
        register_manifest=not no_manifest,
    )
    finish(results, keep_anyway)


cli.add_command(whisper_encoder)
cli.add_command(whisper_model)


@cli.command(name="foreground-head")
@click.option("--model", "model_id", required=True, metavar="ID", help="Entry that gets the foreground head.")
@click.option("--from", "source_id", default=None, metavar="ID",
              help="Entry whose head becomes it (a head trained with background talkers).")
@click.option("--head", "head_folder", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Or a training head folder (training run --classes foreground), exported to ONNX.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="With --head: the Whisper checkpoint of the float pipeline the daemon is checked "
              "against (default: whisper-tiny.en in ../shared/weights).")
@click.option("--windows", "n_windows", type=click.IntRange(10, 5000), default=200, show_default=True,
              help="With --head: test-speaker windows of the end-to-end check.")
@click.option("--manifest", type=click.Path(path_type=Path), default=DEFAULT_MANIFEST, show_default=True,
              help="Manifest holding the entries (rewritten in place).")
def foreground_head(model_id: str, source_id: str | None, head_folder: Path | None, checkpoint: Path | None,
                    n_windows: int, manifest: Path) -> None:
    """Give an entry a foreground head: another entry's head, or a head folder's (convert/foreground.py)."""
    from .foreground import attach, attach_head

    if (source_id is None) == (head_folder is None):
        raise UserError("give exactly one of --from ID and --head FOLDER")
    if source_id is not None:
        entry = attach(manifest, model_id, source_id)
        click.echo(f"{entry.id}: foreground head {entry.foreground_head.file} (from {source_id}) "
                   f"in {manifest}")
        return
    from edge_ser.manifest import shared_weights_dir

    from .whisper_data import test_windows

    checkpoint = checkpoint or shared_weights_dir() / "whisper-tiny.en"
    windows, source = test_windows(n_windows)
    entry, report = attach_head(manifest, model_id, head_folder, checkpoint, windows, source,
                                command=command_line())
    click.echo(f"{entry.id}: foreground head {entry.foreground_head.file} (labels "
               f"{', '.join(entry.foreground_labels)}) in {manifest}; daemon vs float pipeline on "
               f"{report['n_windows']} windows: agreement {report['agreement']:.3f}, "
               f"max difference {report['max_abs_diff']:.2g}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
