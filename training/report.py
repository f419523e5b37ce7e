"""bench/results/accuracy.json (one record per measured row) and bench/ACCURACY.md (tables next to
the paper's numbers, with the command of every number)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "accuracy.json"
MARKDOWN = REPO / "bench" / "ACCURACY.md"
EGEMAPS_COST = REPO / "bench" / "results" / "egemaps_cost.json"
"""`python -m training egemaps-cost`: eGeMAPS time per window, for the note under the LOCO table."""
LATENCY = REPO / "bench" / "results" / "latency.json"
"""`python -m bench latency`: the fused Whisper + YAMNet model's time per window (fused_cost)."""
FUSED_MODEL = "whisper-yamnet-room-mlp-allplus-onnx-fp32"
"""The daemon model that runs Whisper and YAMNet on each window, whose latency prices every fused row."""
WINDOW_LIMIT_MS = 25.0
"""Per-window compute a daemon candidate may take on the reference machine (see README, Latency)."""
KEY = ("model", "protocol", "corpus", "classes")
COLS = ("tess", "ravdess", "savee", "crema-d", "banglaser", "all")
HEAD = ("TESS", "RAVDESS", "SAVEE", "CREMA-D", "BSER/BanglaSER", "All")
XCOLS = ("tess", "ravdess", "savee", "crema-d", "banglaser", "nemo", "turev-db", "ased")

# Paper (Islam et al.), accuracy %, paper protocol, original classes.
PAPER = {
    "paper: YAMNet+MLP": (78.72, 40.47, 36.03, 34.94, 48.86, 40.27),
    "paper: VGGish+MLP": (94.18, 50.55, 46.03, 40.05, 65.35, 50.87),
    "paper: HuBERT": (99.64, 88.54, 78.12, 72.53, 87.41, 86.51),
}
# The reference probe: standardised logistic regression on YAMNet mean+max (no trim, no augmentation).
PROBE_PAPER = (95.1, 46.5, 47.9, 40.9, 60.9, None)  # 3 seeded stratified 80/20 splits
PROBE_SI = (None, 38.2, 35.8, 39.8, 47.0, None)  # 25 % of speakers held out
PROBE_XC = (0.499, 0.292, 0.308, 0.224, 0.270, None, None, None)
PROBE_NAME = "issue probe: YAMNet mean+max + logistic regression (80/20, no trim)"
NOT_MEASURED = ("VGGish+MLP (ours)", "HuBERT+MLP (ours)")


