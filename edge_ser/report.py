"""`edge-ser report`: a recorded result log -> the live page's timeline plus a label histogram.

Reads JSON lines as `edge-ser listen` prints them, `classify --json` output, or an MQTT dump
(`mosquitto_sub -v -t 'edge_ser/#'`: "topic payload" lines; only .../emotion payloads count). Lines
that are JSON objects but not results (stats, per-file summaries) are skipped. Writes one
self-contained HTML file (the vendored uPlot inlined, works offline) or, with matplotlib, a PNG.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Any

from .errors import UserError
from .labels import EMOTIONS

REQUIRED = ("ts", "window_start", "label", "probs")
"""Keys that make a JSON object a result message (stats and summaries lack some)."""

COLORS = {"anger_disgust": "#d64545", "fear_surprise": "#8e6bbf", "happiness": "#f0b429",
          "sadness": "#3b7dd8", "neutral": "#b8bec6"}
"""The live page's colours (live.js), so a report looks like the page."""


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The result messages of a log, in file order; any unreadable line is a UserError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    results = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith(("{", "[")):
            topic, _, payload = line.partition(" ")
            if "/" in topic and not topic.endswith("/emotion"):
                continue  # an MQTT dump's status, stats or discovery line
            if not payload.startswith("{"):
                raise UserError(f"{path} line {n}: not a JSON result message")
            line = payload
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {n}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
        if not all(k in obj for k in REQUIRED):
            continue
        probs = obj["probs"]
        if (not isinstance(probs, dict) or not all(isinstance(v, (int, float)) for v in probs.values())
                or not isinstance(obj["label"], str) or not isinstance(obj["window_start"], (int, float))):
            raise UserError(f"{path} line {n}: a result message with malformed label, probs or window_start")
        results.append(obj)
    if not results:
        raise UserError(f"{path}: no result messages (JSON lines with {', '.join(REQUIRED)})")
    return results


def _seconds(ts: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def time_axis(results: list[dict[str, Any]]) -> str:
    """"ts" (wall clock) unless the timestamps are squeezed together, as for a file read faster than
    real time; then "window_start" (seconds into the stream)."""
    stamps = [_seconds(r["ts"]) for r in results]
    if any(s is None for s in stamps):
        return "window_start"
    starts = [float(r["window_start"]) for r in results]
    ts_span, stream_span = max(stamps) - min(stamps), max(starts) - min(starts)
    return "ts" if ts_span >= 0.5 * stream_span else "window_start"


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per label (all windows and speech windows), models, sites, first and last timestamp."""
    labels = list(results[0]["probs"]) or list(EMOTIONS)
    counts = Counter(r["label"] for r in results)
    speech = Counter(r["label"] for r in results if not r.get("gated"))
    for label in counts:
        if label not in labels:
            labels.append(label)
    return {
        "windows": len(results), "speech_windows": sum(speech.values()),
        "labels": labels, "counts": {k: counts.get(k, 0) for k in labels},
        "speech_counts": {k: speech.get(k, 0) for k in labels},
        "models": sorted({str(r.get("model", "?")) for r in results}),
        "sites": sorted({str(r.get("site", "?")) for r in results}),
        "first": results[0]["ts"], "last": results[-1]["ts"],
    }


def write_report(path: str | Path, out: str | Path) -> int:
    """Write the report for the log at `path` to `out` (.html or .png); returns the number of windows."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise UserError(f"--out {out}: the report is .html or .png")
    results = read_results(path)
    if suffix == ".png":
        body = render_png(results, Path(path).name)
        mode, content = "wb", body
    else:
        mode, content = "w", render_html(results, Path(path).name)
    try:
        with open(out, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            f.write(content)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return len(results)


# -- HTML -----------------------------------------------------------------------------------------------

def _inline_js(source: bytes) -> str:
    # Inside <script>, only "</script" could end the element early.
    return source.decode("utf-8").replace("</script", "<\\/script")


def render_html(results: list[dict[str, Any]], name: str) -> str:
    """One self-contained page: the vendored uPlot and live.js inlined, the results as JSON."""
    from . import web

    s = summary(results)
    rows = []
    top = max(s["counts"].values()) or 1
    for label in s["labels"]:
        n, speech = s["counts"][label], s["speech_counts"][label]
        share = 100.0 * n / s["windows"]
        rows.append(
            f'<tr><td>{html.escape(label.replace("_", " / "))}</td>'
            f'<td class="bar"><div class="hbar" style="width:{100.0 * n / top:.1f}%;'
            f'--dot:{COLORS.get(label, "#6b7280")}"></div></td>'
            f'<td class="n">{n} ({share:.0f} %)</td><td class="n">{speech} speech</td></tr>')
    info = (f"{s['windows']} windows, {s['speech_windows']} with speech · {html.escape(s['first'])} to "
            f"{html.escape(s['last'])} · model {html.escape(', '.join(s['models']))} · site "
            f"{html.escape(', '.join(s['sites']))}")
    data = json.dumps({"time_axis": time_axis(results), "results": results}, separators=(",", ":"))
    page = Template(web.read("report.html").decode("utf-8"))
    return page.substitute(
        title=html.escape(name), info=info, histogram="\n".join(rows),
        uplot_css=web.read(web.UPLOT_CSS).decode("utf-8"), css=web.read("live.css").decode("utf-8"),
        data=data.replace("<", "\\u003c"),
        uplot_js=_inline_js(web.read(web.UPLOT_JS)), live_js=_inline_js(web.read("live.js")))


# -- PNG -------------------------------------------------------------------------------------------------

def render_png(results: list[dict[str, Any]], name: str) -> bytes:
    """The timeline (stacked, gated windows as gaps) and the histogram with matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("a .png report needs matplotlib (pip install matplotlib); .html works without it") \
            from None
    import io

    s = summary(results)
    axis = time_axis(results)
    if axis == "ts":
        t0 = min(_seconds(r["ts"]) for r in results)
        xs = [_seconds(r["ts"]) - t0 for r in results]
    else:
        xs = [float(r["window_start"]) for r in results]
    order = sorted(range(len(results)), key=xs.__getitem__)
    xs = [xs[i] for i in order]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(10, 6), gridspec_kw={"height_ratios": [2, 1]})
    bottom = [0.0] * len(xs)
    for label in reversed(s["labels"]):  # the first label on top, as on the live page
        vals = [math.nan if results[i].get("gated") else float(results[i]["probs"].get(label, 0.0))
                for i in order]
        top = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.fill_between(xs, bottom, top, color=COLORS.get(label, "#6b7280"), label=label.replace("_", " / "),
                        linewidth=0)
        bottom = [0.0 if math.isnan(t) else t for t in top]
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability (stacked)")
    ax.set_xlabel("seconds since the first window" if axis == "ts" else "seconds into the stream")
    ax.set_title(f"{name}: {s['windows']} windows, {s['speech_windows']} with speech (gaps: silence)")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              frameon=False)
    counts = [s["counts"][k] for k in s["labels"]]
    hist.barh([k.replace("_", " / ") for k in s["labels"]], counts,
              color=[COLORS.get(k, "#6b7280") for k in s["labels"]])
    hist.invert_yaxis()
    hist.set_xlabel("windows")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
