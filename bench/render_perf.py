"""Markdown of the speed and memory results: latency.json, latency_breakdown.json, footprint.json,
soak.json, and the models table (models/manifest.yaml next to latency.json).

Every function takes the parsed records and returns Markdown; nothing here measures anything. A
number measured while the machine was loaded (edge_ser.benchmark.is_loaded) carries LOADED_MARK and
the table a footnote saying so.
"""

from __future__ import annotations

from typing import Any

from edge_ser.benchmark import cores_of, is_loaded, load_limit

LOADED_MARK = "†"
HUBERT_BASE = "hubert-torch-pipeline"
HUBERT_OTHERS = ("hubert-torch", "hubert-onnx-fp32", "hubert-onnx-int8")
FOOTPRINT_TARGETS = {"yamnet": (80.0, 2.0), "whisper": (150.0, 2.0), "hubert": (250.0, None)}
"""Model id prefix -> (peak RSS MB, CPU % of one core in a silent room) the daemon should stay within."""

Record = dict[str, Any]


def loads_of(r: Record) -> list[float]:
    """Every 1-minute load average a record noted (latency: [before, after]; footprint: per run)."""
    if "silent" in r and "speech" in r:
        return [r[k][f] for k in ("silent", "speech") for f in ("load_1min", "load_1min_after")
                if r[k].get(f) is not None]
    v = r.get("load_1min")
    if v is None:
        return []
    return [float(x) for x in (v if isinstance(v, list) else [v]) if x is not None]


def loaded(r: Record) -> bool:
    return is_loaded(loads_of(r), cores_of(r))


def load_cell(r: Record) -> str:
    text = " / ".join(f"{v:.1f}" for v in loads_of(r))
    return f"{text} {LOADED_MARK}" if loaded(r) else text


def footnote(records: list[Record]) -> list[str]:
    """The footnote under a table with at least one loaded record (none otherwise)."""
    hit = [r for r in records if loaded(r)]
    if not hit:
        return []
    limits = sorted({f"{load_limit(cores_of(r)):g}" for r in hit})
    return ["", f"{LOADED_MARK} measured under load: the 1-minute load average exceeded the core count "
            f"minus one ({' / '.join(limits)}) before or after the run: other processes competed for the "
            "CPU, so its timings are pessimistic (CPU time per window is less affected than wall-clock "
            "latency)."]


def _span(values: list[str]) -> str:
    vals = sorted(set(values))
    return vals[0] if len(vals) == 1 else f"{vals[0]} to {vals[-1]}"


def provenance(records: list[Record]) -> str:
    """One line: machine(s), dates, load range, version(s) of a set of records."""
    if not records:
        return ""
    loads = [v for r in records for v in loads_of(r)]
    dates = [str(r.get("date_utc") or r.get("date") or "")[:10] for r in records]
    lo, hi = (f"{min(loads):.1f}", f"{max(loads):.1f}") if loads else ("", "")
    parts = [_span([str(r.get("machine", "?")) for r in records]),
             _span([d for d in dates if d]) if any(dates) else "date not recorded",
             (f"1-minute load {lo if lo == hi else f'{lo} to {hi}'}" if loads else "load not recorded")]
    versions = {str(r["version"]) for r in records if r.get("version")}
    if versions:
        parts.append("edge-ser " + ", ".join(sorted(versions)))
    return "Measured on " + "; ".join(parts) + "."


def sweep(records: list[Record]) -> list[Record]:
    """The records of the sequential sweep (bench.latency), not of interleaved runs (bench.compare)."""
    return [r for r in records if not r.get("run")]


def _name(r: Record, default: str | None) -> str:
    name = r.get("config", r["model"])
    return f"{name} (default)" if default and name == default else name


def latency_table(records: list[Record], default: str | None = None, full: bool = True) -> str:
    recs = sweep(records)
    if not recs:
        return "No latency records."
    if full:
        head = ("configuration | model | runtime | precision | threads | windows | p50 ms | p95 ms | p99 ms "
                "| infer p50 ms | CPU ms/window | RTF | CPU % | RSS MB | load")
    else:
        head = ("model | runtime | precision | threads | p50 ms | p95 ms | p99 ms | infer p50 ms "
                "| CPU ms/window | RTF | peak RSS MB | load")
    rows = [provenance(recs), "", f"| {head} |", "|" + "---|" * (head.count("|") + 1)]
    for r in recs:
        cpu = r.get("cpu_ms_per_window")
        cpu_s = "" if cpu is None else f"{cpu:.1f}"
        common = (f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['infer_p50_ms']:.1f} "
                  f"| {cpu_s} | {r['rtf']:.3f}")
        if full:
            rows.append(f"| {_name(r, default)} | {r['model']} | {r['backend']} | {r['precision']} "
                        f"| {r['threads']} | {r['n_windows']} {common} | {r['cpu_pct']:.1f} "
                        f"| {r['rss_mb']:.0f} | {load_cell(r)} |")
        else:
            rows.append(f"| {_name(r, default)} | {r['backend']} | {r['precision']} | {r['threads']} "
                        f"{common} | {r['rss_mb']:.0f} | {load_cell(r)} |")
    return "\n".join(rows + footnote(recs))


