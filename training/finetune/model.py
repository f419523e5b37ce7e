"""The trained top of YAMNet (a low-rank update of layer 14's pointwise conv and two heads), and
the data helpers around it: class-balanced epochs, window rows, clip-level predictions and scores."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.loaders import MERGED_LABELS, Clip

from .cache import DIM, Store


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
