"""Streaming evaluation: long streams of held-out test utterances through the listen pipeline.

    nice -n 5 python3 -m bench.stream_eval                   # every trained model, all languages/SNRs
    python3 -m bench.stream_eval --models yamnet-dev --languages en --snrs clean --per-class 5

What the paper did with its live system (long clips labelled every 2 s, weighted F1 58.77 %), rebuilt
from data no model saw in training:

1. Test utterances: the speaker-independent test speakers of training/splits/speaker_independent.json
   (fold 0), the four merged classes only, `--per-class` utterances per class and language (seeded).
2. Stream: utterances silence-trimmed at 25 dB (training/preprocess.py), grouped in runs of 1-3 of the
   same emotion (people stay in a mood for a while; that is what smoothing is for), separated by
   pauses of 0.3-3.0 s, one WAV per language, 16 kHz.
3. Noise: pink (1/f) noise over the whole stream, pauses included, at an SNR measured against the
   power of the speech samples; `clean` adds none.
4. Pipeline: edge_ser.pipeline.Pipeline with a FileSource over the WAV, i.e. exactly
   `edge-ser listen --input stream.wav` (default gate RMS 0.01, 2 s windows, 1 s hop), except that
   every silent window is published (gate.neutral_once off) so each window gets a score.
   Smoothing none / ema / majority: the same pipeline again; window predictions are memoised by
   window content, so the model runs once per distinct window.
5. Reference of a window: the label of the speech it covers most; a window with under 0.5 s of speech
   is `neutral` (pause). Scores over five classes (the four emotions + neutral): weighted F1 and UAR
   (unweighted average recall over the classes present), per model, language, SNR and smoothing.

Writes bench/results/stream.json (records {"model", "language", "snr_db", "smoothing", "weighted_f1",
"uar", "n_windows", ...}; snr_db null = clean) and bench/results/stream_confusion.json.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import soundfile as sf

from bench.memo_model import MemoModel
from bench.options import run
from edge_ser.audio import MODEL_RATE as RATE

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CACHE = REPO / "cache" / "bench" / "streams"
LANGUAGES = {"en": ("tess", "ravdess", "savee", "crema-d"), "bn": ("banglaser", "subesco"),
             "pl": ("nemo",), "tr": ("turev-db",), "am": ("ased",)}
"""Language -> corpora (as training/loaders.py names them)."""
SNRS: tuple[float | None, ...] = (None, 20.0, 10.0, 0.0)
"""None = clean."""
MIN_SPEECH_S = 0.5
"""A window with less speech than this is a pause: reference label neutral."""
SMOOTHINGS = ("none", "ema", "majority")


# -- streams -------------------------------------------------------------------------------------------

SPEAKER_PARTS = ("test", "val")
"""Whose utterances make the streams: the speaker-independent test speakers (every reported number)
or the validation speakers (where gate settings are chosen, so the test streams stay unseen)."""


def speaker_clips(language: str, part: str = "test") -> list[Any]:
    """Merged-label clips of the speaker-independent `part` speakers (test or val) of one language."""
    from edge_ser.labels import EMOTIONS
    from training.loaders import default_corpora_root, expand, load_set
    from training.splits import protocol_split

    root = default_corpora_root()
    corpora = expand(LANGUAGES[language], root)
    clips = [c for c in load_set(corpora, root) if c.merged in EMOTIONS]
    split = protocol_split("speaker_independent", corpora, clips, root, fold=0)
    return [c for c in clips if split.get(c.path) == part]


Segments = list[tuple[int, int, str]]
"""Speech segments of a stream: (start sample, end sample, merged label)."""


def build_stream(clips: list[Any], per_class: int, seed: int) -> tuple[np.ndarray, Segments]:
    """(16 kHz float32 audio, [(start, end, label)] speech segments) of one language's stream."""
    from edge_ser.labels import EMOTIONS
    from training.preprocess import load_audio, trim_silence

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Any]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.path):
        by_label[c.merged].append(c)
    picked: dict[str, list[Any]] = {}
    for label in EMOTIONS:
        pool = by_label.get(label, [])
        idx = rng.permutation(len(pool))[:per_class]
        picked[label] = [pool[i] for i in idx]
    # runs of 1-3 utterances of one emotion, runs in random order
    runs: list[list[Any]] = []
    for items in picked.values():
        i = 0
        while i < len(items):
            k = int(rng.integers(1, 4))
            runs.append(items[i:i + k])
            i += k
    order = rng.permutation(len(runs))
    parts: list[np.ndarray] = [np.zeros(int(RATE * 1.0), np.float32)]
    segments: list[tuple[int, int, str]] = []
    pos = len(parts[0])
    for r in order:
        for clip in runs[r]:
            speech = trim_silence(load_audio(clip.path))
            if speech.size < RATE // 10:
                continue
            segments.append((pos, pos + speech.size, clip.merged))
            parts.append(speech.astype(np.float32))
            pos += speech.size
            pause = np.zeros(int(RATE * rng.uniform(0.3, 3.0)), np.float32)
            parts.append(pause)
            pos += pause.size
    return np.concatenate(parts), segments


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise (white noise shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / RATE)
    spec /= np.sqrt(np.maximum(f, 20.0))
    x = np.fft.irfft(spec, n)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def add_noise(audio: np.ndarray, segments: list[tuple[int, int, str]], snr_db: float | None,
              seed: int) -> np.ndarray:
    """Noise at `snr_db` relative to the mean power of the speech samples (None = unchanged)."""
    if snr_db is None:
        return audio
    speech_power = np.mean(np.concatenate([audio[a:b] for a, b, _ in segments]).astype(np.float64) ** 2)
    noise = pink_noise(audio.size, np.random.default_rng(seed))
    out = audio + noise * np.sqrt(speech_power / 10 ** (snr_db / 10))
    peak = float(np.max(np.abs(out)))
    return (out / peak * 0.99 if peak > 0.99 else out).astype(np.float32)


