"""`edge-ser classify`: files through the listen pipeline, one line per window and one per file."""

from __future__ import annotations

import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from .classifier import Classifier
from .errors import AudioError
from .labels import NEUTRAL
from .message import encode, silence_probs
from .settings import Settings


def classify_files(settings: Settings, paths: tuple[str, ...], as_json: bool) -> None:
    """Print each file's windows (--json) or summary; exit 2 after the rest when a file failed."""
    from .audio.source_file import FileSource
    from .gate import Gate
    from .listen import close_model
    from .model import load_model
    from .pipeline import Pipeline
    from .publish.memory import MemoryPublisher

    # Every window gets a line, and the file mean is the smoothing: no neutral_once, no smoothing.
    settings = replace(settings, gate=replace(settings.gate, neutral_once=False),
                       smoothing=replace(settings.smoothing, method="none"),
                       output=replace(settings.output, stats_interval_s=0.0))
    files = expand_paths(paths)
    model = load_model(settings.model)
    failed = 0
    try:
        gate = Gate(settings.gate, model)  # once for every file (a Silero VAD loads once)
        for path in files:
            try:
                with closing(FileSource(path, block_s=1.0)) as source:
                    collector = MemoryPublisher()
                    Pipeline(settings, model, [collector], gate=gate).run(source)
                    damage = source.damage()
            except AudioError as e:
                click.echo(f"edge-ser: error: {e}", err=True)
                failed += 1
                continue
            summary = file_summary(path, collector.messages, model)
            summary.update(damage)
            if source.warnings:
                summary["warning"] = "; ".join(source.warnings)
            try:
                lines = [encode({"path": path, **m}) for m in collector.messages] + [encode(summary)]
            except ValueError as e:  # a non-finite number slipped through: print nothing rather than non-JSON
                click.echo(f"edge-ser: error: {path}: a result is not valid JSON ({e})", err=True)
                failed += 1
                continue
            for warning in source.warnings:
                click.echo(f"edge-ser: warning: {path}: {warning}", err=True)
            if as_json:
                for line in lines:
                    click.echo(line)
            else:
                click.echo(f"{path}\t{summary['label']}\t{summary['confidence']:.2f}\t"
                           f"{summary['speech_windows']}/{summary['windows']} speech windows")
    finally:
        close_model(model)
    if failed:
        sys.exit(2)


def expand_paths(paths: tuple[str, ...]) -> list[str]:
    """Files as given, plus the audio files under each folder (sorted); a missing path is an error."""
    from .audio.source_file import AUDIO_SUFFIXES

    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*")
                           if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise AudioError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {p}")
            out += found
        elif path.exists():
            out.append(p)
        else:
            raise AudioError(f"no such file or folder: {p}")
    return out


def file_summary(path: str, messages: list[dict[str, Any]], model: Classifier) -> dict[str, Any]:
    """The per-file line: mean window probabilities over non-silent windows."""
    speech = [m["probs"] for m in messages if not m["gated"]]
    if speech:
        probs = {k: round(sum(p[k] for p in speech) / len(speech), 4) for k in speech[0]}
        label = max(probs, key=probs.__getitem__)
    else:
        probs, label = silence_probs(model.labels), NEUTRAL
    return {"path": path, "label": label, "confidence": probs[label], "probs": probs,
            "windows": len(messages), "speech_windows": len(speech), "model": model.id}
