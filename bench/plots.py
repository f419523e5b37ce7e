"""PNG plots of the committed results: latency histograms, stream confusion matrices, the room chart.

    python3 -m bench.plots            # reads bench/results/*.json, writes bench/results/*.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from bench.options import run

RESULTS = Path(__file__).resolve().parent / "results"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_histograms(results: Path) -> list[Path]:
    """One PNG per model family (YAMNet path, HuBERT): per-window latency histograms, log x axis."""
    plt = _plt()
    samples = json.loads((results / "latency_windows.json").read_text())
    # config|threads only: the sequential sweep (config|threads|run keys are bench.compare's runs)
    samples = {k: v for k, v in samples.items() if k.count("|") == 1}
    families = {"yamnet": {k: v for k, v in samples.items() if not k.startswith("hubert")},
                "hubert": {k: v for k, v in samples.items() if k.startswith("hubert")}}
    written = []
    for family, series in families.items():
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        lo = max(min(min(v) for v in series.values()), 0.1)
        hi = max(max(v) for v in series.values())
        bins = np.geomspace(lo * 0.9, hi * 1.1, 60)
        for key, values in series.items():
            config, threads = key.split("|")
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5,
                    label=f"{config}, {threads} thr (p50 {np.median(values):.1f} ms, n={len(values)})")
        ax.set_xscale("log")
        from matplotlib.ticker import LogLocator, ScalarFormatter

        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("latency: last sample of the 2 s window -> message published (ms, log scale)")
        ax.set_ylabel("windows")
        title = "YAMNet path" if family == "yamnet" else "HuBERT-base (random weights: latency only)"
        ax.set_title(f"{title}: per-window latency, python3 -m bench.latency")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out = results / f"latency_hist_{family}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def confusion_matrices(results: Path, language: str = "all", smoothing: str = "none") -> list[Path]:
    """One PNG per model: row-normalised confusion (reference x predicted), clean and noisy side by side."""
    plt = _plt()
    entries = [c for c in json.loads((results / "stream_confusion.json").read_text())
               if c["language"] == language and c["smoothing"] == smoothing
               and c.get("vad", "none") == "none"]
    written = []
    for model in dict.fromkeys(c["model"] for c in entries):
        mine = sorted((c for c in entries if c["model"] == model),
                      key=lambda c: -1e9 if c["snr_db"] is None else -c["snr_db"])
        mine = [c for c in mine if c["snr_db"] in (None, 10.0)] or mine[:2]
        fig, axes = plt.subplots(1, len(mine), figsize=(5.2 * len(mine), 4.8), squeeze=False)
        for ax, c in zip(axes[0], mine, strict=True):
            m = np.array(c["matrix"], dtype=float)
            norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            short = [lb.replace("_", "/") for lb in c["labels"]]
            ax.set_xticks(range(len(short)), short, rotation=35, ha="right", fontsize=8)
            ax.set_yticks(range(len(short)), short, fontsize=8)
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(j, i, f"{norm[i, j]:.2f}\n({int(m[i, j])})", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.6 else "black")
            snr = "clean" if c["snr_db"] is None else f"SNR {c['snr_db']:g} dB"
            ax.set_title(f"{model}\n{language} languages, {snr}, smoothing {smoothing}", fontsize=9)
            ax.set_xlabel("predicted")
            ax.set_ylabel("reference (2 s windows)")
        fig.tight_layout()
        out = results / f"stream_confusion_{model}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def _room_language(records: list[dict]) -> str:
    """`all` when the records pool several languages, else their one language."""
    langs = list(dict.fromkeys(r["language"] for r in records))
    return "all" if "all" in langs or len(langs) != 1 else langs[0]


def room_chart(records: list[dict], out: Path, smoothing: str = "none") -> Path:
    """Weighted F1 per condition (x, registry order: clean first), one line per model (and gate)."""
    from acoustics.conditions import ordered

    plt = _plt()
    lang = _room_language(records)
    recs = [r for r in records if r["language"] == lang and r.get("smoothing", "none") == smoothing]
    order = ordered([r["condition"] for r in recs])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(order) + 2), 4.8))
    kinds = [next(r["kind"] for r in recs if r["condition"] == c) for c in order]
    for i in range(1, len(order)):  # light separators between kinds of condition
        if kinds[i] != kinds[i - 1]:
            ax.axvline(i - 0.5, color="0.85", linewidth=1)
    from bench.render_quality import room_series

    for model in dict.fromkeys(room_series(r) for r in recs):
        cell = {r["condition"]: r["weighted_f1"] for r in recs if room_series(r) == model}
        xs = [i for i, c in enumerate(order) if c in cell]
        ax.plot(xs, [cell[order[i]] for i in xs], marker="o", linewidth=1.5, label=model)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_ylabel("weighted F1 % (5 classes, 2 s windows)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", color="0.9")
    n = sorted({r["n_windows"] for r in recs})
    ax.set_title(f"Room benchmark: {lang} language{'s' if lang == 'all' else ''}, smoothing {smoothing}, "
                 f"{' / '.join(map(str, n))} windows", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@click.command(help=__doc__.splitlines()[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--results", "results_dir", default=str(RESULTS), show_default=True, metavar="DIR",
              help="Folder of the results to draw (and of the charts written).")
def command(results_dir: str) -> int:
    results = Path(results_dir)
    written = []
    if (results / "latency_windows.json").exists():
        written += latency_histograms(results)
    if (results / "stream_confusion.json").exists():
        written += confusion_matrices(results)
    if (results / "room.json").exists():
        written.append(room_chart(json.loads((results / "room.json").read_text()), results / "room.png"))
    for p in written:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m bench plots ARGS` and `python -m bench.plots ARGS`."""
    return run(command, argv, "python -m bench plots")


if __name__ == "__main__":
    sys.exit(main())
