"""Fine-tune YAMNet's top for speech emotion, within a 2-core CPU budget.

    # 1. cache the frozen trunk's output once per clip window (resumable; base = every 2 s window
    #    of every clip; augN = one augmented window per clip); --max-per-corpus N for a subset
    python -m training.finetune cache --variant base
    python -m training.finetune cache --variant aug1
    # 2. one training run (checkpoint every epoch; rerunning the same command resumes it), or the
    #    whole plan (training/ft_plan.json), then the records and the one-file export
    python -m training.finetune train --protocol speaker_independent --corpus all+ \
        --out runs/yamnet-ft/si-all+
    python -m training.finetune jobs --parallel 2
    python -m training.finetune report --append-to bench/results/accuracy.json
    python -m training.finetune export --run runs/yamnet-ft/si-all+ --register

What is trained: YAMNet's last pointwise convolution (layer 14, 1024x1024, a third of the
backbone's weights) through a rank-64 update plus a bias shift (LoRA: W + up @ down, up starting
at zero, so training starts exactly at YAMNet), and two linear heads on the window's mean
embedding: the 4 emotions + neutral ("merged") and the original labels of the training corpora
(auxiliary task, loss weight 0.5). Everything below (frontend, layers 1-13, layer 14's depthwise
conv) is frozen and computed by the original yamnet.tflite cut at that point
(training/yamnet_tflite.py) from the rebuild's log-mel patches (training/yamnet_model.py,
INT8-mel mode), so the exported file (the same graph with the merged weights) computes what was
trained. Why not end to end: on this CPU, shared by eight engineers, one training step of layer
14 alone took 22 ms per 2 s window (measured); with the frozen product W x cached, a low-rank
step costs about 15x fewer multiplications and a whole run takes minutes.

Training sample = one 2 s window of a trimmed clip, as the daemon sees it:
- base copy: any of the clip's 2 s / 1 s-hop windows (training.preprocess.windows);
- augmented copy (training.augment.augment: pitch +-3 semitones, time shift, noise 10-30 dB SNR,
  gain), one random window, with SpecAugment on its log-mel patches (2 frequency masks of
  <= 8 bands, 2 time masks of <= 12 frames), all seeded by clip path and copy;
- harmonic-mean class balancing (each merged class drawn H times per epoch, H = harmonic mean of
  the class clip counts), label smoothing 0.1, dropout 0.3;
- discriminative learning rates: heads 1e-3, the conv's update 5e-4 (0 during a first head-only
  warm-up epoch), cosine decay; early stopping on validation UAR (merged, clip level);
- `--freeze` keeps the conv at YAMNet's weights: the same recipe as a linear probe on frozen
  embeddings, the control that says what fine-tuning itself adds.
Evaluation is clip level as in training/evaluate.py: window probabilities averaged per clip.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_ser.errors import UserError
from training.loaders import MERGED_LABELS, Clip

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TFLITE = REPO.parent / "shared" / "weights" / "yamnet" / "yamnet.tflite"
DEFAULT_CACHE = REPO / "cache" / "yamnet_ft"
CHUNK = 128
POSITIONS = 24  # 4 patches x (3 x 2) positions of layer 14's feature map per 2 s window
DIM = 1024


# ---------------------------------------------------------------------------------------- cache
def _seed(path: str, copy: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(path.encode()), copy, 7])


def spec_augment(
    patches: np.ndarray,
    rng: np.random.Generator,
    freq_masks: int = 2,
    max_f: int = 8,
    time_masks: int = 2,
    max_t: int = 12,
) -> np.ndarray:
    """SpecAugment on log-mel patches [n, 96, 64]: masked cells get the patch's mean."""
    out = patches.copy()
    for p in out:
        fill = p.mean()
        for _ in range(freq_masks):
            w = rng.integers(0, max_f + 1)
            s = rng.integers(0, 64 - w + 1)
            p[:, s : s + w] = fill
        for _ in range(time_masks):
            w = rng.integers(0, max_t + 1)
            s = rng.integers(0, 96 - w + 1)
            p[s : s + w, :] = fill
    return out


