"""Command line of the training pipeline (click group)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click
import numpy as np

from edge_ser.errors import UserError
from training import loaders
from training.command import command_line
from training.finetune.cli import finetune


def _scene(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--scene: families of room copies (training.scenes.SCENES) joined by `+`, each once, in SCENES order."""
    from training.scenes import SCENES

    families = value.split("+")
    if not set(families) <= set(SCENES) or len(set(families)) != len(families):
        raise click.BadParameter(f"{value!r}: give families of {', '.join(SCENES)} joined by +, each once")
    return "+".join(f for f in SCENES if f in families)


def room_options(command):
    """--room and --scene of `run` and `loco`: which room copies (training.scenes) join the training clips."""
    command = click.option("--scene", callback=_scene, default="room", show_default=True,
                           help="Which room copies --room adds: roomN (pink/household noise), babbleN (or "
                           "babble), talkN (babble behind every copy), livingN (talk copies, always "
                           "reverberant), joined by +.")(command)
    room = click.option("--room", default=0, show_default=True, type=click.IntRange(0, 8),
                        help="Room copies per training clip (cache variants room1..N, training.scenes).")
    return room(command)


@click.group()
def cli() -> None:
    """Corpora -> embedding cache -> heads -> reports."""


@cli.command()
@click.option("--corpora", default="all+", show_default=True, help="Comma-separated corpora or sets.")
@click.option("--variant", default="base", show_default=True,
              help="base, augN for augmented copy N, roomN for copy N heard in a room, babbleN for such a "
              "copy with babble among its noises, talkN with babble behind it, livingN with babble behind "
              "it in a reverberant room (training.scenes).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="Corpora root.")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Cache folder.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 4),
              help="Backbone runtime threads.")
