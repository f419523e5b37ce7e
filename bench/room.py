"""Room benchmark: the streaming evaluation's test streams under the recording conditions of acoustics/.

    python -m bench room --models yamnet-mlp-allplus-int8 --languages pl --per-class 5 \\
        --conditions clean gain-20 babble10 rt60-0.6 phone --out /tmp/room.json

The streams are bench/stream_eval's (speaker-independent test speakers, runs of one emotion, pauses),
each put through every condition and then through the listen pipeline, window by window. Per model,
condition and language (and `all`, every language pooled): weighted F1 and UAR over the five classes,
UAR over the four emotions (speech windows only), and the share of `sadness` answers on windows whose
reference is not sadness (the failure mode of quiet, muffled or reverberant speech).

Babble is made of the same languages' speaker-independent test utterances of speakers who are not in
the stream (other languages' test speakers when a language has no such speaker). With `--speakers val`
streams and babble come from the validation speakers instead (bench/results/room_val.json): gate
settings are chosen there, never on the test streams.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import numpy as np
import soundfile as sf

from acoustics import conditions as conds
from bench import stream_eval
from bench.memo_model import MemoModel

RESULTS = stream_eval.RESULTS
RATE = stream_eval.RATE
BABBLE_CLIPS = 24
"""Utterances a babble track is drawn from (per language)."""


def stream_speakers(clips: list[Any], per_class: int, seed: int) -> set[str]:
    """Speakers of the utterances stream_eval.build_stream picks (the same seeded draw, no audio read)."""
    from edge_ser.labels import EMOTIONS

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Any]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.path):
        by_label[c.merged].append(c)
    speakers = set()
    for label in EMOTIONS:
        pool = by_label.get(label, [])
        speakers |= {pool[i].speaker for i in rng.permutation(len(pool))[:per_class]}
    return speakers


def babble_pool(language: str, per_class: int, seed: int, part: str = "test") -> list[Any]:
    """`part` clips of speakers not in `language`'s stream: its own language first, else the others'."""
    clips = stream_eval.speaker_clips(language, part)
    used = stream_speakers(clips, per_class, seed)
    pool = [c for c in clips if c.speaker not in used]
    if not pool:
        pool = [c for lang in stream_eval.LANGUAGES if lang != language
                for c in stream_eval.speaker_clips(lang, part)]
    return sorted(pool, key=lambda c: c.path)


def babble_clips(language: str, per_class: int, seed: int, part: str = "test") -> list[np.ndarray]:
    """BABBLE_CLIPS trimmed utterances for `language`'s babble, seeded, cached as one .npz."""
    suffix = "" if part == "test" else f"_{part}"
    path = stream_eval.CACHE / f"babble_{language}_pc{per_class}_s{seed}{suffix}.npz"
    if not path.exists():
        from training.preprocess import load_audio, trim_silence

        pool = babble_pool(language, per_class, seed, part)
        rng = np.random.default_rng(seed + 7)
        picked = [pool[i] for i in rng.permutation(len(pool))[:BABBLE_CLIPS]]
        audio = [trim_silence(load_audio(c.path)).astype(np.float32) for c in picked]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, *audio, speakers=np.array([c.speaker for c in picked]))
    with np.load(path) as z:
        return [z[k] for k in z.files if k.startswith("arr_")]


def condition_file(clean: Path, segments: list, condition: conds.Condition,
                   clips: list[np.ndarray]) -> Path:
    """The stream WAV under `condition` (cached next to the clean stream)."""
    if condition.kind == "clean":
        return clean
    out = clean.with_name(f"{clean.stem}_room_{condition.name}_s{condition.seed}.wav")
    if not out.exists():
        audio, _ = sf.read(clean, dtype="float32")
        sf.write(out, conds.apply(condition, audio, RATE, segments=segments, babble_clips=clips), RATE,
                 subtype="FLOAT")
    return out