def load_records(path: Path = RESULTS) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def append_record(rec: dict, path: Path = RESULTS) -> None:
    """Insert or replace (same model, protocol, corpus, classes) a record.

    Runs of several candidates write the same file from parallel processes: the read-modify-write
    happens under an exclusive lock, and the file is replaced atomically.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        recs = [r for r in load_records(path) if tuple(r[k] for k in KEY) != tuple(rec[k] for k in KEY)]
        recs.append(rec)
        recs.sort(key=lambda r: tuple(str(r[k]) for k in KEY))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(recs, indent=1) + "\n")
        tmp.replace(path)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _table(recs: list[dict], protocol: str, classes: str, metric: str, cols, head, fixed: dict) -> list[str]:
    lines = ["| model | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    for name, vals in fixed.items():
        lines.append(f"| {name} | " + " | ".join("" if v is None else str(v) for v in vals) + " |")
    models = sorted({r["model"] for r in recs if r["protocol"] == protocol and r["classes"] == classes})
    for mname in models:
        cells = []
        for c in cols:
            r = next((r for r in recs if r["model"] == mname and r["protocol"] == protocol
                      and r["classes"] == classes and r["corpus"] == c), None)
            val = "" if r is None else (f"{r[metric]:.3f}" if metric == "uar" else _pct(r[metric]))
            if r is not None and protocol != "cross_corpus" and r.get("train", r["corpus"]) != r["corpus"]:
                val += "*"  # one model trained on a larger set, scored on this corpus's test clips
            cells.append(val)
        lines.append(f"| {mname} | " + " | ".join(cells) + " |")
    return lines


def loco_rows(recs: list[dict]) -> list[tuple[str, dict[str, float], float | None, float | None]]:
    """(model, UAR4 per held-out corpus, mean, min) per candidate; mean/min only with all 8 folds.

    Sorted by the LOCO mean (best first), the rule that picks the default; candidates with missing
    folds come last, without a mean, so a partial one can never look better than it is; rows measured
    on a clip subset come after the full-corpus rows.
    """
    rows = []
    for name in sorted({r["model"] for r in recs if r["protocol"] == "cross_corpus" and not r.get("seed")}):
        folds = {r["corpus"]: r["uar"] for r in recs if r["protocol"] == "cross_corpus"
                 and r["model"] == name and r["classes"] == "merged"}
        full = all(c in folds for c in XCOLS)
        vals = [folds[c] for c in XCOLS] if full else []
        rows.append((name, folds, sum(vals) / len(vals) if full else None, min(vals) if full else None))
    sub = subset_models(recs)
    return sorted(rows, key=lambda r: (r[2] is None, r[0] in sub, -(r[2] or 0.0), r[0]))


def seed_spread(recs: list[dict]) -> dict[str, dict[int, float]]:
    """Model -> {seed: LOCO mean UAR4} for the models also trained with other seeds (`loco --seed`);
    only seeds with all 8 folds."""
    out: dict[str, dict[int, float]] = {}
    for base in sorted({r["seed_of"] for r in recs if r["protocol"] == "cross_corpus" and r.get("seed")}):
        for seed in sorted({0} | {r["seed"] for r in recs if r.get("seed_of") == base}):
            name = f"{base} seed {seed}" if seed else base
            folds = {r["corpus"]: r["uar"] for r in recs if r["protocol"] == "cross_corpus"
                     and r["model"] == name and r["classes"] == "merged"}
            if all(c in folds for c in XCOLS):
                out.setdefault(base, {})[seed] = sum(folds[c] for c in XCOLS) / len(XCOLS)
    return out


SEED_INTRO = ("The same candidates trained again with other seeds (`training loco --seed N`, recorded as "
              "`<model> seed N`; the splits stay the same): a lead smaller than the spread of one "
              "candidate's seeds is the luck of a training run.")


def seed_table(recs: list[dict]) -> list[str]:
    """Markdown: LOCO means of the same candidate trained with other seeds (head initialisation and
    batch order; the same splits), and their mean and spread: a lead smaller than the spread is a tie."""
    spread = seed_spread(recs)
    if not spread:
        return []
    import numpy as np

    lines = ["| model | LOCO mean per seed | mean over seeds | SD | range |", "|---|---|---|---|---|"]
    for base, means in sorted(spread.items(), key=lambda kv: -float(np.mean(list(kv[1].values())))):
        v = np.array(list(means.values()))
        per = ", ".join(f"{m:.3f} (seed {s})" for s, m in means.items())
        lines.append(f"| {base} | {per} | **{v.mean():.3f}** | {v.std(ddof=1) if len(v) > 1 else 0:.3f} "
                     f"| {v.max() - v.min():.3f} |")
    return lines


def fused_cost(latency: list[dict]) -> dict | None:
    """FUSED_MODEL's one-thread latency record (what two backbones per window cost), None if unmeasured."""
    return next((r for r in latency if r.get("config") == FUSED_MODEL and r.get("threads") == 1), None)


