"""`python -m convert whisper-encoder` and `whisper-model`: Whisper encoders and the heads trained on
their hidden states."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from artefact import parity
from artefact.manifest import HEADS_DIR
from edge_ser.errors import UserError

from .cli_options import command_line, common_options, finish

HEAD_VARIANTS = click.Choice(["int8", "float16", "float32", "onnx-float32"])
"""Head variants of whisper-model: TFLite ones, or onnx-float32 (the entry needs only onnxruntime)."""


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


@click.command(name="whisper-encoder")
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
                            reference=reference, name=name, reports_dir=reports, command=command_line())
    click.echo(f"wrote {files.fp32}" + (f" and {files.int8} ({files.chosen})" if files.int8 else ""))
    click.echo(f"report {files.report}")
    if int8 and not files.passed:
        click.echo("error: no INT8 variant kept hidden-state parity (see the report)", err=True)
        sys.exit(1)


@click.command(name="whisper-model")
@click.argument("head_folder", type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="The Whisper checkpoint folder the head's features came from (see whisper-encoder).")
@click.option("--out", type=click.Path(path_type=Path), default=HEADS_DIR,
              show_default=True, help="Folder for the encoder .onnx and head .tflite files.")
@click.option("--name", default=None, help="Model name (default: the head folder's name).")
@click.option("--quant", "quants", multiple=True, type=HEAD_VARIANTS,
              help="Head variants to write (repeatable; default float16: next to the encoder an INT8 "
              "head saves nothing measurable). onnx-float32: the head as a float32 ONNX file, entry "
              "<name>-onnx-fp32, which runs without the TFLite runtime (lower peak memory).")
@click.option("--default", "make_default", is_flag=True,
              help="Make the first variant that passes (in --quant order) the manifest's default.")
@click.option("--keep-fp32-encoder", is_flag=True, help="Also keep the FP32 encoder (else only if < 10 MB).")
@click.option("--features", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="The head's eval .npz (default <head folder>/eval.npz; without one the head variants "
              "are checked on the float features of the --windows, unlabelled, and int8 is refused).")
@click.option("--encoder", "encoder_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Use this encoder .onnx, converted before for the same checkpoint and states (e.g. "
              "the one of an existing entry), instead of exporting one; the end-to-end check still "
              "decides.")
@_audio_options
@common_options
def whisper_model(head_folder: Path, checkpoint: Path, out: Path, name: str | None, quants: tuple[str, ...],
                  make_default: bool, keep_fp32_encoder: bool, features: Path | None,
                  encoder_file: Path | None, n_windows: int,
                  audio: tuple[Path, ...],
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
        keep_anyway, make_default, candidates, keep_fp32_encoder, command=command_line(), reports_dir=reports,
        register_manifest=not no_manifest, encoder_file=encoder_file, features=features,
    )
    finish(results, keep_anyway)