def room_score(refs: list[str], preds: list[str]) -> dict[str, Any]:
    """stream_eval.score, plus UAR over the four emotions and the share of false `sadness` answers."""
    from sklearn.metrics import recall_score

    from edge_ser.labels import EMOTIONS

    out = stream_eval.score(refs, preds)
    emo = [i for i, r in enumerate(refs) if r in EMOTIONS]
    present = sorted({refs[i] for i in emo})
    out["uar_emotions"] = round(100 * recall_score([refs[i] for i in emo], [preds[i] for i in emo],
                                                   labels=present, average="macro", zero_division=0),
                                2) if emo else None
    other = [p for r, p in zip(refs, preds, strict=True) if r != "sadness"]
    out["sad_share"] = round(100 * sum(p == "sadness" for p in other) / len(other), 2) if other else None
    return out


def record_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What a rerun replaces: the same model, condition and gate (no background gate: 0, whether the
    model had no foreground head or the gate was off), and the foreground head the gate listened to."""
    return (r["model"], r["condition"], r.get("vad", "none"), r.get("rms_threshold"),
            r.get("floor_margin_db", 0.0), r.get("background_threshold") or 0.0, r.get("foreground_head"))


def merged(path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of `path` of (model, condition, gate) not in `new`, then `new`."""
    rerun = {record_key(r) for r in new}
    old = json.loads(path.read_text()) if path.is_file() else []
    return [r for r in old if record_key(r) not in rerun] + new


def evaluate(model: Any, model_id: str, streams: dict[str, tuple[Path, list, list[np.ndarray]]],
             conditions: list[conds.Condition], smoothing: str = "none",
             extra: dict[str, Any] | None = None, gate: Any = None,
             foreground_head: str | None = None) -> list[dict[str, Any]]:
    """One record per condition x language, and per condition with every language pooled (gate:
    GateSettings of the pipeline; None: the daemon's; foreground_head: the model's, its file)."""
    records = []
    gate = gate or stream_eval.gate_settings()
    extra = {**(extra or {}), **stream_eval.gate_record(gate, foreground_head)}
    for cond in conditions:
        pooled: tuple[list[str], list[str]] = ([], [])
        for lang, (wav, segments, clips) in streams.items():
            t0 = time.time()
            wav_in = condition_file(wav, segments, cond, clips)
            msgs = stream_eval.run_pipeline(model, wav_in, smoothing, gate)
            refs = [stream_eval.reference(segments, int(round(m["window_start"] * RATE)),
                                          int(round(m["window_s"] * RATE))) for m in msgs]
            preds = [m["label"] for m in msgs]
            pooled[0].extend(refs)
            pooled[1].extend(preds)
            rec = {"model": model_id, "language": lang, "condition": cond.name, "kind": cond.kind,
                   "smoothing": smoothing, **room_score(refs, preds), "utterances": len(segments),
                   "gated_windows": sum(m["gated"] for m in msgs), **(extra or {})}
            records.append(rec)
            click.echo(f"{model_id:28s} {lang} {cond.name:12s} wF1={rec['weighted_f1']:6.2f} "
                       f"UAR={rec['uar']:6.2f} UAR4={rec['uar_emotions']} sad={rec['sad_share']} "
                       f"n={rec['n_windows']} ({time.time() - t0:.0f} s)")
        if len(streams) > 1:
            records.append({"model": model_id, "language": "all", "condition": cond.name, "kind": cond.kind,
                            "smoothing": smoothing, **room_score(*pooled), **(extra or {})})
    return records


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", multiple=True, metavar="ID", help="Manifest id (repeatable; default: every model "
              "stream-eval scores).")
@click.option("--languages", multiple=True, type=click.Choice(list(stream_eval.LANGUAGES)),
              help="Languages (repeatable; default: all).")
@click.option("--conditions", "names", multiple=True, type=click.Choice(list(conds.CONDITIONS)),
              help="Conditions (repeatable; default: all, in chart order).")