def not_candidates(recs: list[dict], cost: dict | None = None, fused: dict | None = None) -> dict[str, str]:
    """Model -> why its LOCO row is a measurement, not a candidate for the default: two models per
    window (an ensemble of models on different features; heads on the same features run as one ensemble
    head, training.ensemble), a backbone fused in that the daemon cannot
    run (only YAMNet, manifest `fused_backbone`), Whisper + YAMNet (`fused`: fused_cost) or eGeMAPS
    over the per-window cost limit, or a head trained on the corpora's trimmed clips alone: the default
    must be trained the way the daemon hears, on room copies too (`--room`, training.scenes)."""
    out = {}
    loco = {r["model"]: r for r in recs if r["protocol"] == "cross_corpus"}
    for r in recs:
        if r["protocol"] != "cross_corpus":
            continue
        why = []
        if not room_copies(r, loco):
            why.append("trained on trimmed clips only")
        if (r.get("head") or {}).get("arch") == "ensemble" and not r["head"].get("features"):
            why.append("two models per window")
        backbone = (r.get("fuse") or {}).get("backbone")
        if backbone and backbone != "yamnet" and "egemaps" not in r["model"]:
            why.append(f"{backbone} fused in")
        if backbone == "yamnet" and fused is not None and fused["p50_ms"] > WINDOW_LIMIT_MS:
            why.append("Whisper + YAMNet over the cost limit")
        if "egemaps" in r["model"] and cost and cost["p50_ms"] > WINDOW_LIMIT_MS:
            why.append("eGeMAPS over the cost limit" if why else "over the cost limit")
        if why:
            out[r["model"]] = "; ".join(why)
    return out


def room_copies(r: dict, by_model: dict[str, dict]) -> int:
    """Room copies per clip a record's head was trained on (an ensemble: the fewest of its members')."""
    head = r.get("head") or {}
    members = head.get("members") if head.get("arch") == "ensemble" else None
    if members:
        return min(room_copies(by_model[m], by_model) if m in by_model else 0 for m in members)
    return int(r.get("room") or 0)


def subset_models(recs: list[dict]) -> set[str]:
    """Models whose LOCO folds ran on a clip subset (`--per-class`): ranked after, never against, the
    full-corpus rows."""
    return {r["model"] for r in recs if r["protocol"] == "cross_corpus" and r.get("per_class")}


def loco_table(recs: list[dict]) -> list[str]:
    """Markdown: LOCO UAR4 per held-out corpus x candidate, with the mean and the worst corpus."""
    lines = ["| model | " + " | ".join(XCOLS) + " | **mean** | min |", "|---|" + "---|" * (len(XCOLS) + 2)]
    for name, folds, mean, worst in loco_rows(recs):
        cells = [f"{folds[c]:.3f}" if c in folds else "" for c in XCOLS]
        tail = (f"**{mean:.3f}** | {worst:.3f}" if mean is not None
                else f"({len(folds)} of {len(XCOLS)} folds) | ")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {tail} |")
    return lines


REGION = "accuracy-report"
"""Name of the marked region of ACCURACY.md that holds the report (bench.tables checks it too)."""


def write_report(path: Path = RESULTS, md: Path = MARKDOWN) -> list[Path]:
    md.parent.mkdir(parents=True, exist_ok=True)
    cost = json.loads(EGEMAPS_COST.read_text()) if EGEMAPS_COST.is_file() else None
    fused = fused_cost(json.loads(LATENCY.read_text())) if LATENCY.is_file() else None
    body = report_body(load_records(path), cost, fused)
    md.write_text(f"# Accuracy\n\n<!-- bench.tables:{REGION} -->\n{body}\n<!-- /bench.tables:{REGION} -->\n")
    return [path, md]


