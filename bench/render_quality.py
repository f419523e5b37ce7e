"""Markdown of the accuracy results: accuracy.json (training/) and stream.json (bench.stream_eval).

Rows come from whatever records the files hold, so a model added to the results appears here
without a change to this module.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

Record = dict[str, Any]
SI = ("speaker_independent", "all+", "merged")
"""(protocol, corpus, classes) of the README's comparison: speaker-independent split of All+."""


def _default_row(r: Record, default_id: str | None) -> bool:
    """True when the record is the manifest default's training result (its `shipped` name prefixes it)."""
    return bool(default_id and r.get("shipped") and default_id.startswith(r["shipped"]))


def cross_corpus(records: list[Record], model: str) -> str:
    """Mean cross-corpus UAR over the held-out corpora measured for a model, and how many there are."""
    xc = [r for r in records if r["model"] == model and r["protocol"] == "cross_corpus"
          and r["classes"] == "merged"]
    if not xc:
        return ""
    if len(xc) == 1:
        return f"{xc[0]['corpus']} held out only: {xc[0]['uar']:.3f}"
    mean = sum(r["uar"] for r in xc) / len(xc)
    return f"{mean:.3f} (mean of {len(xc)} held-out corpora)"


def si_table(records: list[Record], default_id: str | None = None) -> str:
    """Every model with a speaker-independent All+ result: SI test/val scores and cross-corpus UAR."""
    recs = sorted((r for r in records if (r["protocol"], r["corpus"], r["classes"]) == SI),
                  key=lambda r: -r["uar"])
    if not recs:
        return "No speaker-independent All+ records."
    best = {k: max((r[k] for r in recs if r.get(k) is not None), default=None)
            for k in ("accuracy", "macro_f1", "uar", "val_uar")}

    def cell(r: Record, key: str, fmt: str) -> str:
        if r.get(key) is None:
            return ""
        text = fmt.format(100 * r[key] if key == "accuracy" else r[key])
        return f"**{text}**" if r[key] == best[key] else text

    n = sorted({r["n_test"] for r in recs})
    rows = [f"Speaker-independent split of All+ ({' / '.join(map(str, n))} test clips, UAR over the 5 "
            "classes; best in bold); cross-corpus: UAR over the four emotions on a corpus left out of "
            "training (chance 0.25). Sorted by SI UAR.", "",
            "| model | ships as | SI test accuracy % | SI macro-F1 | SI UAR | SI val UAR "
            "| cross-corpus UAR |",
            "|---|---|---|---|---|---|---|"]
    for r in recs:
        ships = f"`{r['shipped']}`" if r.get("shipped") else ""
        if _default_row(r, default_id):
            ships += " (**default**)"
        rows.append(f"| {r['model']} | {ships} | {cell(r, 'accuracy', '{:.1f}')} "
                    f"| {cell(r, 'macro_f1', '{:.3f}')} | {cell(r, 'uar', '{:.3f}')} "
                    f"| {cell(r, 'val_uar', '{:.3f}')} "
                    f"| {cross_corpus(records, r['model'])} |")
    return "\n".join(rows)


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
            f"| model | gate.vad | {_snr_head(snrs)} |", "|---|---|" + "---|" * len(snrs)]
    for model, vad in keys:
        name = f"{model} (default)" if model == default_id else model
        vals = " | ".join(f"{c['weighted_f1']:.1f}" if (c := cell.get((model, vad, s))) else "" for s in snrs)
        rows.append(f"| {name} | {vad} | {vals} |")
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


def room_table(records: list[Record]) -> str:
    """Rows: conditions in registry order; columns: models; cells wF1 / 4-emotion UAR / sadness share."""
    from bench.conditions import ordered

    langs = list(dict.fromkeys(r["language"] for r in records))
    lang = "all" if "all" in langs or len(langs) != 1 else (langs[0] if langs else "all")
    recs = [r for r in records if r["language"] == lang and r.get("smoothing", "none") == "none"]
    if not recs:
        return "No room records."
    models = list(dict.fromkeys(r["model"] for r in recs))
    order = ordered([r["condition"] for r in recs])
    cell = {(r["model"], r["condition"]): r for r in recs}
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
