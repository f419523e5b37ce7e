"""Command line of the conversion toolkit (click group); bad input -> one line, exit 2."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from artefact import parity
from artefact.manifest import DEFAULT_MANIFEST, HEADS_DIR
from edge_ser.errors import UserError

QUANT_CHOICES = click.Choice(["int8", "float16", "float32", "dynamic"])


def _command() -> str:
    return "python -m convert " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _finish(results: list, keep_anyway: bool) -> None:
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


@click.group()
def cli() -> None:
    """Trained models -> TFLite / INT8 ONNX files for the daemon, with parity reports."""


def _common(f):
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
@_common
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
        command=_command(),
        reports_dir=reports,
        register_manifest=not no_manifest,
        backbone_file=backbone_file,
    )
    _finish(results, keep_anyway)


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
@_common
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
        command=_command(),
        reports_dir=reports,
        register_manifest=not no_manifest,
        make_default=make_default,
    )
    _finish(results, keep_anyway)


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
@_common
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
        command=_command(),
        reports_dir=reports,
        register_manifest=not no_manifest,
    )
    _finish(results, keep_anyway)


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
@_common
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
        command=_command(),
        reports_dir=reports,
        register_manifest=not no_manifest,
    )
    _finish(results, keep_anyway)


def _audio_options(f):
    f = click.option("--windows", "n_windows", type=click.IntRange(min=0), default=200, show_default=True,
                     help="2 s windows of real speech for the parity checks (0: skip them, FP32 only).")(f)
    f = click.option("--audio", "audio", multiple=True, type=click.Path(path_type=Path),
                     help="Audio files/folders to cut the windows from (default: test-speaker clips of "
                     "../shared/corpora, training/splits/speaker_independent.json).")(f)
    f = click.option("--candidate", "candidates", multiple=True, type=click.Choice(list(WHISPER_CANDIDATES)),
                     help="Encoder variants to measure (repeatable; default: see convert/README.md).")(f)
    return f


WHISPER_CANDIDATES = (
    "matmul-s8", "matmul-s8-fp16rest", "matmul-u8", "matmul-u8-fp16rest", "matmul-s8-perchannel",
    "matmul-s8-perchannel-rr", "matmul-s8-perchannel-rr-fp16rest", "matmul-s8-attn", "matmul-conv-s8",
    "matmul-gemm-s8", "fp16-weights", "weightonly-8bit-b32",
)
"""Names of convert.whisper_quant.CANDIDATES (listed here so --help needs no onnxruntime import)."""


def _windows(n: int, audio: tuple[Path, ...], corpora: list[str] | None = None):
    from . import whisper_data

    if n == 0:
        return None, ""
    if audio:
        return whisper_data.file_windows(list(audio), n)
    return whisper_data.test_windows(n, corpora)


@cli.command(name="whisper-encoder")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="Whisper checkpoint folder: Hugging Face (config.json + model.safetensors or "
              "pytorch_model.bin; full openai/whisper-* or encoder only) or CTranslate2 (model.bin).")
@click.option("--layers", default="all", show_default=True,
              help="Hidden states the graph returns, e.g. 2 or 1,2 (0 = conv + positions), or all.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Output .onnx (FP32); with --int8 also <out stem>-int8.onnx.")
@click.option("--int8", is_flag=True, help="Also write the best measured INT8 variant.")
@click.option("--reference", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="reference.npz (CTranslate2 encoder outputs); default <checkpoint>/reference.npz.")
@click.option("--name", default=None, help="Report name (default: the --out file's stem).")
@click.option("--reports", type=click.Path(path_type=Path), default=parity.REPORTS_DIR, show_default=True,
              help="Folder for the parity report.")
@_audio_options
def whisper_encoder(checkpoint: Path, layers: str, out: Path, int8: bool, reference: Path | None,
                    name: str | None, reports: Path, n_windows: int, audio: tuple[Path, ...],
                    candidates: tuple[str, ...]) -> None:
    """A Whisper encoder -> ONNX graph: Whisper log-mel [1, 80, frames] in, chosen hidden states out."""
    from .whisper_export import convert_encoder

    if int8 and n_windows == 0:
        raise UserError("--int8 needs --windows > 0 (INT8 parity is measured on real windows)")
    windows, source = _windows(n_windows, audio)
    files = convert_encoder(checkpoint, layers, out, windows, source, int8=int8, candidates=candidates,
                            reference=reference, name=name, reports_dir=reports, command=_command())
    click.echo(f"wrote {files.fp32}" + (f" and {files.int8} ({files.chosen})" if files.int8 else ""))
    click.echo(f"report {files.report}")
    if int8 and not files.passed:
        click.echo("error: no INT8 variant kept hidden-state parity (see the report)", err=True)
        sys.exit(1)


@cli.command(name="whisper-model")
@click.argument("head_folder", type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="The Whisper checkpoint folder the head's features came from (see whisper-encoder).")
@click.option("--out", type=click.Path(path_type=Path), default=HEADS_DIR,
              show_default=True, help="Folder for the encoder .onnx and head .tflite files.")
@click.option("--name", default=None, help="Model name (default: the head folder's name).")
@click.option("--quant", "quants", multiple=True, type=QUANT_CHOICES,
              help="Head variants to write (repeatable; default float16: next to the encoder an INT8 "
              "head saves nothing measurable).")
@click.option("--default", "make_default", is_flag=True,
              help="Make the first variant that passes (in --quant order) the manifest's default.")
@click.option("--keep-fp32-encoder", is_flag=True, help="Also keep the FP32 encoder (else only if < 10 MB).")
@_audio_options
@_common
def whisper_model(head_folder: Path, checkpoint: Path, out: Path, name: str | None, quants: tuple[str, ...],
                  make_default: bool, keep_fp32_encoder: bool, n_windows: int, audio: tuple[Path, ...],
                  candidates: tuple[str, ...], manifest: Path, no_manifest: bool, keep_anyway: bool,
                  reports: Path) -> None:
    """A head trained on Whisper states (head.json pooling "mean_std@2") -> encoder + head + entries."""
    from .whisper_model import convert_whisper_model, read_whisper_head

    spec, _, _ = read_whisper_head(head_folder)
    if n_windows == 0:
        raise UserError("--windows must be > 0: the entry is checked end to end on real windows")
    corpora = [c.strip() for c in str(spec.get("data", "")).split(",") if c.strip()] or None
    windows, source = _windows(n_windows, audio, corpora)
    results = convert_whisper_model(
        head_folder, checkpoint, windows, source, out, name, quants or ("float16",), manifest,
        keep_anyway, make_default, candidates, keep_fp32_encoder, command=_command(), reports_dir=reports,
        register_manifest=not no_manifest,
    )
    _finish(results, keep_anyway)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