def loco_notes(recs: list[dict], cost: dict | None = None, fused: dict | None = None) -> list[str]:
    """Notes under a LOCO table: which rows used a clip subset, and what eGeMAPS and Whisper + YAMNet
    cost per window."""
    out = []
    subset = sorted({(r["model"], r["per_class"]) for r in recs
                     if r["protocol"] == "cross_corpus" and r.get("per_class")})
    if subset:
        out.append("Rows trained and tested on a seeded class-balanced subset (at most N clips per corpus "
                   "and merged class, `training.loaders.per_class_subset`, the same clips for every such "
                   "row with the same N; compare them with each other, not with the full-corpus rows): "
                   + ", ".join(f"{m} (N = {n})" for m, n in subset) + ".")
    if any("egemaps" in r["model"] for r in recs if r["protocol"] == "cross_corpus"):
        out.append("Rows with eGeMAPS: openSMILE eGeMAPSv02 functionals (88 per 2 s window), every corpus "
                   "z-scored with its own mean and standard deviation over its cached windows (the "
                   "held-out corpus with its own statistics, taken without its labels); in a fusion row "
                   "only the eGeMAPS part is, the other backbone's part is standardised with the training "
                   "corpora's statistics as in every other row (the oracle column of the adaptation "
                   "table standardises a whole row with the held-out corpus's statistics).")
    if cost:
        verdict = ("within" if cost["p50_ms"] <= WINDOW_LIMIT_MS else "over")
        out.append(f"eGeMAPS cost: {cost['p50_ms']:.1f} ms per window (median of {cost['n_windows']} "
                   f"windows, one thread, {cost['machine']}, 1-minute load {cost['load_1min']}, "
                   f"{cost['date_utc'][:10]}; `{cost['command']}`), {verdict} the daemon's "
                   f"{WINDOW_LIMIT_MS:.0f} ms per-window limit"
                   + (": a LOCO measurement, not a daemon candidate." if verdict == "over" else "."))
    if fused and any((r.get("fuse") or {}).get("backbone") == "yamnet" for r in recs):
        verdict = "within" if fused["p50_ms"] <= WINDOW_LIMIT_MS else "over"
        out.append(f"Whisper + YAMNet cost: `{fused['config']}`, the daemon model that runs both on each "
                   f"window, takes {fused['p50_ms']:.1f} ms per window (p50 window to publish, one thread, "
                   f"{fused['machine']}, 1-minute load {fused['load_1min']}, {fused['date_utc'][:10]}; "
                   f"the latency table has the default beside it from the same run), {verdict} the "
                   f"{WINDOW_LIMIT_MS:.0f} ms limit"
                   + (": the fused rows are measurements, not candidates." if verdict == "over" else "."))
    return out