def speedups(records: list[Record]) -> str:
    """HuBERT: p50 and CPU time of each runtime vs the PyTorch float pipeline at the same thread count."""
    recs = sweep(records)
    by = {(r.get("config"), r["threads"]): r for r in recs}
    lines = []
    for t in sorted({r["threads"] for r in recs}):
        base = by.get((HUBERT_BASE, t))
        if not base:
            continue
        parts = []
        for c in HUBERT_OTHERS:
            r = by.get((c, t))
            if r is None:
                continue
            cpu = ""
            if r.get("cpu_ms_per_window") and base.get("cpu_ms_per_window"):
                cpu = f", CPU time {base['cpu_ms_per_window'] / r['cpu_ms_per_window']:.2f}x"
            mark = f" {LOADED_MARK}" if loaded(r) or loaded(base) else ""
            parts.append(f"{c} {base['p50_ms'] / r['p50_ms']:.2f}x ({r['p50_ms']:.1f} vs "
                         f"{base['p50_ms']:.1f} ms{cpu}; peak RSS {r['rss_mb']:.0f} vs "
                         f"{base['rss_mb']:.0f} MB){mark}")
        if parts:
            lines.append(f"- {t} thread(s), p50 speed-up over {HUBERT_BASE}: " + "; ".join(parts))
    return "\n".join(lines) if lines else "No HuBERT latency records."


def runs(records: list[Record]) -> dict[str, list[Record]]:
    """Interleaved runs (bench.compare): run name -> its records, in file order."""
    out: dict[str, list[Record]] = {}
    for r in records:
        if r.get("run"):
            out.setdefault(r["run"], []).append(r)
    return out