def reference(segments: list[tuple[int, int, str]], start: int, length: int) -> str:
    """Label of the speech a window covers most; neutral under MIN_SPEECH_S of speech."""
    from edge_ser.labels import NEUTRAL

    cover: Counter[str] = Counter()
    end = start + length
    for a, b, label in segments:
        overlap = min(b, end) - max(a, start)
        if overlap > 0:
            cover[label] += overlap
    if sum(cover.values()) < MIN_SPEECH_S * RATE:
        return NEUTRAL
    return cover.most_common(1)[0][0]


def stream_files(language: str, per_class: int, seed: int,
                 part: str = "test") -> tuple[Path, list[tuple[int, int, str]]]:
    """Cached clean stream WAV + its segments for a language (from `part`'s speakers)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = CACHE / (f"{language}_pc{per_class}_s{seed}" + ("" if part == "test" else f"_{part}"))
    wav, seg = stem.with_suffix(".wav"), stem.with_suffix(".json")
    if not (wav.exists() and seg.exists()):
        clips = speaker_clips(language, part)
        if not clips:
            raise SystemExit(f"no {part} clips for language {language}")
        audio, segments = build_stream(clips, per_class, seed)
        sf.write(wav, audio, RATE, subtype="FLOAT")
        seg.write_text(json.dumps({"segments": segments,
                                   "clips": len(segments), "speakers": sorted({c.speaker for c in clips})}))
    return wav, [tuple(s) for s in json.loads(seg.read_text())["segments"]]


def noisy_file(language: str, clean: Path, segments: list, snr_db: float | None, seed: int) -> Path:
    if snr_db is None:
        return clean
    out = clean.with_name(f"{clean.stem}_snr{snr_db:g}.wav")
    if not out.exists():
        audio, _ = sf.read(clean, dtype="float32")
        sf.write(out, add_noise(audio, segments, snr_db, seed + 1000), RATE, subtype="FLOAT")
    return out


# -- pipeline -----------------------------------------------------------------------------------------

def gate_settings(vad: str = "none", rms_threshold: float | None = None,
                  floor_margin_db: float | None = None, background_threshold: float | None = None) -> Any:
    """The gate of a benchmark run: the daemon's, every silent window published, with this VAD, RMS
    threshold, noise-floor margin and background threshold (None: the daemon's default). Records say
    which gate they used."""
    from edge_ser.settings import GateSettings

    given = {"rms_threshold": rms_threshold, "floor_margin_db": floor_margin_db,
             "background_threshold": background_threshold}
    return GateSettings(neutral_once=False, vad=vad, **{k: v for k, v in given.items() if v is not None})


def foreground_file(entry: Any) -> str | None:
    """The foreground head file a manifest entry names (None: it has none), for gate_record."""
    return entry.foreground_head.file if entry.foreground_head else None


def gate_record(gate: Any, foreground_head: str | None = None) -> dict[str, Any]:
    """The gate fields a stream or room record carries. foreground_head: the model's foreground head
    file (None: it has none, and `background_threshold` does nothing: None); it is recorded while the
    background gate is on."""
    background = gate.background_threshold if foreground_head else None
    return {"vad": gate.vad, "rms_threshold": gate.rms_threshold, "floor_margin_db": gate.floor_margin_db,
            "background_threshold": background, "foreground_head": foreground_head if background else None}


def run_pipeline(model: Any, wav: Path, smoothing: str, gate: Any = None) -> list[dict[str, Any]]:
    """Every window's result message for `wav`, as `edge-ser listen --input wav` computes it
    (gate: GateSettings; None: gate_settings(), the daemon's)."""
    from edge_ser.audio.source_file import FileSource
    from edge_ser.pipeline import Pipeline
    from edge_ser.publish.memory import MemoryPublisher
    from edge_ser.settings import OutputSettings, Settings, SmoothingSettings

    settings = Settings(gate=gate or gate_settings(),
                        smoothing=SmoothingSettings(method=smoothing),
                        output=OutputSettings(stats_interval_s=0))
    sink = MemoryPublisher()
    with closing(FileSource(wav)) as source:
        Pipeline(settings, model, [sink]).run(source)
    return sink.messages


def score(refs: list[str], preds: list[str]) -> dict[str, Any]:
    """wF1 and UAR over every window (5 classes), and the same over speech windows only."""
    from sklearn.metrics import f1_score, recall_score

    from edge_ser.labels import EMOTIONS, NEUTRAL

    present = sorted(set(refs))
    speech = [i for i, r in enumerate(refs) if r != NEUTRAL]
    sr, sp = [refs[i] for i in speech], [preds[i] for i in speech]
    speech_scores = {
        # windows whose reference is an emotion; a `neutral` answer there counts as a miss
        "weighted_f1_speech": round(100 * f1_score(sr, sp, labels=sorted(set(sr)), average="weighted",
                                                   zero_division=0), 2) if sr else None,
        "uar_speech": round(100 * recall_score(sr, sp, labels=sorted(set(sr)), average="macro",
                                               zero_division=0), 2) if sr else None,
        "n_speech_windows": len(sr),
    }
    return {"weighted_f1": round(100 * f1_score(refs, preds, average="weighted", zero_division=0), 2),
            "uar": round(100 * recall_score(refs, preds, labels=present, average="macro",
                                            zero_division=0), 2),
            "accuracy": round(100 * float(np.mean(np.array(refs) == np.array(preds))), 2),
            "n_windows": len(refs),
            **speech_scores,
            "labels": [*EMOTIONS, NEUTRAL]}


def confusion(refs: list[str], preds: list[str]) -> list[list[int]]:
    from edge_ser.labels import EMOTIONS, NEUTRAL

    names = [*EMOTIONS, NEUTRAL]
    m = np.zeros((len(names), len(names)), int)
    for r, p in zip(refs, preds, strict=True):
        m[names.index(r), names.index(p) if p in names else names.index(NEUTRAL)] += 1
    return m.tolist()


def default_models() -> list[str]:
    """Manifest models that can be scored on real audio (not random-weight latency stand-ins)."""
    from edge_ser.manifest import load_manifest

    return [mid for mid in load_manifest().models if "random" not in mid]


def merged(path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of `path` whose model is not in `new`, then `new`: one model rerun, the others kept."""
    rerun = {r["model"] for r in new}
    old = json.loads(path.read_text()) if path.is_file() else []
    return [r for r in old if r["model"] not in rerun] + new


@dataclass(frozen=True)
class StreamOptions:
    """What one streaming evaluation scores (the options of `python -m bench stream-eval`)."""

    models: tuple[str, ...] = ()
    """Manifest ids (empty: every manifest model)."""
    languages: tuple[str, ...] = tuple(LANGUAGES)
    """Languages whose test speakers make the streams."""
    snrs: tuple[str, ...] = ("clean", "20", "10", "0")
    """Noise levels: `clean` or an SNR in dB."""
    smoothing: tuple[str, ...] = SMOOTHINGS
    """smoothing.method settings to score."""
    vad: tuple[str, ...] = ("none",)
    """gate.vad settings to score (yamnet: AudioSet Speech score, free on YAMNet models)."""
    per_class: int = 40
    """Test utterances per class and language."""
    seed: int = 0
    threads: int = 1
    out: str = str(RESULTS / "stream.json")
    """Where the records go."""
    merge: bool = False
    """Keep the records of `out` (and its confusions) of the models not run now."""
    command: str = ""
    """The command line, recorded in each record."""


@click.command(help=__doc__.splitlines()[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--models", multiple=True, metavar="ID...",
              help="Manifest ids (default: every manifest model).")
@click.option("--languages", multiple=True, default=StreamOptions.languages, show_default=True,
              metavar="LANG...")
@click.option("--snrs", multiple=True, default=StreamOptions.snrs, show_default=True, metavar="clean|DB...")
@click.option("--smoothing", multiple=True, default=StreamOptions.smoothing, show_default=True,
              metavar="METHOD...")
@click.option("--vad", multiple=True, default=StreamOptions.vad, show_default=True,
              type=click.Choice(["none", "yamnet"]),
              help="gate.vad settings to score (yamnet: AudioSet Speech score, free on YAMNet models).")
@click.option("--per-class", type=int, default=StreamOptions.per_class, show_default=True,
              help="Test utterances per class and language.")
@click.option("--seed", type=int, default=StreamOptions.seed, show_default=True)
@click.option("--threads", type=int, default=StreamOptions.threads, show_default=True)
@click.option("--out", default=StreamOptions.out, show_default=True)
@click.option("--merge", is_flag=True,
              help="Keep the records of --out (and its confusions) of the models not run now.")
def command(**options: Any) -> int:
    argv = click.get_current_context().obj or ()
    return evaluate(StreamOptions(**options, command="python3 -m bench.stream_eval " + " ".join(argv)))


def main(argv: list[str] | None = None) -> int:
    """`python -m bench stream-eval ARGS` and `python -m bench.stream_eval ARGS`."""
    return run(command, argv, "python -m bench stream-eval",
               "--models", "--languages", "--snrs", "--smoothing", "--vad")


def evaluate(args: StreamOptions) -> int:
    """Score every model x language x noise x smoothing x vad; writes args.out and its confusions."""
    command = args.command
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("edge_ser").setLevel(logging.WARNING)

    from edge_ser.labels import EMOTIONS
    from edge_ser.manifest import load_manifest
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    manifest = load_manifest()
    snrs = [None if s == "clean" else float(s) for s in args.snrs]
    streams = {}
    for lang in args.languages:
        if lang not in LANGUAGES:
            raise SystemExit(f"unknown language {lang}; expected one of {', '.join(LANGUAGES)}")
        try:
            wav, segments = stream_files(lang, args.per_class, args.seed)
        except SystemExit as e:
            print(f"skipping {lang}: {e}", file=sys.stderr)
            continue
        meta = json.loads(wav.with_suffix(".json").read_text())
        streams[lang] = (wav, segments, meta)
        n = sf.info(wav).frames / RATE
        print(f"stream {lang}: {len(segments)} utterances, {n:.0f} s, "
              f"{len(meta['speakers'])} test speakers", flush=True)

    records, confusions = [], []
    for mid in args.models or default_models():
        entry = manifest.get(mid)
        files = "-".join(f.sha256[:12] for _, f in entry.files())
        model = MemoModel(load_model(ModelSettings(id=mid, threads=args.threads)),
                          store=CACHE.parent / "stream_memo" / f"{mid}-{files}.pkl")
        pooled: dict[tuple[Any, str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        # gate.vad yamnet needs the model's own speech score (YAMNet backbones only)
        vads = [v for v in args.vad if v != "yamnet" or model.has_speech_score]
        for lang, (wav, segments, meta) in streams.items():
            for snr in snrs:
                path = noisy_file(lang, wav, segments, snr, args.seed)
                for vad, smoothing in [(v, sm) for v in vads for sm in args.smoothing]:
                    t0 = time.time()
                    msgs = run_pipeline(model, path, smoothing, gate_settings(vad))
                    refs = [reference(segments, int(round(m["window_start"] * RATE)),
                                      int(round(m["window_s"] * RATE))) for m in msgs]
                    preds = [m["label"] for m in msgs]
                    rec = {"model": mid, "language": lang, "snr_db": snr, "smoothing": smoothing, "vad": vad,
                           **score(refs, preds), "utterances": len(segments),
                           "test_speakers": len(meta["speakers"]),
                           "gated_windows": sum(m["gated"] for m in msgs),
                           "model_training_split": (entry.extra.get("training") or {}).get("split"),
                           "command": command}
                    records.append(rec)
                    pooled[(snr, smoothing, vad)][0].extend(refs)
                    pooled[(snr, smoothing, vad)][1].extend(preds)
                    if smoothing == "none":
                        confusions.append({"model": mid, "language": lang, "snr_db": snr,
                                           "smoothing": smoothing, "vad": vad,
                                           "labels": [*EMOTIONS, "neutral"],
                                           "matrix": confusion(refs, preds)})
                    print(f"{mid:28s} {lang} snr={snr!s:5s} vad={vad:6s} {smoothing:8s} "
                          f"wF1={rec['weighted_f1']:6.2f} "
                          f"UAR={rec['uar']:6.2f} n={rec['n_windows']} "
                          f"speech wF1={rec['weighted_f1_speech']} "
                          f"({time.time() - t0:.0f} s, "
                          f"{model.calls} inferences)", flush=True)
        for (snr, smoothing, vad), (refs, preds) in pooled.items():
            records.append({"model": mid, "language": "all", "snr_db": snr, "smoothing": smoothing,
                            "vad": vad, **score(refs, preds), "model_training_split":
                            (entry.extra.get("training") or {}).get("split"), "command": command})
            if smoothing == "none":
                confusions.append({"model": mid, "language": "all", "snr_db": snr, "smoothing": smoothing,
                                   "vad": vad, "labels": [*EMOTIONS, "neutral"],
                                   "matrix": confusion(refs, preds)})
        model.save()
    for r in records:  # the gate every run used: the daemon's default with the record's VAD
        r.update(gate_record(gate_settings(r["vad"]), foreground_file(manifest.get(r["model"]))))
    out = Path(args.out)
    conf_path = out.parent / (out.stem + "_confusion.json")
    if args.merge:
        records, confusions = merged(out, records), merged(conf_path, confusions)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    conf_path.write_text(json.dumps(confusions) + "\n")
    print(f"wrote {out} ({len(records)} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
