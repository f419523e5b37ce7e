"""Markdown tables of the committed results, for bench/README.md and the top-level README.

    python3 -m bench.tables          # prints the latency, footprint and stream tables
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def latency_table(records: list[dict[str, Any]]) -> str:
    rows = ["| configuration | model | runtime | precision | threads | windows | p50 ms | p95 ms | p99 ms "
            "| infer p50 ms | CPU ms/window | RTF | CPU % | RSS MB | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        cpu_ms = r.get("cpu_ms_per_window", float("nan"))
        rows.append(f"| {r.get('config', r['model'])} | {r['model']} | {r['backend']} | {r['precision']} "
                    f"| {r['threads']} | {r['n_windows']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
                    f"| {r['p99_ms']:.1f} | {r['infer_p50_ms']:.1f} | {cpu_ms:.0f} "
                    f"| {r['rtf']:.3f} | {r['cpu_pct']:.1f} "
                    f"| {r['rss_mb']:.0f} | {r['load_1min'][0]:.1f} |")
    return "\n".join(rows)


def speedups(records: list[dict[str, Any]]) -> str:
    """HuBERT: p50 of each runtime vs the PyTorch float pipeline at the same thread count."""
    by = {(r.get("config"), r["threads"]): r for r in records}
    lines = []
    for t in sorted({r["threads"] for r in records}):
        base = by.get(("hubert-torch-pipeline", t))
        if not base:
            continue
        parts = []
        for c in ("hubert-torch", "hubert-onnx-fp32", "hubert-onnx-int8"):
            if (c, t) in by:
                r = by[(c, t)]
                cpu = ""
                if "cpu_ms_per_window" in r and "cpu_ms_per_window" in base:
                    cpu = f" (CPU time {base['cpu_ms_per_window'] / r['cpu_ms_per_window']:.2f}x)"
                parts.append(f"{c} {base['p50_ms'] / r['p50_ms']:.2f}x{cpu}")
        lines.append(f"- {t} thread(s), p50 speed-up over hubert-torch-pipeline: " + ", ".join(parts))
    return "\n".join(lines)


def footprint_table(records: list[dict[str, Any]]) -> str:
    rows = ["| model | peak RSS MB (silent / speech) | CPU % silent room | CPU % non-stop speech | load |",
            "|---|---|---|---|---|"]
    for r in records:
        s, p = r["silent"], r["speech"]
        rows.append(f"| {r['model']} | {s['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} | {s['cpu_pct']} "
                    f"| {p['cpu_pct']} | {s['load_1min']:.1f} / {p['load_1min']:.1f} |")
    return "\n".join(rows)


def stream_tables(records: list[dict[str, Any]]) -> str:
    """Per model: rows language x smoothing, columns SNR, cells wF1 / UAR."""
    out = []
    snrs = sorted({r["snr_db"] for r in records}, key=lambda s: -1e9 if s is None else -s)
    by_model: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_model[(r["model"], r.get("vad", "none"))].append(r)
    for (model, vad), recs in by_model.items():
        cell = {(r["language"], r["smoothing"], r["snr_db"]): r for r in recs}
        split = next((r.get("model_training_split") for r in recs if r.get("model_training_split")), None)
        out.append(f"**{model}**, gate.vad: {vad}" + (f" (trained on: {split})" if split else ""))
        out.append("")
        head = " | ".join("clean" if s is None else f"{s:g} dB" for s in snrs)
        out.append(f"| language | smoothing | windows | {head} |")
        out.append("|---|---|---|" + "---|" * len(snrs))
        langs = list(dict.fromkeys(r["language"] for r in recs))
        smooth = list(dict.fromkeys(r["smoothing"] for r in recs))
        for lang in langs:
            for sm in smooth:
                cells = [cell.get((lang, sm, s)) for s in snrs]
                n = next((c["n_windows"] for c in cells if c), 0)
                vals = " | ".join(f"{c['weighted_f1']:.1f} / {c['uar']:.1f}" if c else "" for c in cells)
                out.append(f"| {lang} | {sm} | {n} | {vals} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    res = Path(args.results)
    lat = _load(res / "latency.json")
    if lat:
        print(latency_table(lat), "", speedups(lat), "", sep="\n")
    fp = _load(res / "footprint.json")
    if fp:
        print(footprint_table(fp), "", sep="\n")
    st = _load(res / "stream.json")
    if st:
        print("cells: weighted F1 % / UAR %", "", stream_tables(st), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
