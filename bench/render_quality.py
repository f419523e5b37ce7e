"""Markdown of the accuracy results: accuracy.json (training/) and stream.json (bench.stream_eval).

Rows come from whatever records the files hold, so a model added to the results appears here
without a change to this module.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

Record = dict[str, Any]
SI = ("speaker_independent", "all+", "merged")
"""(protocol, corpus, classes) of the README's comparison: speaker-independent split of All+."""


def _default_row(r: Record, default_id: str | None) -> bool:
    """True when the record is the manifest default's training result (its `shipped` name prefixes it)."""
    return bool(default_id and r.get("shipped") and default_id.startswith(r["shipped"]))


def si_table(records: list[Record], default_id: str | None = None, egemaps_cost: Record | None = None,
             fused_cost: Record | None = None) -> str:
    """Every candidate, ranked by the rule that picks the default: LOCO mean first, SI val UAR for ties.

    Candidates are the models with leave-one-corpus-out folds or a speaker-independent All+ result;
    a LOCO mean is shown only when all eight held-out corpora were measured. Rows measured on a clip
    subset come after the full-corpus rows and are never marked best, nor are rows that are not
    candidates for the default (training.report.not_candidates).
    """
    from training.report import (
        SEED_INTRO,
        XCOLS,
        loco_notes,
        loco_rows,
        not_candidates,
        seed_spread,
        seed_table,
        subset_models,
    )

    loco = {name: (folds, mean, worst) for name, folds, mean, worst in loco_rows(records)}
    # a seed run's rows are summed up in the seed table, not ranked beside its seed-0 row
    si = {r["model"]: r for r in records
          if (r["protocol"], r["corpus"], r["classes"]) == SI and not r.get("seed")}
    sub = subset_models(records)
    names = sorted(set(loco) | set(si), key=lambda n: (
        loco.get(n, ({}, None, None))[1] is None, n in sub, -(loco.get(n, ({}, None, None))[1] or 0.0),
        -(si[n].get("val_uar") or 0.0) if n in si else 0.0, n))
    if not names:
        return "No leave-one-corpus-out or speaker-independent All+ records."
    measured_only = not_candidates(records, egemaps_cost, fused_cost)
    # a candidate trained with several seeds counts with the mean over them (the rule)
    spread = seed_spread(records)
    over_seeds = {n: sum(v.values()) / len(v) for n, v in spread.items() if len(v) > 1}
    ranked = {n: over_seeds.get(n, v[1]) for n, v in loco.items() if v[1] is not None}
    best_loco = max((m for n, m in ranked.items() if n not in sub and n not in measured_only), default=None)
    rows = ["LOCO: train on seven corpora, test on the eighth, UAR over the four emotions (chance 0.25), "
            f"mean and worst of the {len(XCOLS)} held-out corpora; SI: speaker-independent split of All+ "
            "(UAR over the 5 classes). Ranked by LOCO mean, the rule that picks the default among the "
            "candidates trained on room copies too: means within 0.01 of the best tie (over seeds where "
            "several were run), and SI validation UAR (again within 0.01 a tie), then the room benchmark "
            "on the validation speakers' streams, break ties.", "",
            "| model | ships as | **LOCO mean UAR4** | LOCO worst corpus | SI test UAR | SI macro-F1 "
            "| SI test accuracy % | SI val UAR |",
            "|---|---|---|---|---|---|---|---|"]
    for n in names:
        folds, mean, worst = loco.get(n, ({}, None, None))
        r = si.get(n, {})
        ships = f"`{r['shipped']}`" if r.get("shipped") else ""
        if r and _default_row(r, default_id):
            ships += " (**default**)"
        if n in measured_only:
            ships = f"not a candidate: {measured_only[n]}"
        if mean is not None:
            lo = min(folds, key=folds.get)
            loco_cell = f"{mean:.3f}" + (f" ({len(spread[n])} seeds: {ranked[n]:.3f})"
                                         if n in over_seeds else "")
            if ranked[n] == best_loco:
                loco_cell = f"**{loco_cell}**"
            worst_cell = f"{worst:.3f} ({lo})"
        else:
            loco_cell = f"{len(folds)} of {len(XCOLS)} folds" if folds else "not measured"
            if n in spread:  # measured with other seeds only: their mean, the seed table has each
                loco_cell = f"({len(spread[n])} seeds: {sum(spread[n].values()) / len(spread[n]):.3f})"
            worst_cell = ""

        si_cells = " | ".join(_num(r, k, f) for k, f in (("uar", "{:.3f}"), ("macro_f1", "{:.3f}"),
                                                         ("accuracy", "{:.1f}"), ("val_uar", "{:.3f}")))
        rows.append(f"| {n} | {ships} | {loco_cell} | {worst_cell} | {si_cells} |")
    seeds = seed_table(records)
    if seeds:
        rows += ["", SEED_INTRO, ""] + seeds
    for note in loco_notes(records, egemaps_cost, fused_cost):
        rows += ["", note]
    return "\n".join(rows)