class Trunk:
    """Frozen part: 2 s windows -> layer-14 depthwise features [n, 24, 1024] (float16)."""

    def __init__(self, tflite: Path = DEFAULT_TFLITE, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from training.yamnet_model import LogMelFrontend
        from training.yamnet_tflite import trunk_bytes

        self.frontend = LogMelFrontend(tflite_mel=True)
        from training.tflite_weights import yamnet_arrays

        self.frontend.mel.copy_(torch.from_numpy(np.array(yamnet_arrays(tflite)["frontend.mel"])))
        self.interp = Interpreter(model_content=trunk_bytes(tflite), num_threads=threads)
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]
        self.n = -1

    def patches(self, wins: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.frontend(torch.from_numpy(wins)).numpy()  # [n, 4, 96, 64]

    def features(self, patches: np.ndarray) -> np.ndarray:
        n = patches.shape[0] * patches.shape[1]
        if n != self.n:
            self.interp.resize_tensor_input(self.inp, [n, 96, 64, 1])
            self.interp.allocate_tensors()
            self.n = n
        self.interp.set_tensor(self.inp, patches.reshape(n, 96, 64, 1).astype(np.float32))
        self.interp.invoke()
        feats = self.interp.get_tensor(self.out)  # [n, 3, 2, 1024]
        return feats.reshape(patches.shape[0], POSITIONS, DIM).astype(np.float16)


def cache_clip(trunk: Trunk, clip: Clip, variant: str) -> np.ndarray:
    """Features of one clip: every window (base) or one augmented, SpecAugmented window (augN)."""
    from training.features import clip_windows

    wins = clip_windows(clip.path, variant)
    patches = trunk.patches(wins)
    if variant != "base":
        rng = _seed(clip.path, int(variant[3:]))
        k = int(rng.integers(0, len(wins)))
        patches = spec_augment(patches[k : k + 1].reshape(-1, 96, 64), rng).reshape(1, -1, 96, 64)
    return trunk.features(patches)


def budget_subset(clips: list[Clip], cap: int) -> list[Clip]:
    """At most `cap` clips per corpus, each label keeping its share (seeded by corpus and label).

    For a machine too busy to cache all 22k clips (measured: 30 s per 128 clips at nice 10 under a
    load of 8; 1.7 s per 128 clips on an otherwise idle 2-core machine, where the whole of All+ takes
    about 5 minutes per variant). A run on a subset says so in its records (`data`).
    """
    by_corpus: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_corpus[c.corpus].append(c)
    keep: list[Clip] = []
    for corpus, cc in by_corpus.items():
        if len(cc) <= cap:
            keep += cc
            continue
        by_label: dict[str, list[Clip]] = defaultdict(list)
        for c in cc:
            by_label[c.label].append(c)
        for label, lc in sorted(by_label.items()):
            k = round(cap * len(lc) / len(cc))
            order = np.random.default_rng([zlib.crc32(f"{corpus}/{label}".encode()), 11]).permutation(len(lc))
            keep += [lc[i] for i in sorted(order[:k])]
    return sorted(keep, key=lambda c: (c.corpus, c.path))


def build_cache(
    variant: str,
    corpora: str = "all+",
    root: Path | None = None,
    cache: Path = DEFAULT_CACHE,
    tflite: Path = DEFAULT_TFLITE,
    limit: int = 0,
    max_per_corpus: int = 0,
) -> Path:
    """Compute (or resume) the trunk features of every clip; packs feats.npy + index.json at the end."""
    from training import window_cache
    from training.loaders import default_corpora_root, load_set

    root = Path(root or default_corpora_root()).resolve()
    folder = cache / variant
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "index.json").is_file():
        return folder
    clips = sorted(load_set(corpora.split(","), root), key=lambda c: (c.corpus, c.path))
    if max_per_corpus:
        clips = budget_subset(clips, max_per_corpus)
    if limit:
        clips = window_cache.first_per_label(clips, limit)
    torch.set_num_threads(1)  # the frontend is tiny; more threads only spin on a shared machine
    trunk = Trunk(tflite)
    window_cache.build(folder, "feats", clips, root, lambda c: cache_clip(trunk, c, variant),
                       (POSITIONS, DIM), f"trunk features {variant}", CHUNK)
    ensure_pre(folder, tflite)
    return folder