def pairs_table(records: list[Record]) -> str:
    """One table per interleaved run: the models measured in one process, round by round."""
    groups = runs(records)
    if not groups:
        return "No interleaved runs."
    out: list[str] = []
    for name, recs in groups.items():
        out += [f"**{name}** (`{recs[0]['command']}`). {provenance(recs)}", "",
                "| variant | windows | p50 ms | p95 ms | p99 ms | p50 of each round, ms | CPU ms/window "
                "| peak RSS MB (all models) | load |", "|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            rounds = r.get("round_p50_ms") or []
            span = f"{min(rounds):.1f}-{max(rounds):.1f}" if rounds else ""
            out.append(f"| {r.get('config', r['model'])} | {r['n_windows']} | {r['p50_ms']:.1f} "
                       f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {span} | {r['cpu_ms_per_window']:.1f} "
                       f"| {r['rss_mb']:.0f} | {load_cell(r)} |")
        out += footnote(recs) + [""]
    return "\n".join(out).rstrip()


def breakdown_table(records: list[Record]) -> str:
    """Where one window's time goes, per model and stage (bench.compare's breakdown)."""
    if not records:
        return "No breakdown records."
    rows = [provenance(records), "",
            "| model | BLAS threads | stage | wall p50 ms | process CPU ms | calling-thread CPU ms | load |",
            "|---|---|---|---|---|---|---|"]
    for r in records:
        env = " ".join([f"{k}={v}" for k, v in (r.get("env") or {}).items()]
                       + ([] if r.get("blas_threads", "default") == "default" else [str(r["blas_threads"])])
                       ) or "numpy default"
        for s in r["stages"]:
            rows.append(f"| {r['model']} | {env} | {s['stage']} | {s['wall_ms_p50']:.2f} "
                        f"| {s['cpu_ms_mean']:.2f} | {s.get('thread_cpu_ms_mean', float('nan')):.2f} "
                        f"| {load_cell(r)} |")
    return "\n".join(rows + footnote(records))


def _size(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def model_latency(records: list[Record], model_id: str, threads: int = 1) -> Record | None:
    """The record that stands for a model in the models table: the sequential sweep's at `threads`;
    else its newest interleaved one, preferring a run without BLAS settings (what the daemon runs)."""
    mine = [r for r in records if r.get("config", r["model"]) == model_id and r["threads"] == threads]
    seq = [r for r in mine if not r.get("run")]
    if seq:
        return seq[-1]
    plain = [r for r in mine if "NUM_THREADS=" not in r["run"]]
    return (plain or mine or [None])[-1]


def models_table(manifest: Any, records: list[Record]) -> str:
    """Every manifest model: what it is, its files, its 1-thread latency and where that was measured."""
    rows = ["| id | what | files | p50 ms per window, 1 thread | CPU ms per window | measured |",
            "|---|---|---|---|---|---|"]
    used = []
    for mid, entry in manifest.models.items():
        files = ", ".join(f"{kind} {_size(f.size)}" for kind, f in entry.files())
        r = model_latency(records, mid)
        name = f"`{mid}` (default)" if mid == manifest.default else f"`{mid}`"
        if r is None:
            rows.append(f"| {name} | {entry.description} | {files} | not measured | | |")
            continue
        used.append(r)
        how = "interleaved run" if r.get("run") else "sweep"
        cpu = r.get("cpu_ms_per_window")
        rows.append(f"| {name} | {entry.description} | {files} | {r['p50_ms']:.1f} "
                    f"| {'' if cpu is None else f'{cpu:.1f}'} | {how}, {str(r.get('date_utc', ''))[:10]}, "
                    f"load {load_cell(r)} |")
    return "\n".join(rows + footnote(used))


def footprint_table(records: list[Record], full: bool = True) -> str:
    if not records:
        return "No footprint records."
    head = ("| model | peak RSS MB (silent / speech) | CPU % silent room | CPU % non-stop speech | load |"
            if full else "| model | peak RSS MB, silent room / non-stop speech "
            "| CPU % of one core, silent room | CPU %, non-stop speech | load |")
    rows = [provenance(records), "", head, "|---|---|---|---|---|"]
    for r in records:
        s, p = r["silent"], r["speech"]
        rows.append(f"| {r['model']} | {s['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} | {s['cpu_pct']} "
                    f"| {p['cpu_pct']} | {load_cell(r)} |")
    return "\n".join(rows + footnote(records))


def footprint_targets(records: list[Record]) -> str:
    """Each model of a family with a target (FOOTPRINT_TARGETS): its footprint against the target."""
    rows = ["| model | target | peak RSS MB | CPU % silent room | met |", "|---|---|---|---|---|"]
    for r in records:
        prefix = next((p for p in FOOTPRINT_TARGETS if r["model"].startswith(p)), None)
        if prefix is None:
            continue
        rss_max, cpu_max = FOOTPRINT_TARGETS[prefix]
        cpu = r["silent"]["cpu_pct"]
        ok = r["peak_rss_mb"] <= rss_max and (cpu_max is None or (cpu is not None and cpu <= cpu_max))
        target = f"<= {rss_max:g} MB" + ("" if cpu_max is None else f", <= {cpu_max:g} % silent")
        met = "yes" if ok else "**no**"
        rows.append(f"| {r['model']} | {target} | {r['peak_rss_mb']:.1f} | {cpu} | {met} |")
    return "\n".join(rows) if len(rows) > 2 else "No footprint records with a target."


def http_overhead_table(d: dict[str, Any]) -> str:
    """The live page's cost: RSS/CPU of listen without --http, with it idle, with one client."""
    s = d.get("summary")
    if not s:
        return "No live-page overhead record."
    runs = [dict(r, machine=d.get("machine", "")) for r in d.get("runs", [])]
    loads = [v for r in runs for v in loads_of(r)]
    mark = f" {LOADED_MARK}" if any(loaded(r) for r in runs) else ""
    kb = s["page_total_bytes"] / 1000
    gz = sum(s.get("page_gzip_bytes", {}).values()) / 1000
    rows = [f"`{d['command']}`: {d.get('machine', '')}, {d.get('repeats', 1)} runs per row (means), "
            f"1-minute load {min(loads, default=0):.1f} to {max(loads, default=0):.1f}{mark}.", "",
            "| `edge-ser listen --input FILE --realtime` | peak RSS MB | CPU % of one core "
            "| CPU per window, measured directly |", "|---|---|---|---|",
            f"| without `--http` | {s['peak_rss_mb_off']:.1f} | {s['cpu_pct_off']:.2f} | |",
            f"| `--http PORT`, nobody connected | {s['peak_rss_mb_idle']:.1f} | {s['cpu_pct_idle']:.2f} "
            f"| {s['us_per_window_idle']:.1f} us |",
            f"| `--http PORT`, one client reading `/events` | {s['peak_rss_mb_client']:.1f} "
            f"| {s['cpu_pct_client']:.2f} | {s['us_per_window_client']:.1f} us |", "",
            f"Page weight {kb:.1f} KB in {len(s['page_bytes'])} files ({gz:.1f} KB if gzipped; served "
            f"uncompressed), fetched once; then about {s['stream_bytes_per_result']} bytes per window."]
    return "\n".join(rows + footnote(runs))


def soak_summary(rec: dict[str, Any]) -> str:
    """Inline: how much audio, how many results lost, RSS growth (bench/soak.py's soak.json)."""
    if not rec:
        return "not measured"
    lost = rec["dropped"] + rec["errors"] + max(rec["published"] - rec["delivered"], 0)
    mark = f" {LOADED_MARK}" if rec.get("load_1min") is not None and loaded(rec) else ""
    return (f"{rec['audio_s'] / 3600:g} h of audio, {rec['published']} results, {lost} lost, "
            f"RSS {rec['rss_mb']['growth']:+.2f} MB after warm-up, {str(rec.get('date', ''))[:10]}{mark}")
