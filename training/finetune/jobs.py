"""A plan of training runs, N processes at a time, and the accuracy records of the finished ones."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def run_jobs(plan: Path, runs: Path, parallel: int, extra: list[str]) -> None:
    """Every train job of a plan file ({"name", train options...}), `parallel` processes at a time."""
    import subprocess

    pending = json.loads(Path(plan).read_text())
    running: list[tuple[subprocess.Popen, str]] = []
    while pending or running:
        while pending and len(running) < parallel:
            job = dict(pending.pop(0))
            name = job.pop("name")
            if (runs / name / "result.json").is_file():
                continue
            cmd = [sys.executable, "-m", "training", "finetune", "train", "--out", str(runs / name), *extra]
            for k, v in job.items():
                cmd += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
            (runs / name).mkdir(parents=True, exist_ok=True)
            err = open(runs / name / "stderr.log", "a")
            running.append((subprocess.Popen(cmd, stdout=err, stderr=err), name))
            print(f"{time.strftime('%H:%M:%S')} start {name}", flush=True)
        time.sleep(5)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                print(f"{time.strftime('%H:%M:%S')} end {name} rc={proc.returncode}", flush=True)


RECORD_KEYS = ("accuracy", "macro_f1", "uar", "uar4", "n_test", "per_class_recall")


def records(runs: Path) -> list[dict]:
    """accuracy.json records (training/report.py format) of every finished run."""
    out = []
    for f in sorted(runs.glob("*/result.json")):
        r = json.loads(f.read_text())
        train_set = "+".join(r["corpora"]) if len(r["corpora"]) < 8 else "all+"
        tests = r["test"]
        groups = (
            [(r["heldout"], tests["all"])]
            if r["protocol"] == "cross_corpus"
            else [(c, m) for c, m in tests.items() if c != "all"]
            + [("all+" if len(r["corpora"]) == 8 else train_set, tests["all"])]
        )
        for corpus, res in groups:
            for classes in ("merged", "original"):
                if classes not in res or (r["protocol"] == "cross_corpus" and classes == "original"):
                    continue
                m = res[classes]
                rec = {"model": r["model"], "protocol": r["protocol"], "corpus": corpus, "classes": classes}
                rec.update({k: m[k] for k in RECORD_KEYS if k in m})
                if r["protocol"] == "cross_corpus":  # cross-corpus metric: UAR over the four emotions
                    rec["uar_all_classes"], rec["uar"] = m["uar"], m.get("uar4", m["uar"])
                rec.update(
                    {
                        "train": train_set,
                        "run": f.parent.name,
                        "val_uar": r["val_uar"],
                        "best_epoch": r["best_epoch"],
                        "data": "every clip of the split"
                        if r.get("clips_not_cached") == 0
                        else "budget subset (training/finetune/cache.py budget_subset): "
                        f"{r.get('clips_not_cached', '?')} clips of the split not cached",
                        "command": r["command"],
                    }
                )
                out.append(rec)
    return out