@click.option("--per-class", type=click.IntRange(1, 1000), default=40, show_default=True,
              help="Test utterances per class and language (as stream-eval).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Stream seed.")
@click.option("--smoothing", type=click.Choice(stream_eval.SMOOTHINGS), default="none", show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Records; the chart goes next to it (.png). Default: bench/results/room.json, "
              "room_val.json for --speakers val.")
@click.option("--vad", type=click.Choice(["none", "yamnet", "silero"]), default="none", show_default=True,
              help="gate.vad of the pipeline.")
@click.option("--rms-threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="gate.rms_threshold of the pipeline (default: the daemon's).")
@click.option("--floor-margin-db", type=click.FloatRange(0.0, 30.0), default=None,
              help="gate.floor_margin_db of the pipeline (default: the daemon's; 0 = no noise-floor gate).")
@click.option("--background-threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="gate.background_threshold of the pipeline (default: the daemon's; 0 = no background "
              "gate; only models with a foreground head).")
@click.option("--speakers", type=click.Choice(stream_eval.SPEAKER_PARTS), default="test", show_default=True,
              help="Whose utterances make the streams and the babble: test speakers for the reported "
              "results, validation speakers to choose settings on.")
@click.option("--merge", is_flag=True,
              help="Keep the records of --out of (model, condition) pairs not run now.")
def main(models: tuple[str, ...], languages: tuple[str, ...], names: tuple[str, ...], per_class: int,
         seed: int, smoothing: str, threads: int, out: Path | None, vad: str, rms_threshold: float | None,
         floor_margin_db: float | None, background_threshold: float | None, speakers: str,
         merge: bool) -> None:
    """Weighted F1 / UAR of the stream evaluation's test streams under recording conditions."""
    import logging

    from bench import plots
    from edge_ser.manifest import load_manifest
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    logging.getLogger("edge_ser").setLevel(logging.WARNING)
    command = "python -m bench room " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["room"] else sys.argv[1:])
    out = out or RESULTS / ("room.json" if speakers == "test" else f"room_{speakers}.json")
    conditions = [conds.get(n) for n in (names or conds.CONDITIONS)]
    needs_babble = any(c.kind == "chain" or dict(c.parameters).get("noise") == "babble" for c in conditions)
    streams = {}
    for lang in languages or stream_eval.LANGUAGES:
        try:
            wav, segments = stream_eval.stream_files(lang, per_class, seed, speakers)
        except SystemExit as e:
            click.echo(f"skipping {lang}: {e}", err=True)
            continue
        clips = babble_clips(lang, per_class, seed, speakers) if needs_babble else []
        streams[lang] = (wav, segments, clips)
        click.echo(f"stream {lang}: {len(segments)} utterances, {sf.info(wav).frames / RATE:.0f} s, "
                   f"babble from {len(clips)} utterances")
    manifest = load_manifest()
    records = []
    for mid in models or stream_eval.default_models():
        entry = manifest.get(mid)
        files = "-".join(f.sha256[:12] for _, f in entry.files())
        model = MemoModel(load_model(ModelSettings(id=mid, threads=threads)),
                          store=stream_eval.CACHE.parent / "stream_memo" / f"{mid}-{files}.pkl")
        split = (entry.extra.get("training") or {}).get("split")
        gate = stream_eval.gate_settings(vad, rms_threshold, floor_margin_db, background_threshold)
        records += evaluate(model, mid, streams, conditions, smoothing,
                            {"per_class": per_class, "model_training_split": split, "command": command,
                             "speakers": speakers}, gate,
                            foreground_head=stream_eval.foreground_file(entry))
        model.save()
    if merge:
        records = merged(out, records)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    chart = plots.room_chart(records, out.with_suffix(".png"))
    click.echo(f"wrote {out} ({len(records)} records), {chart}")


if __name__ == "__main__":
    main()