def layer14_pw(tflite: Path = DEFAULT_TFLITE) -> tuple[np.ndarray, np.ndarray]:
    """YAMNet's last pointwise conv as a matrix [out, in] and bias, dequantized from the file."""
    from training.tflite_weights import yamnet_arrays

    arrays = yamnet_arrays(tflite)
    weight, bias = arrays["backbone.layer14.pw.weight"], arrays["backbone.layer14.pw.bias"]
    return np.array(weight[:, :, 0, 0]), np.array(bias)


def ensure_pre(folder: Path, tflite: Path = DEFAULT_TFLITE, chunk: int = 512) -> None:
    """pre.npy = W x + b of the frozen pointwise conv for every cached row (float16, once per variant),
    so a training step only computes the low-rank update (about 15x fewer multiplications)."""
    if (folder / "pre.npy").is_file():
        return
    feats = np.load(folder / "feats.npy", mmap_mode="r")
    w, b = (torch.from_numpy(a) for a in layer14_pw(tflite))
    tmp = folder / f"pre.{os.getpid()}.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=feats.shape)
    with torch.no_grad():
        for s in range(0, len(feats), chunk):
            x = torch.from_numpy(np.asarray(feats[s : s + chunk], dtype=np.float32))
            out[s : s + chunk] = (x @ w.T + b).numpy().astype(np.float16)
    out.flush()
    del out
    tmp.rename(folder / "pre.npy")


class Store:
    """One cached variant: trunk features and frozen pre-activations [rows, 24, 1024] float16
    (memory-mapped) + clip path -> (first row, count)."""

    def __init__(self, folder: Path, root: Path, tflite: Path = DEFAULT_TFLITE) -> None:
        meta = json.loads((folder / "index.json").read_text())
        ensure_pre(folder, tflite)
        self.feats = np.load(folder / "feats.npy", mmap_mode="r")
        self.pre = np.load(folder / "pre.npy", mmap_mode="r")
        self.index = {str((root / rel).resolve()): tuple(v) for rel, v in meta["clips"].items()}

    def rows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(rows)
        return (
            torch.from_numpy(np.asarray(self.feats[rows], dtype=np.float32)),
            torch.from_numpy(np.asarray(self.pre[rows], dtype=np.float32)),
        )


