"""A finished run as files: one TFLite model (waveform in, probabilities out), a fine-tuned YAMNet
backbone, its embeddings in the frozen cache's layout, and the parity of each against torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from edge_ser.errors import UserError
from training.loaders import MERGED_LABELS, Clip

from . import DEFAULT_CACHE, DEFAULT_TFLITE, REPO
from .cache import DIM, POSITIONS, Store, layer14_pw
from .model import TopModel, predict


@torch.no_grad()
def write_embeddings(run: Path, out: Path, corpora: str = "all+", cache: Path = DEFAULT_CACHE,
                     frozen: Path | None = None, root: Path | None = None, chunk: int = 256) -> Path:
    """The run's fine-tuned YAMNet embeddings in training/features.py's cache layout, so every frozen-
    embedding head (MLP grid, pooling, the daemon's head format) trains on them unchanged:
    out/yamnet/base/<corpus>/frames.npy [windows, 4, 1024] (one embedding per 0.96 s patch = the mean
    of its 6 positions, as YAMNet pools), speech.npy and index.csv copied from the frozen cache (same
    clips, same windows; the Speech score is the unmodified backbone's)."""
    import csv
    import shutil

    from training.features import DEFAULT_CACHE as FROZEN_CACHE
    from training.features import corpus_dir
    from training.loaders import default_corpora_root, expand

    root = Path(root or default_corpora_root()).resolve()
    frozen = Path(frozen or FROZEN_CACHE)
    _, model = load_run(run)
    base = Store(cache / "base", root)
    for corpus in expand(corpora.split(","), root):
        src, dst = corpus_dir(corpus, "base", frozen), corpus_dir(corpus, "base", out)
        if (dst / "index.csv").is_file():
            continue
        with (src / "index.csv").open(newline="") as fh:
            rows = [(r["path"], int(r["start"]), int(r["count"])) for r in csv.DictReader(fh)]
        total = sum(n for _, _, n in rows)
        ft_rows = np.empty(total, dtype=np.int64)
        for path, start, n in rows:
            first, count = base.index[str(Path(path).resolve())]
            if count != n:
                raise UserError(f"{path}: {n} windows in the frozen cache, {count} in the fine-tune cache")
            ft_rows[start : start + n] = np.arange(first, first + n)
        dst.mkdir(parents=True, exist_ok=True)
        frames = np.lib.format.open_memmap(dst / "frames.tmp.npy", mode="w+", dtype=np.float16,
                                           shape=(total, 4, DIM))
        for s in range(0, total, chunk):
            feats, pre = base.rows(ft_rows[s : s + chunk])
            act = model.activations(feats, pre)
            frames[s : s + chunk] = act.reshape(-1, 4, POSITIONS // 4, DIM).mean(dim=2).numpy()
        frames.flush()
        del frames
        (dst / "frames.tmp.npy").rename(dst / "frames.npy")
        shutil.copy(src / "speech.npy", dst / "speech.npy")
        shutil.copy(src / "index.csv", dst / "index.csv")
    return out


def load_run(run: Path) -> tuple[dict, TopModel]:
    spec = json.loads((run / "head.json").read_text())
    model = TopModel(len(spec["original_labels"]), spec.get("rank", 64))
    model.load_state_dict(torch.load(run / "best.pt", weights_only=True))
    return spec, model.eval()


def export(run: Path, out: Path, tflite: Path = DEFAULT_TFLITE) -> Path:
    """The run's model as one TFLite file: waveform in, merged-class probabilities out."""
    from training.yamnet_tflite import export_finetuned

    _, model = load_run(run)
    w, b = model.merged_pw(*layer14_pw(tflite))
    layer14 = {"pw_weight": w[:, :, None, None], "pw_bias": b}
    data = export_finetuned(tflite, layer14, *model.head_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def export_backbone(run: Path, out: Path, tflite: Path = DEFAULT_TFLITE, pw_dtype: str = "float16") -> Path:
    """yamnet.tflite with the run's fine-tuned layer 14: a drop-in backbone (same inputs, outputs and
    names: embeddings `Identity_1` fine-tuned, AudioSet scores computed from them) for a separate head."""
    from training.yamnet_tflite import export_layer14

    _, model = load_run(run)
    w, b = model.merged_pw(*layer14_pw(tflite))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(export_layer14(tflite, {"pw_weight": w[:, :, None, None], "pw_bias": b}, pw_dtype))
    return out


def pipeline_parity(model_id: str, run: Path, head: Path, emb_cache: Path, max_clips: int = 400,
                    root: Path | None = None) -> dict:
    """A registered fine-tuned-backbone model as the daemon runs it (waveform -> TFLite backbone ->
    converted head) against the training-side reference (torch fine-tuned embeddings from the cache ->
    float torch head), on the run's test clips (an even sample of at most max_clips), clip level."""
    from artefact.heads import load_head
    from artefact.parity import HEAD_TARGETS, compare, machine, median_ms
    from edge_ser.manifest import load_manifest
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings
    from training.evaluate import clip_probs
    from training.features import clip_windows, load_cache, pooled_windows
    from training.loaders import default_corpora_root, load_set

    root = Path(root or default_corpora_root()).resolve()
    spec = json.loads((run / "head.json").read_text())
    rel = [str(p) for p in np.load(run / "test_probs.npz")["paths"]]
    rel = [rel[i] for i in np.linspace(0, len(rel) - 1, min(max_clips, len(rel))).astype(int)]
    clips = {str(Path(c.path).resolve()): c for c in load_set(spec["corpora"], root)}
    chosen = [clips[str((root / r).resolve())] for r in rel]
    hspec, ref_model = load_head(head)
    ref_model.eval()
    caches = {}
    ref_w, got_w, owner = [], [], []
    daemon = load_model(ModelSettings(id=model_id))
    for k, c in enumerate(chosen):
        cc = caches.setdefault(c.corpus, load_cache(c.corpus, "base", emb_cache))
        with torch.no_grad():
            ref_w.append(ref_model(torch.from_numpy(pooled_windows(cc, c.path, hspec["pooling"]))).numpy())
        got_w.append(np.array([[daemon.predict(w).probs[lab] for lab in hspec["labels"]]
                               for w in clip_windows(c.path, "base")]))
        owner += [k] * len(got_w[-1])
    owner = np.array(owner)
    ref = clip_probs(np.concatenate(ref_w), owner, len(chosen))
    got = clip_probs(np.concatenate(got_w), owner, len(chosen))
    y = np.array([list(hspec["labels"]).index(c.merged) for c in chosen])
    entry = load_manifest().get(model_id)
    window = clip_windows(chosen[0].path, "base")[0]
    return {"model": model_id, "data": f"{len(chosen)} test clips of {run.name} (clip level)",
            "artifact": " + ".join(f.file for _, f in entry.files()), "quantization": entry.quantization,
            "size_bytes": sum(int(f.size or 0) for _, f in entry.files()),
            "reference": "torch: fine-tuned embeddings (cache) -> float head",
            "parity": compare(ref, got, y, HEAD_TARGETS),
            "latency_ms_median": {"predict_2s_window_1_thread": median_ms(lambda: daemon.predict(window))},
            "machine": machine()}


class TfliteWaveformModel:
    """An exported file: 2 s windows in, probabilities out (ai_edge_litert, one thread)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(str(path), num_threads=threads)
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]
        self.interp.resize_tensor_input(self.inp, [32000])
        self.interp.allocate_tensors()

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.inp, np.ascontiguousarray(window, dtype=np.float32))
        self.interp.invoke()
        return self.interp.get_tensor(self.out)[0].copy()


def parity(
    run: Path,
    artifact: Path,
    cache: Path = DEFAULT_CACHE,
    root: Path | None = None,
    tflite: Path = DEFAULT_TFLITE,
    max_clips: int = 0,
) -> dict:
    """Exported file (waveform in) vs the torch model (cached trunk features) on the run's test clips."""
    from artefact.parity import HEAD_TARGETS, compare, machine, median_ms
    from training.evaluate import clip_probs
    from training.features import clip_windows
    from training.loaders import default_corpora_root

    root = Path(root or default_corpora_root()).resolve()
    spec, model = load_run(run)
    probs = np.load(run / "test_probs.npz")
    rel = [str(p) for p in probs["paths"]]
    if max_clips:
        rel = rel[:max_clips]
    labels_of = {}
    from training.loaders import load_set

    for c in load_set(spec["corpora"] + ([spec["heldout"]] if spec.get("heldout") else []), root):
        labels_of[str(Path(c.path).resolve())] = c.merged
    paths = [str((root / r).resolve()) for r in rel]
    clips = [Clip(p, "", "", "", labels_of[p], "") for p in paths]
    base = Store(cache / "base", root, tflite)
    torch.set_num_threads(1)
    ref, _ = predict(model, base, clips)
    lite = TfliteWaveformModel(artifact)
    win_probs, owner = [], []
    for k, p in enumerate(paths):
        for w in clip_windows(p, "base"):
            win_probs.append(lite(w))
            owner.append(k)
    got = clip_probs(np.array(win_probs), np.array(owner), len(paths))
    y = np.array([MERGED_LABELS.index(c.merged) for c in clips])
    original = TfliteWaveformModel(tflite)
    window = np.zeros(32000, np.float32)
    window[8000:24000] = 0.1 * np.sin(np.arange(16000) * 0.05)
    return {
        "model": artifact.stem,
        "artifact": str(artifact),
        "quantization": "dynamic",
        "data": f"test clips of {run.name} (clip level: 2 s windows, probabilities averaged)",
        "reference": "torch model in float32 on the cached trunk features (the INT8 file's layers 1-13)",
        "parity": compare(ref, got, y, HEAD_TARGETS),
        "size_bytes": artifact.stat().st_size,
        "latency_ms_median": {
            "tflite_2s_window_1_thread": median_ms(lambda: lite(window), runs=50),
            # the same measurement of the unmodified YAMNet file, taken right after: this shared
            # machine's load changes absolute numbers, the ratio is what the export costs
            "original_yamnet_tflite_same_window": median_ms(lambda: original(window), runs=50),
        },
        "machine": machine(),
        "labels": list(MERGED_LABELS),
    }


def register(run: Path, model_id: str, path: Path, report: Path) -> None:
    """models/manifest.yaml entry of the single-file model (never made the default here)."""
    from artefact.manifest import DEFAULT_MANIFEST, file_ref, write_entry
    from edge_ser.manifest import ModelEntry

    spec = json.loads((run / "head.json").read_text())
    entry = ModelEntry(
        id=model_id,
        description="YAMNet fine-tuned for emotion (last pointwise conv, low-rank) + head, one file",
        frontend="waveform",
        window_s=2.0,
        labels=tuple(MERGED_LABELS),
        head=file_ref(path, DEFAULT_MANIFEST, input="waveform", output="probs"),
        quantization="dynamic",
        license="inherits the training corpora (TESS/RAVDESS non-commercial, SAVEE research only, "
        "see shared/corpora/README.md); YAMNet Apache-2.0",
        extra={
            "training": {
                "command": spec["command"],
                "data": ",".join(spec["corpora"]) + " (budget subset, training/finetune/cache.py)",
                "split": spec["protocol"],
            },
            "parity_report": os.path.relpath(report, REPO),
        },
    )
    write_entry(DEFAULT_MANIFEST, entry, make_default=False)