@click.option("--encoder", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Extract Whisper hidden states with this encoder graph (every state, FP32; from "
              "`python -m convert whisper-encoder --layers all`) instead of YAMNet embeddings.")
@click.option("--backbone-name", default="whisper-tiny.en", show_default=True,
              help="With --encoder: the cache's backbone name (its folder in the cache root).")
@click.option("--window-level", type=click.Choice(["raw", "speech"]), default="raw", show_default=True,
              help="speech = level-normalise each window on its speech frames (edge_ser.speech_level) for "
              "models with window_level: speech; with --encoder add speech-frame rows, with YAMNet mark "
              "the speech frames (keep.npy) that every pooling of the cache then reads.")
@click.option("--states", default=None, metavar="K,J",
              help="With --encoder: the encoder's hidden-state numbers in output order, when it returns "
              "only some (`convert whisper-encoder --layers 2,3` -> 2,3); default: every state from 0.")
@click.option("--max-clips", type=click.IntRange(1, 1_000_000), default=None,
              help="At most this many clips per corpus, a seeded draw (e.g. for room copies of a subset).")
@click.option("--per-class", type=click.IntRange(1, 1_000_000), default=None,
              help="At most this many clips per corpus and merged class (loaders.per_class_subset).")
@click.option("--egemaps", is_flag=True,
              help="openSMILE eGeMAPSv02 functionals (88 per window, training.egemaps) instead of YAMNet.")
def extract(corpora: str, variant: str, root: Path | None, cache: Path | None, threads: int,
            encoder: Path | None, backbone_name: str, window_level: str, states: str | None,
            max_clips: int | None, per_class: int | None, egemaps: bool) -> None:
    """Compute (or resume) backbone features of every clip, per 2 s window."""
    from training import features

    cache = cache or features.DEFAULT_CACHE
    if egemaps:
        if encoder is not None:
            raise UserError("give --egemaps or --encoder, not both")
        from training import egemaps as egm

        model = egm.Egemaps()
        egm.mark_cache(cache, model.names)
    elif encoder is not None:
        from training.whisper_states import WhisperStates, mark_cache

        model = WhisperStates(encoder, threads=threads, window_level=window_level)
        try:
            numbers = tuple(int(k) for k in states.split(",")) if states else None
        except ValueError:
            raise click.BadParameter(f"expected state numbers like 2,3, got {states!r}",
                                     param_hint="--states") from None
        mark_cache(cache, backbone_name, encoder, window_level, numbers)
    else:
        if features.backbone_of(cache) != "yamnet":
            raise UserError(f"{cache} holds {features.backbone_of(cache)} features; give --encoder or "
                            "another --cache")
        model = features.Yamnet(num_threads=threads)
        if window_level == "speech" or features.cache_layout(cache):
            weights = features.YAMNET.relative_to(features.REPO.parent)
            features.mark_cache(cache, "yamnet", weights, window_level,
                                rows=features.YAMNET_SPEECH_ROWS if window_level == "speech" else "")
        if window_level == "speech":
            model = features.SpeechLevel(model)
    for c in loaders.expand(corpora.split(","), root):
        clips = loaders.load_corpus(c, root)
        if max_clips is not None and len(clips) > max_clips:
            clips = sorted(clips, key=lambda k: k.path)
            clips = [clips[i] for i in sorted(np.random.default_rng(0).permutation(len(clips))[:max_clips])]
        if per_class is not None:
            clips = loaders.per_class_subset(clips, per_class)
        out = features.extract(clips, c, variant, cache, model=model)
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


@cli.command()
@click.option("--protocol", type=click.Choice(["paper", "speaker_independent", "cross_corpus"]),
              required=True)
@click.option("--corpus", "corpus", required=True, help="Corpus or set (english, bengali, all, all+), "
              "comma-separated for several; for cross_corpus the training pool.")
@click.option("--heldout", default=None, help="cross_corpus: the corpus left out (tested on).")
@click.option("--classes", type=click.Choice(["original", "merged", "foreground"]), default="merged",
              show_default=True, help="foreground: a binary head (foreground, neutral) that hears whether "
              "someone near the microphone talks, from the pauses of --room copies (a foreground head, "
              "convert foreground-head --head).")
@click.option("--arch", type=click.Choice(["mlp", "linear", "wsum", "attn", "logreg"]), default="mlp",
              show_default=True, help="logreg = the reference probe (clip mean+max, sklearn).")
@click.option("--pooling", default="mean", show_default=True, help="edge_ser pooling, or frames (attn).")
@click.option("--augment", default=0, show_default=True, help="Augmented copies per training clip.")
@room_options
@click.option("--grid", type=click.Choice(["full", "small", "one"]), default="full", show_default=True)
@click.option("--corpus-power", default=0.0, show_default=True,
              help="Down-weight big corpora by size^-p when sampling (0 = class balancing only).")
@click.option("--norm", type=click.Choice(["global", "corpus"]), default="global", show_default=True,
              help="Standardise all training data at once, or each corpus by its own statistics.")
@click.option("--name", default=None, help="Model name in the records (default yamnet+<arch>).")
@click.option("--save-head", type=click.Path(path_type=Path), default=None, help="Write head.pt/head.json.")
@click.option("--plots", type=click.Path(path_type=Path), default=None, help="Confusion-matrix PNG path.")
@click.option("--no-record", is_flag=True, help="Do not store the result in cache/results.")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Embedding cache root (default cache/; e.g. fine-tuned embeddings from "
              "`python -m training finetune embed`).")
@click.option("--fuse", default=None, metavar="CACHE:POOLING",
              help="Append each window's pooled row from a second cache of the same clips and windows "
              "(e.g. cache/yamnet-speech:mean) to its row from --cache: a head on fused features.")
@click.option("--per-class", type=click.IntRange(1, 1_000_000), default=None,
              help="Only a seeded subset: at most this many clips per corpus and merged class.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 999),
              help="Seed of the head's initialisation and batch order (splits and subsets stay fixed).")
@click.option("--save-probs", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write the test and validation probabilities to DIR/<corpus>.npz, for `ensemble` "
              "(single-fold protocols only).")
def run(protocol: str, corpus: str, heldout: str | None, classes: str, arch: str, pooling: str,
        augment: int, room: int, grid: str, corpus_power: float, norm: str, name: str | None,
        save_head: Path | None, plots: Path | None, no_record: bool, cache: Path | None,
        fuse: str | None, per_class: int | None, seed: int, scene: str, save_probs: Path | None) -> None:
    """Train (grid on validation) and test one head under a protocol; prints and records metrics."""
    from training import ensemble, report, runner
    from training.dataset import Fuse

    name = name or f"yamnet+{arch}" + (f"+aug{augment}" if augment else "")
    folds = runner.n_folds(protocol, corpus)
    if save_probs and folds > 1:
        raise UserError(f"--save-probs needs a single-fold protocol; {protocol} on {corpus} has "
                        f"{folds} folds")
    rec, results = runner.run_protocol(protocol, corpus, heldout, classes, arch, pooling, augment, grid,
                                       corpus_power, name, command_line(), save_head, plots, cache=cache,
                                       norm=norm, room=room, fuse=Fuse.parse(fuse) if fuse else None,
                                       per_class=per_class, seed=seed, scene=scene)
    click.echo(json.dumps({k: rec[k] for k in ("model", "protocol", "corpus", "classes", "accuracy",
                                              "macro_f1", "uar", "n_test")} | {"uar4": rec.get("uar4")}))
    for how, m in rec.get("adaptation", {}).items():
        click.echo(f"  adaptation {how}: uar4 {m['uar4']:.3f} accuracy {m['accuracy']:.3f}")
    if save_probs:
        ensemble.save_fold(save_probs, rec, results[0], ensemble.features_of(cache, pooling, fuse))
    if not no_record:
        report.append_record(rec)


@cli.command()
@click.option("--corpus", default="all+", show_default=True, help="The set whose corpora take turns.")
@click.option("--heldout", "heldouts", multiple=True,
              help="Only these held-out corpora (repeatable; default: every corpus of the set).")
@click.option("--arch", type=click.Choice(["mlp", "linear", "wsum"]), default="linear", show_default=True)
@click.option("--pooling", default="mean", show_default=True,
              help="edge_ser pooling, or method@states for a hidden-state cache (mean_std@2).")
@click.option("--grid", type=click.Choice(["full", "small", "one"]), default="one", show_default=True)
@click.option("--norm", type=click.Choice(["global", "corpus"]), default="global", show_default=True)
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Feature cache root.")
@room_options
@click.option("--per-class", type=click.IntRange(1, 1_000_000), default=None,
              help="Only a seeded subset: at most this many clips per corpus and merged class.")
@click.option("--name", required=True, help="Model name in the records.")
@click.option("--fuse", default=None, metavar="CACHE:POOLING",
              help="Append each window's pooled row from a second cache of the same clips and windows "
              "(e.g. cache/yamnet-speech:mean) to its row from --cache: a head on fused features.")
@click.option("--save-probs", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write each fold's probabilities to DIR/<held-out>.npz, for `ensemble`.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 999),
              help="Seed of the head's initialisation and batch order (splits and subsets stay fixed).")
def loco(corpus: str, heldouts: tuple[str, ...], arch: str, pooling: str, grid: str, norm: str,
         cache: Path | None, room: int, per_class: int | None, name: str, fuse: str | None,
         save_probs: Path | None, seed: int, scene: str) -> None:
    """Leave-one-corpus-out: train on the other corpora, test on each one in turn, record every fold.

    With --seed N > 0 the rows are recorded as `<name> seed N` (training.report.seed_spread)."""
    from training import ensemble, report, runner
    from training.dataset import Fuse

    members = heldouts or tuple(loaders.expand(corpus.split(","), None))
    fused = Fuse.parse(fuse) if fuse else None
    scores = {}
    for held in members:
        options = (f"--corpus {corpus} --heldout {held} --arch {arch} --pooling {pooling} --grid {grid} "
                   f"--norm {norm} --name {shlex.quote(name)}" + (f" --cache {cache}" if cache else "")
                   + (f" --room {room}" if room else "") + (f" --scene {scene}" if scene != "room" else "")
                   + (f" --fuse {shlex.quote(fuse)}" if fuse else "")
                   + (f" --per-class {per_class}" if per_class else "") + (f" --seed {seed}" if seed else ""))
        command = (f"python -m training loco {options} --save-probs {save_probs}" if save_probs
                   else f"python -m training run --protocol cross_corpus {options}")
        rec, results = runner.run_protocol("cross_corpus", corpus, held, "merged", arch, pooling, 0, grid,
                                           0.0, name, command, cache=cache, norm=norm, room=room, fuse=fused,
                                           per_class=per_class, seed=seed, scene=scene)
        report.append_record(rec)
        if save_probs:
            ensemble.save_fold(save_probs, rec, results[0], ensemble.features_of(cache, pooling, fuse))
        scores[held] = rec["uar"]
        click.echo(f"{rec['model']} held out {held}: UAR4 {rec['uar']:.3f}")
    _echo_loco_mean(rec["model"], scores)


def _echo_loco_mean(name: str, scores: dict[str, float]) -> None:
    """The summary line of LOCO folds: mean and worst UAR4 over the held-out corpora."""
    vals = list(scores.values())
    click.echo(f"{name}: LOCO mean UAR4 {sum(vals) / len(vals):.3f}, min {min(vals):.3f} "
               f"({len(vals)} held-out corpora)")


@cli.command(name="ensemble")
@click.option("--probs", "folders", multiple=True, required=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="A member's fold probabilities (`loco --save-probs DIR` or `run --save-probs DIR`); "
              "repeat for every member.")
@click.option("--name", required=True, help="Model name of the ensemble in the records.")
@click.option("--head", "heads", multiple=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="With --save-head: each member's head folder (`run --save-head`), in --probs order.")
@click.option("--save-head", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the members' heads as one ensemble head folder (members of one single-fold run "
              "each, reading the same features).")
def ensemble_cmd(folders: tuple[Path, ...], name: str, heads: tuple[Path, ...],
                 save_head: Path | None) -> None:
    """Rows of an ensemble (LOCO, or a single-fold protocol): the members' class probabilities averaged
    clip by clip."""
    from training import ensemble, report

    scores = {}
    corpora = ensemble.heldouts(list(folders))
    if save_head and len(corpora) != 1:
        raise UserError(f"--save-head takes members of one single-fold run; {folders[0]} has {len(corpora)}")
    for held in corpora:
        rec = ensemble.average_fold(list(folders), held, name, command_line())
        if save_head:
            ensemble.save_head(list(heads), list(folders), rec, save_head)
            click.echo(f"wrote {save_head}")
        report.append_record(rec)
        scores[held] = rec["uar"]
        click.echo(f"{name} {rec['protocol']} {held}: UAR{'4' if rec['protocol'] == 'cross_corpus' else ''} "
                   f"{rec['uar']:.3f}")
    if len(scores) > 1:
        _echo_loco_mean(name, scores)


@cli.command("egemaps-cost")
@click.option("--windows", "n_windows", default=50, show_default=True, type=click.IntRange(2, 10_000))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Default bench/results/egemaps_cost.json.")
def egemaps_cost(n_windows: int, out: Path | None) -> None:
    """Time eGeMAPS functionals per 2 s window (one thread) for the cost note of the accuracy report."""
    from training import egemaps, report

    rec = egemaps.measure_cost(n_windows) | {"command": command_line()}
    out = out or report.EGEMAPS_COST
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    click.echo(json.dumps(rec))


@cli.command(name="report")
def report_cmd() -> None:
    """Write bench/results/accuracy.json and bench/ACCURACY.md from the recorded results."""
    from training import report

    paths = report.write_report()
    click.echo("wrote " + ", ".join(str(p) for p in paths))


@cli.command()
@click.argument("head_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--name", required=True, help="Model name: models/heads/<name>/ and the manifest id.")
@click.option("--onnx", is_flag=True,
              help="Also export models/heads/<name>.onnx and upsert its manifest entry.")
@click.option("--default", "make_default", is_flag=True, help="Make the ONNX entry the manifest default.")
def ship(head_dir: Path, name: str, onnx: bool, make_default: bool) -> None:
    """Copy a trained head into models/heads/<name>/ (+ adaptation reference, optional ONNX entry)."""
    from training import report
    from training import ship as sh

    dst = sh.ship_folder(head_dir, name)
    click.echo(f"head folder: {dst}")
    rec_file = Path(head_dir) / "record.json"
    if rec_file.is_file():  # mark the head's result row as the shipped model in the report
        rec = json.loads(rec_file.read_text())
        key = tuple(rec[k] for k in report.KEY)
        for r in report.load_records():
            if tuple(r[k] for k in report.KEY) == key:
                report.append_record(dict(r, shipped=name))
    if onnx:
        out = sh.export_onnx(head_dir, sh.MODELS / "heads" / f"{name}.onnx")
        from artefact.heads import load_head

        spec, _ = load_head(head_dir)
        sh.register_onnx(out, name, spec, make_default)
        click.echo(f"onnx: {out} (manifest entry {name}{', default' if make_default else ''})")


@cli.group("logmel-cnn")
def logmel_cnn() -> None:
    """A compact CNN trained from scratch on the daemon's log-mel (training/logmel_cnn.py)."""


@logmel_cnn.command("cache")
@click.option("--corpora", default="all+", show_default=True)
@click.option("--root", type=click.Path(path_type=Path), default=None)
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Default cache/logmel.")
@click.option("--limit", type=int, default=0, help="At most N clips per (corpus, label) (tests).")
def logmel_cache(corpora: str, root: Path | None, cache: Path | None, limit: int) -> None:
    """Log-mel of every 2 s window of every clip (resumable)."""
    from training import logmel_cnn as cnn

    click.echo(cnn.build_cache(corpora, root, cache or cnn.DEFAULT_CACHE, limit))


@logmel_cnn.command("train")
@click.option("--protocol", type=click.Choice(["paper", "speaker_independent", "cross_corpus"]),
              required=True)
@click.option("--corpus", required=True)
@click.option("--heldout", default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--root", type=click.Path(path_type=Path), default=None)
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Default cache/logmel.")
@click.option("--epochs", type=int, default=12, show_default=True)
@click.option("--patience", type=int, default=4, show_default=True)
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--max-steps", type=int, default=0, help="Cap steps per epoch (tests).")
@click.option("--seed", type=int, default=0)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--no-record", is_flag=True, help="Do not add the result to accuracy.json.")
def logmel_train(cache: Path | None, **options) -> None:
    """One training run (resumes from its folder)."""
    from training import logmel_cnn as cnn

    rec = cnn.train(cnn.CnnTrainOptions(cache=cache or cnn.DEFAULT_CACHE, command=command_line(), **options))
    keys = ("model", "protocol", "corpus", "accuracy", "macro_f1", "uar", "n_test")
    click.echo(json.dumps({k: rec[k] for k in keys}))


@cli.command("yamnet-parity")
@click.option("--files", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0)
@click.option("--tflite", type=click.Path(path_type=Path), default=None,
              help="Default ../shared/weights/yamnet/yamnet.tflite.")
@click.option("--out", type=click.Path(path_type=Path), default=None)
def yamnet_parity(files: int, seed: int, tflite: Path | None, out: Path | None) -> None:
    """How faithfully training/yamnet_model.py rebuilds yamnet.tflite on real corpus files."""
    import time

    from training import yamnet_parity as yp

    start = time.time()
    report = yp.compare(yp.sample_files(files, seed), tflite or yp.DEFAULT_TFLITE)
    report["command"] = command_line()
    report["seconds"] = round(time.time() - start, 1)
    text = json.dumps(report, indent=2)
    click.echo(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


cli.add_command(finetune)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