# ---------------------------------------------------------------------------------------- model
class TopModel(nn.Module):
    """Layer 14's pointwise conv with a trainable low-rank update (LoRA) and bias shift, ReLU,
    mean over the window's 24 positions (= YAMNet's embedding), and two linear heads.

    relu(W x + b + db + scale * up(down(x))): W, b frozen (their product is cached as `pre`),
    `up` starts at zero so training starts exactly at YAMNet. The export merges the update into W.
    """

    def __init__(self, n_original: int, rank: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        self.down = nn.Linear(DIM, rank, bias=False)
        self.up = nn.Linear(rank, DIM, bias=False)
        nn.init.normal_(self.down.weight, std=DIM**-0.5)
        nn.init.zeros_(self.up.weight)
        self.db = nn.Parameter(torch.zeros(DIM))
        self.scale = 1.0
        # fixed standardisation of the embedding (statistics of YAMNet's own embeddings on the
        # training windows, set by `standardise`); folded into the head weights by the export
        self.register_buffer("emb_mean", torch.zeros(DIM))
        self.register_buffer("emb_std", torch.ones(DIM))
        self.dropout = nn.Dropout(dropout)
        self.merged = nn.Linear(DIM, len(MERGED_LABELS))
        self.original = nn.Linear(DIM, n_original)

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [self.down.weight, self.up.weight, self.db]

    def activations(self, feats: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """[batch, 24, 1024] trunk features + frozen pre-activations -> layer 14's output, same shape."""
        return torch.relu(pre + self.db + self.scale * self.up(self.down(feats)))

    def embed(self, feats: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """[batch, 24, 1024] -> [batch, 1024]: the window's embedding (mean over positions)."""
        return self.activations(feats, pre).mean(dim=1)

    def forward(self, feats: torch.Tensor, pre: torch.Tensor):
        emb = self.dropout((self.embed(feats, pre) - self.emb_mean) / self.emb_std)
        return self.merged(emb), self.original(emb)

    def standardise(self, store: Store, rows: np.ndarray, chunk: int = 512) -> None:
        """Set emb_mean/emb_std from YAMNet's embeddings (relu(W x + b) averaged) of these rows."""
        rows = np.sort(rows)
        embs = [np.maximum(np.asarray(store.pre[rows[s : s + chunk]], dtype=np.float32), 0).mean(axis=1)
                for s in range(0, len(rows), chunk)]
        emb = np.concatenate(embs)
        self.emb_mean.copy_(torch.from_numpy(emb.mean(axis=0)))
        self.emb_std.copy_(torch.from_numpy(np.maximum(emb.std(axis=0), 1e-3)))

    def head_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The merged head with the standardisation folded in: W / std, b - (W / std) @ mean."""
        with torch.no_grad():
            w = self.merged.weight / self.emb_std
            return w.numpy(), (self.merged.bias - w @ self.emb_mean).numpy()

    def merged_pw(self, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fine-tuned pointwise conv as one matrix and bias (for the export)."""
        with torch.no_grad():
            delta = self.scale * (self.up.weight @ self.down.weight)
            return w + delta.numpy(), b + self.db.numpy()


# ---------------------------------------------------------------------------------------- data
def harmonic_epoch(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clip positions of one epoch: every class drawn H times, H = harmonic mean of class counts."""
    classes = np.unique(labels)
    counts = np.array([(labels == c).sum() for c in classes])
    h = int(round(len(classes) / np.sum(1.0 / counts)))
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=h, replace=n < h)
        for c, n in zip(classes, counts, strict=True)
    ]
    return rng.permutation(np.concatenate(picks))


def window_rows(clips: list[Clip], store: Store) -> tuple[np.ndarray, np.ndarray]:
    """Rows of every base window of the clips, and the clip position of each row."""
    rows, owner = [], []
    for pos, c in enumerate(clips):
        s, n = store.index[c.path]
        rows.extend(range(s, s + n))
        owner.extend([pos] * n)
    return np.array(rows, dtype=np.int64), np.array(owner, dtype=np.int64)


@torch.no_grad()
def predict(model: TopModel, store: Store, clips: list[Clip], batch: int = 256):
    """Clip-level (merged, original) probabilities: window softmax averaged per clip."""
    from training.evaluate import clip_probs

    model.eval()
    rows, owner = window_rows(clips, store)
    pm, po = [], []
    for s in range(0, len(rows), batch):
        m, o = model(*store.rows(rows[s : s + batch]))
        pm.append(torch.softmax(m, -1).numpy())
        po.append(torch.softmax(o, -1).numpy())
    # rows of each clip are contiguous and increasing, so sorting within a batch keeps the order
    return clip_probs(np.concatenate(pm), owner, len(clips)), clip_probs(
        np.concatenate(po), owner, len(clips)
    )


def score(clips: list[Clip], pm: np.ndarray, po: np.ndarray, orig_labels: tuple[str, ...]) -> dict:
    """Metrics of both heads, overall and per corpus (original: argmax over the labels that corpus
    uses, i.e. the corpus's own label set is known at test time)."""
    from training.evaluate import metrics

    groups = {"all": np.arange(len(clips))}
    corpora = sorted({c.corpus for c in clips})
    if len(corpora) > 1:
        groups.update(
            {name: np.array([k for k, c in enumerate(clips) if c.corpus == name]) for name in corpora}
        )
    ym = np.array([MERGED_LABELS.index(c.merged) for c in clips])
    out = {}
    for name, sel in groups.items():
        res = {"merged": metrics(ym[sel], pm[sel].argmax(1), MERGED_LABELS)}
        known = np.array([k for k in sel if clips[k].label in orig_labels], dtype=int)
        if len(known):
            used = sorted({clips[k].label for k in known})
            cols = [orig_labels.index(lab) for lab in used]
            yo = np.array([used.index(clips[k].label) for k in known])
            res["original"] = metrics(yo, po[known][:, cols].argmax(1), tuple(used))
        out[name] = res
    return out


# ---------------------------------------------------------------------------------------- training
def train(args: argparse.Namespace) -> dict:
    from training.evaluate import metrics
    from training.loaders import default_corpora_root, expand, load_set
    from training.splits import protocol_split

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    root = Path(args.root or default_corpora_root()).resolve()
    corpora = [c for c in expand(args.corpus.split(","), root) if c != args.heldout]
    wanted = corpora + ([args.heldout] if args.heldout else [])
    clips = load_set(wanted, root)
    roles = protocol_split(args.protocol, wanted, clips, root, fold=args.fold, heldout=args.heldout)
    base = Store(Path(args.cache) / "base", root, args.tflite)
    augs = [
        Store(Path(args.cache) / v, root, args.tflite)
        for v in args.aug.split(",")
        if v and (Path(args.cache) / v / "index.json").is_file()
    ]
    part: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.path):
        if c.path in roles and c.path in base.index:
            part[roles[c.path]].append(c)
    uncached = sum(1 for c in clips if c.path in roles and c.path not in base.index)
    if not part["train"] or not part["val"] or not part["test"]:
        raise UserError(f"empty split: { {k: len(v) for k, v in part.items()} }")
    train_clips = part["train"]
    orig_labels = tuple(sorted({c.label for c in train_clips}))
    ym = np.array([MERGED_LABELS.index(c.merged) for c in train_clips])
    yo = np.array([orig_labels.index(c.label) for c in train_clips])
    log = open(out / "train.log", "a")

    def say(msg: str) -> None:
        print(msg, file=log, flush=True)

    say(
        f"{time.strftime('%H:%M:%S')} {args.protocol} {corpora} heldout={args.heldout} fold={args.fold}: "
        f"train {len(train_clips)} val {len(part['val'])} test {len(part['test'])} clips, "
        f"{len(augs)} augmented copies, freeze={args.freeze}, original labels {orig_labels}"
    )
    model = TopModel(len(orig_labels), args.rank, args.dropout)
    model.standardise(base, window_rows(train_clips, base)[0])
    heads = [*model.merged.parameters(), *model.original.parameters()]
    opt = torch.optim.AdamW(
        [
            {"params": heads, "lr": args.head_lr, "weight_decay": 0.01},
            {"params": model.adapter_parameters(), "lr": args.lr, "weight_decay": 0.0},
        ]
    )
    base_lrs = [args.head_lr, 0.0 if args.freeze else args.lr]
    for p in model.adapter_parameters():
        p.requires_grad_(not args.freeze)
    rng = np.random.default_rng(args.seed)
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():  # resume
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        rng = np.random.default_rng([args.seed, state["epoch"]])
        say(f"resumed after epoch {state['epoch']}")
    epoch_size = len(harmonic_epoch(ym, np.random.default_rng(0)))
    if args.max_steps:
        epoch_size = min(epoch_size, args.max_steps * args.batch)
    steps = math.ceil(epoch_size / args.batch)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.1)
    yv = np.array([MERGED_LABELS.index(c.merged) for c in part["val"]])
    stores = [base, *augs]
    while state["epoch"] < args.epochs and state["epoch"] - state["best_epoch"] < args.patience:
        model.train()
        t0 = time.time()
        order = harmonic_epoch(ym, rng)[:epoch_size]
        warm = state["epoch"] == 0 and args.epochs > 1
        losses = []
        for s in range(steps):
            progress = (state["epoch"] - 1 + s / steps) / max(1, args.epochs - 1)
            cos = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr * (1.0 if warm else max(cos, 0.05))
            if warm:
                opt.param_groups[1]["lr"] = 0.0  # head-only warm-up: random heads must not wreck the conv
            idx = order[s * args.batch : (s + 1) * args.batch]
            x = np.empty((len(idx), POSITIONS, DIM), dtype=np.float32)
            pre = np.empty_like(x)
            for k, i in enumerate(idx):  # a random copy (base or augmented), a random window of it
                store = stores[int(rng.integers(0, len(stores)))]
                if train_clips[i].path not in store.index:
                    store = base
                first, n = store.index[train_clips[i].path]
                row = first + int(rng.integers(0, n))
                x[k], pre[k] = store.feats[row], store.pre[row]
            lm, lo = model(torch.from_numpy(x), torch.from_numpy(pre))
            loss = smooth(lm, torch.from_numpy(ym[idx])) + args.original_weight * smooth(
                lo, torch.from_numpy(yo[idx])
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        pm, _ = predict(model, base, part["val"])
        val = metrics(yv, pm.argmax(1), MERGED_LABELS)
        state["epoch"] += 1
        state["history"].append(
            {
                "epoch": state["epoch"],
                "loss": round(float(np.mean(losses)), 4),
                "val_uar": round(val["uar"], 4),
                "val_accuracy": round(val["accuracy"], 4),
                "seconds": round(time.time() - t0, 1),
            }
        )
        say(json.dumps(state["history"][-1]))
        if val["uar"] > state["best"]:
            state["best"], state["best_epoch"] = val["uar"], state["epoch"]
            torch.save(model.state_dict(), out / "best.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    pm, po = predict(model, base, part["test"])
    command = "python -m training.finetune train " + " ".join(args.argv)
    result = {
        "model": "yamnet-ft-frozen" if args.freeze else "yamnet-ft",
        "protocol": args.protocol,
        "corpora": corpora,
        "heldout": args.heldout,
        "fold": args.fold,
        "original_labels": list(orig_labels),
        "merged_labels": list(MERGED_LABELS),
        "n_train": len(train_clips),
        "n_val": len(part["val"]),
        "n_test": len(part["test"]),
        "augmented_copies": len(augs),
        "clips_not_cached": uncached,
        "best_epoch": state["best_epoch"],
        "val_uar": state["best"],
        "history": state["history"],
        "test": score(part["test"], pm, po, orig_labels),
        "command": command,
    }
    rel = [Path(c.path).resolve().relative_to(root).as_posix() for c in part["test"]]
    np.savez_compressed(out / "test_probs.npz", merged=pm, original=po, paths=np.array(rel))
    (out / "head.json").write_text(
        json.dumps(
            {
                "arch": "yamnet-ft",
                "rank": args.rank,
                "trained": "layer14.pw + heads",
                "labels": list(MERGED_LABELS),
                "original_labels": list(orig_labels),
                "pooling": "mean",
                "backbone": "yamnet",
                "window_s": 2.0,
                "command": command,
                "protocol": args.protocol,
                "corpora": corpora,
                "heldout": args.heldout,
                "val_uar": state["best"],
            },
            indent=1,
        )
    )
    (out / "result.json").write_text(json.dumps(result, indent=1))
    say(f"{time.strftime('%H:%M:%S')} done: test merged uar {result['test']['all']['merged']['uar']:.4f}")
    return result


# ---------------------------------------------------------------------------------------- embed
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


# ---------------------------------------------------------------------------------------- export
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m training.finetune", description="Fine-tune YAMNet's top.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="trunk features of every clip (resumable)")
    c.add_argument("--variant", default="base", help="base, or augN for augmented copy N")
    c.add_argument("--corpora", default="all+")
    c.add_argument("--root", type=Path, default=None)
    c.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    c.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    c.add_argument("--limit", type=int, default=0, help="at most N clips per (corpus, label) (tests)")
    c.add_argument("--max-per-corpus", type=int, default=0, help="budget subset; 0 = every clip")
    t = sub.add_parser("train", help="one fine-tuning run (resumes from its folder)")
    t.add_argument("--protocol", choices=["paper", "speaker_independent", "cross_corpus"], required=True)
    t.add_argument("--corpus", required=True, help="corpus or set; for cross_corpus the training pool")
    t.add_argument("--heldout", default=None)
    t.add_argument("--fold", type=int, default=0)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--root", type=Path, default=None)
    t.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    t.add_argument("--aug", default="aug1", help="augmented copies to use (comma-separated, those cached)")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--patience", type=int, default=2)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=5e-4, help="learning rate of the conv's low-rank update")
    t.add_argument("--rank", type=int, default=64, help="rank of the update of the pointwise conv")
    t.add_argument("--head-lr", type=float, default=1e-3)
    t.add_argument("--dropout", type=float, default=0.3)
    t.add_argument("--original-weight", type=float, default=0.5)
    t.add_argument("--freeze", action="store_true", help="control: keep YAMNet's weights, train heads only")
    t.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (tests)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    e = sub.add_parser("export", help="one TFLite file (waveform in, probabilities out) + parity report")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--out", type=Path, default=REPO / "models" / "heads" / "yamnet-ft.tflite")
    e.add_argument("--model-id", default="yamnet-ft")
    e.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    e.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    e.add_argument("--max-clips", type=int, default=0, help="parity on the first N test clips only")
    e.add_argument("--register", action="store_true", help="add/replace the manifest entry")
    m = sub.add_parser("embed", help="a run's fine-tuned embeddings in the frozen cache layout")
    m.add_argument("--run", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True, help="cache root for `python -m training run --cache`")
    m.add_argument("--corpora", default="all+")
    m.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    b = sub.add_parser("export-backbone", help="yamnet.tflite with the run's fine-tuned layer 14")
    b.add_argument("--run", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    b.add_argument("--pw-dtype", choices=["float16", "int8", "float32"], default="float16")
    q = sub.add_parser("pipeline-parity", help="a registered fine-tuned-backbone model vs torch")
    q.add_argument("--model-id", required=True)
    q.add_argument("--run", type=Path, required=True, help="the fine-tune run of the backbone")
    q.add_argument("--head", type=Path, required=True, help="the head folder trained on its embeddings")
    q.add_argument("--emb-cache", type=Path, required=True, help="the `embed` output of the run")
    q.add_argument("--max-clips", type=int, default=400)
    j = sub.add_parser("jobs", help="run a plan of train jobs, N processes at a time")
    j.add_argument("--plan", type=Path, default=REPO / "training" / "ft_plan.json")
    j.add_argument("--runs", type=Path, default=REPO / "runs" / "yamnet-ft")
    j.add_argument("--parallel", type=int, default=2)
    j.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    r = sub.add_parser("report", help="records of every finished run -> a JSON list (and accuracy.json)")
    r.add_argument("--runs", type=Path, default=REPO / "runs" / "yamnet-ft")
    r.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "accuracy_yamnet_ft.json")
    r.add_argument("--append-to", type=Path, default=None, help="also insert them with training.report")
    args = ap.parse_args(argv)
    if args.cmd == "jobs":
        run_jobs(args.plan, args.runs, args.parallel, ["--cache", str(args.cache)])
        return 0
    if args.cmd == "report":
        recs = records(args.runs)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(recs, indent=1) + "\n")
        if args.append_to:
            from training.report import append_record

            for rec in recs:
                append_record(rec, args.append_to)
        print(f"{len(recs)} records -> {args.out}")
        return 0
    if args.cmd == "export":
        return export_command(args, argv)
    if args.cmd == "embed":
        print(write_embeddings(args.run, args.out, args.corpora, args.cache))
        return 0
    if args.cmd == "export-backbone":
        print(export_backbone(args.run, args.out, args.tflite, args.pw_dtype))
        return 0
    if args.cmd == "pipeline-parity":
        return pipeline_parity_command(args, argv)
    if args.cmd == "cache":
        print(
            build_cache(
                args.variant,
                args.corpora,
                args.root,
                args.cache,
                args.tflite,
                args.limit,
                args.max_per_corpus,
            )
        )
    else:
        args.argv = argv[1:]
        res = train(args)
        print(f"test merged uar {res['test']['all']['merged']['uar']:.4f}")
    return 0


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
            cmd = [sys.executable, "-m", "training.finetune", "train", "--out", str(runs / name), *extra]
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
                if r["protocol"] == "cross_corpus":  # the metric: UAR over the four emotions
                    rec["uar_all_classes"], rec["uar"] = m["uar"], m.get("uar4", m["uar"])
                rec.update(
                    {
                        "train": train_set,
                        "run": f.parent.name,
                        "val_uar": r["val_uar"],
                        "best_epoch": r["best_epoch"],
                        "data": "every clip of the split"
                        if r.get("clips_not_cached") == 0
                        else "budget subset (training/finetune.py budget_subset): "
                        f"{r.get('clips_not_cached', '?')} clips of the split not cached",
                        "command": r["command"],
                    }
                )
                out.append(rec)
    return out


def export_command(args: argparse.Namespace, argv: list[str]) -> int:
    from artefact.parity import summary, write_report

    path = export(args.run, args.out, args.tflite)
    report = parity(args.run, path, args.cache, tflite=args.tflite, max_clips=args.max_clips)
    report["command"] = "python -m training.finetune " + " ".join(argv)
    report["model"] = args.model_id
    jpath, _ = write_report(args.model_id, report)
    print(summary(args.model_id, report))
    if not report["parity"]["passed"]:
        raise UserError(f"{args.model_id}: exported file misses the parity targets (see {jpath})")
    if args.register:
        register(args, path, jpath)
    return 0


def pipeline_parity_command(args: argparse.Namespace, argv: list[str]) -> int:
    from artefact.parity import summary, write_report

    report = pipeline_parity(args.model_id, args.run, args.head, args.emb_cache, args.max_clips)
    report["command"] = "python -m training.finetune " + " ".join(argv)
    jpath, _ = write_report(f"{args.model_id}-pipeline", report)
    print(summary(args.model_id, report))
    if not report["parity"]["passed"]:
        raise UserError(f"{args.model_id}: the daemon's pipeline misses the parity targets (see {jpath})")
    return 0


def register(args: argparse.Namespace, path: Path, report: Path) -> None:
    """models/manifest.yaml entry of the single-file model (never made the default here)."""
    from artefact.manifest import DEFAULT_MANIFEST, file_ref, write_entry
    from edge_ser.manifest import ModelEntry

    spec = json.loads((args.run / "head.json").read_text())
    entry = ModelEntry(
        id=args.model_id,
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
                "data": ",".join(spec["corpora"]) + " (budget subset, training/finetune.py)",
                "split": spec["protocol"],
            },
            "parity_report": os.path.relpath(report, REPO),
        },
    )
    write_entry(DEFAULT_MANIFEST, entry, make_default=False)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