def _num(r: Record, key: str, fmt: str) -> str:
    v = r.get(key)
    return "" if v is None else fmt.format(100 * v if key == "accuracy" else v)


def default_recall(records: list[Record], default_id: str | None) -> str:
    """Inline: per-class recall of the default model on its test set."""
    r = next((r for r in records if _default_row(r, default_id) and r.get("per_class_recall")), None)
    if r is None:
        return "not recorded"
    return ", ".join(f"{k.replace('_', '/')} {v:.2f}" for k, v in r["per_class_recall"].items())


def _snrs(records: list[Record]) -> list[float | None]:
    return sorted({r["snr_db"] for r in records}, key=lambda s: -1e9 if s is None else -s)


def _snr_head(snrs: list[float | None]) -> str:
    return " | ".join("clean" if s is None else f"{s:g} dB" for s in snrs)


def stream_summary(records: list[Record], default_id: str | None = None) -> str:
    """Weighted F1 % per model and gate.vad, every language pooled, no smoothing, per SNR."""
    recs = [r for r in records if r["language"] == "all" and r["smoothing"] == "none"]
    if not recs:
        return "No stream records."
    snrs = _snrs(recs)
    cell = {(r["model"], r.get("vad", "none"), r["snr_db"]): r for r in recs}
    keys = list(dict.fromkeys((r["model"], r.get("vad", "none")) for r in recs))
    n = sorted({r["n_windows"] for r in recs})
    rows = [f"Weighted F1 %, all languages pooled ({' / '.join(map(str, n))} windows), no smoothing.", "",
            "| model | gate.rms_threshold | gate.floor_margin_db | gate.vad | gate.background_threshold | "
            f"{_snr_head(snrs)} |", "|---|---|---|---|---|" + "---|" * len(snrs)]
    for model, vad in keys:
        name = f"{model} (default)" if model == default_id else model
        vals = " | ".join(f"{c['weighted_f1']:.1f}" if (c := cell.get((model, vad, s))) else "" for s in snrs)
        gate = next((r for r in recs if r["model"] == model and "rms_threshold" in r), None)
        rms = "" if gate is None else f"{gate['rms_threshold']:g}"
        floor = "" if gate is None else f"{gate.get('floor_margin_db', 0.0):g}"  # none before the floor gate
        bt = None if gate is None else gate.get("background_threshold")  # None: no foreground head
        background = "-" if bt is None else f"{bt:g}"
        rows.append(f"| {name} | {rms} | {floor} | {vad} | {background} | {vals} |")
    return "\n".join(rows)


def stream_tables(records: list[Record]) -> str:
    """Per model and gate.vad: rows language x smoothing, columns SNR, cells wF1 / UAR."""
    if not records:
        return "No stream records."
    out = ["cells: weighted F1 % / UAR %", ""]
    snrs = _snrs(records)
    by_model: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        by_model[(r["model"], r.get("vad", "none"))].append(r)
    for (model, vad), recs in by_model.items():
        cell = {(r["language"], r["smoothing"], r["snr_db"]): r for r in recs}
        split = next((r.get("model_training_split") for r in recs if r.get("model_training_split")), None)
        out += [f"**{model}**, gate.vad: {vad}" + (f" (trained on: {split})" if split else ""), "",
                f"| language | smoothing | windows | {_snr_head(snrs)} |",
                "|---|---|---|" + "---|" * len(snrs)]
        for lang in dict.fromkeys(r["language"] for r in recs):
            for sm in dict.fromkeys(r["smoothing"] for r in recs):
                cells = [cell.get((lang, sm, s)) for s in snrs]
                n = next((c["n_windows"] for c in cells if c), 0)
                vals = " | ".join(f"{c['weighted_f1']:.1f} / {c['uar']:.1f}" if c else "" for c in cells)
                out.append(f"| {lang} | {sm} | {n} | {vals} |")
        out.append("")
    return "\n".join(out).rstrip()


def room_series(r: Record) -> str:
    """A room record's column (table) and line (chart): the model, and its gate when not the daemon's
    default (a record without a gate was measured before records carried it: the default of then)."""
    from edge_ser.settings import GateSettings

    gate = []
    if r.get("rms_threshold") is not None and r["rms_threshold"] != GateSettings().rms_threshold:
        gate.append(f"rms {r['rms_threshold']:g}")
    floor = r.get("floor_margin_db", 0.0)
    if floor != GateSettings().floor_margin_db:
        gate.append(f"floor {floor:g} dB" if floor else "no floor")
    if r.get("vad", "none") != "none":
        gate.append(f"vad {r['vad']}")
    background = r.get("background_threshold")  # None: the model had no foreground head
    if background is not None and background != GateSettings().background_threshold:
        gate.append(f"background {background:g}" if background else "no background gate")
    head = r.get("foreground_head")
    if head and head != shipped_foreground_head(r["model"]):
        gate.append(f"foreground head {Path(head).stem}")
    return r["model"] + (f" (gate {', '.join(gate)})" if gate else "")