def report_body(recs: list[dict], cost: dict | None = None, fused: dict | None = None) -> str:
    """ACCURACY.md below its title: every table of the report, from the records of accuracy.json."""
    nm = {n: ("not measured: weights unavailable",) + ("n/a",) * (len(COLS) - 1) for n in NOT_MEASURED}
    out = ["Generated by `python -m training report` (or `python -m bench tables`) from "
           "`bench/results/accuracy.json`; every number "
           "there carries the command that produced it (listed at the end). Clip-level: a clip longer "
           "than 2 s is cut into the daemon's 2 s windows (1 s hop), each window is pooled exactly as "
           "the daemon pools it (`edge_ser.pooling.pool_frames`), and the window probabilities are "
           "averaged. Silence trimmed at 25 dB. Splits are the committed files under `training/splits/`.",
           "", "## Paper protocol (random stratified 70/10/20), original classes, accuracy %", ""]
    out += _table(recs, "paper", "original", "accuracy", COLS, HEAD,
                  {**PAPER, PROBE_NAME: PROBE_PAPER, **nm})
    out += ["", "## Speaker-independent (test speakers never heard in training), original classes, "
            "accuracy %", "",
            "TESS (2 speakers) and SAVEE (4) are leave-one-speaker-out over all folds; the others hold out "
            "~20 % of speakers (plus ~10 % for validation).", ""]
    out += _table(recs, "speaker_independent", "original", "accuracy", COLS, HEAD,
                  {"issue probe (25 % of speakers held out)": PROBE_SI, **nm})
    for proto in ("paper", "speaker_independent"):
        out += ["", f"## {proto.replace('_', '-')}, merged classes (4 emotions + neutral), accuracy % / "
                "UAR over 5 classes", ""]
        t = _table(recs, proto, "merged", "accuracy", COLS + ("all+",), HEAD + ("All+",), {})
        out += t
    out += ["", "\\* one model trained on the combined set (All+) and scored on that corpus's test clips; "
            "unmarked: a model trained on that corpus (or set) alone. Fine-tuned rows (`yamnet-ft*`) are "
            "fold 0 of the speaker-independent split for TESS and SAVEE (all leave-one-speaker-out folds "
            "for the other models), see training/README.md."]
    out += ["", "## Cross-corpus (train on all other corpora of All+, test on the held-out one), merged "
            "classes, UAR over the four emotions (a neutral answer counts as wrong; chance 0.25)", ""]
    out += _table(recs, "cross_corpus", "merged", "uar", XCOLS, XCOLS,
                  {"issue probe (linear, YAMNet)": PROBE_XC})
    out += ["", "## Leave-one-corpus-out (LOCO): the number that picks the default", "",
            "Each cell: train on the other seven corpora (their speaker-independent train+test speakers; "
            "validation = their validation speakers, never the held-out corpus), test on every clip of "
            "the held-out corpus; UAR over the four emotions. The default maximises the mean among the "
            "heads trained on room copies too (the way the daemon hears); means within 0.01 of the best "
            "tie (over seeds where several were run), and speaker-independent validation (again within "
            "0.01 a tie), then the room benchmark on the validation speakers' streams, break ties.", ""]
    out += loco_table(recs)
    seeds = seed_table(recs)
    if seeds:
        out += ["", SEED_INTRO, ""] + seeds
    notes = loco_notes(recs, cost, fused)
    if notes:
        out += [""] + [line for n in notes for line in (n, "")][:-1]
    shipped = [r for r in recs if r.get("shipped")]
    for r in shipped:
        out += ["", f"## Shipped model `{r['shipped']}` ({r['model']}, {r['protocol']}, trained on "
                f"{r.get('train', r['corpus'])})", "",
                "Per-class recall: " + ", ".join(f"{k} {v:.2f}" for k, v in r["per_class_recall"].items()),
                ""]
        if r.get("plot"):
            out += [f"![confusion matrix]({Path(r['plot']).relative_to('bench').as_posix()})"
                    if r["plot"].startswith("bench/") else f"Confusion matrix: `{r['plot']}`", ""]
        if r.get("per_corpus"):
            out += ["| test corpus | accuracy % | UAR (5 classes) | UAR (4 emotions) | n |",
                    "|---|---|---|---|---|"]
            for c, m in r["per_corpus"].items():
                u4 = "" if m.get("uar4") is None else f"{m['uar4']:.3f}"
                out.append(f"| {c} | {_pct(m['accuracy'])} | {m['uar']:.3f} | {u4} | {m['n_test']} |")
    xc = [r for r in recs if r["protocol"] == "cross_corpus" and r.get("adaptation")]
    if xc:
        out += ["", "## Device adaptation on held-out corpora (protocol c, UAR over the four emotions)", "",
                "Each held-out corpus streamed through `edge_ser.adaptation.FeatureAdapter` with empty "
                "statistics (corpus order = sorted file names; shuffled = seeded random clip order); "
                "oracle = standardised with the whole test corpus's statistics at once (not available "
                "on a device). Same trained head per row as the cross-corpus table.", "",
                "| model | held out | no adaptation | stream, corpus order | stream, shuffled | oracle |",
                "|---|---|---|---|---|---|"]
        order = {c: i for i, c in enumerate(XCOLS)}
        for r in sorted(xc, key=lambda r: (r["model"], order.get(r["corpus"], 99))):
            a = r["adaptation"]
            out.append(f"| {r['model']} | {r['corpus']} | {r['uar']:.3f} | "
                       f"{a['stream_corpus_order']['uar4']:.3f} | {a['stream_shuffled']['uar4']:.3f} | "
                       f"{a['oracle_batch']['uar4']:.3f} |")
    out += ["", "## Commands", "",
            "| model | protocol | corpus | classes | acc | macro-F1 | UAR | n | command |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        out.append(f"| {r['model']} | {r['protocol']} | {r['corpus']} | {r['classes']} | "
                   f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['uar']:.3f} | {r['n_test']} | "
                   f"`{r['command']}` |")
    return "\n".join(out)