@cache
def shipped_foreground_head(model_id: str) -> str | None:
    """The foreground head file the manifest gives `model_id` now (None: none, or no such entry)."""
    from edge_ser.errors import ModelError
    from edge_ser.manifest import load_manifest

    try:
        head = load_manifest().get(model_id).foreground_head
    except ModelError:
        return None
    return head.file if head else None


def room_table(records: list[Record]) -> str:
    """Rows: conditions in registry order; columns: models (and gates other than the default); cells
    wF1 / 4-emotion UAR / sadness share."""
    from acoustics.conditions import ordered

    langs = list(dict.fromkeys(r["language"] for r in records))
    lang = "all" if "all" in langs or len(langs) != 1 else (langs[0] if langs else "all")
    recs = [r for r in records if r["language"] == lang and r.get("smoothing", "none") == "none"]
    if not recs:
        return "No room records."
    models = list(dict.fromkeys(room_series(r) for r in recs))
    order = ordered([r["condition"] for r in recs])
    cell = {(room_series(r), r["condition"]): r for r in recs}
    n = sorted({r["n_windows"] for r in recs})

    def fmt(r: Record | None) -> str:
        if r is None:
            return ""
        uar4 = "" if r.get("uar_emotions") is None else f"{r['uar_emotions']:.1f}"
        sad = "" if r.get("sad_share") is None else f"{r['sad_share']:.1f}"
        return f"{r['weighted_f1']:.1f} / {uar4} / {sad}"

    scope = "all languages pooled" if lang == "all" else f"language {lang}"
    rows = [f"Room benchmark, {scope} ({' / '.join(map(str, n))} windows), no smoothing. Cells: weighted "
            "F1 % (5 classes) / UAR % over the four emotions (speech windows) / % `sadness` answers on "
            "windows whose reference is not sadness.", "",
            "| condition | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    rows += [f"| {c} | " + " | ".join(fmt(cell.get((m, c))) for m in models) + " |" for c in order]
    return "\n".join(rows)


GateKey = tuple[str, float, float, float, str]
RunKey = tuple[str, str, float, float, float, str]
"""(model, *GateKey)."""


def gate_key(r: Record) -> GateKey:
    """A room record's gate: (vad, rms_threshold, floor_margin_db, background_threshold: 0 = off or no
    foreground head, the foreground head's file name or "-")."""
    head = r.get("foreground_head")
    return (r.get("vad", "none"), float(r.get("rms_threshold") or 0.0),
            float(r.get("floor_margin_db") or 0.0), float(r.get("background_threshold") or 0.0),
            Path(head).stem if head else "-")


def gate_means(records: list[Record]) -> dict[RunKey, float]:
    """Mean weighted F1 over the conditions each (model, gate) ran, every language pooled."""
    runs: dict[RunKey, list[float]] = defaultdict(list)
    for r in records:
        if r["language"] == "all" and r.get("smoothing", "none") == "none":
            runs[(r["model"], *gate_key(r))].append(r["weighted_f1"])
    return {k: sum(v) / len(v) for k, v in runs.items()}


def gate_table(records: list[Record]) -> str:
    """Rows: (model, gate) in descending mean weighted F1; columns: conditions, then the mean."""
    from acoustics.conditions import ordered

    recs = [r for r in records if r["language"] == "all" and r.get("smoothing", "none") == "none"]
    if not recs:
        return "No gate records."
    means = gate_means(recs)
    order = ordered([r["condition"] for r in recs])
    cell = {(r["model"], *gate_key(r), r["condition"]): r["weighted_f1"] for r in recs}
    n = sorted({r["n_windows"] for r in recs})
    rows = [f"Weighted F1 %, every language pooled ({' / '.join(map(str, n))} windows), no smoothing.", "",
            "| model | gate.rms_threshold | gate.floor_margin_db | gate.vad | gate.background_threshold | "
            "foreground head | " + " | ".join(order) + " | mean |",
            "|---|---|---|---|---|---|" + "---|" * (len(order) + 1)]
    for key in sorted(means, key=lambda k: -means[k]):
        model, vad, rms, floor, background, head = key
        vals = " | ".join(f"{v:.1f}" if (v := cell.get((*key, c))) is not None else "" for c in order)
        rows.append(f"| {model} | {rms:g} | {floor:g} | {vad} | {background:g} | {head} | {vals} "
                    f"| {means[key]:.1f} |")
    return "\n".join(rows)
