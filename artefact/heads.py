"""The head folder: what training writes and conversion reads. Torch heads over backbone features,
and `build_head(spec)` for the head interchange format.

A head folder (runs/heads/<name>/ or models/heads/<name>/) holds head.pt (the state_dict of
`build_head(spec)`) and head.json (spec: arch, arch params, input_dim, labels, pooling, backbone,
feature_mean/feature_std, command, data, split, metrics). The module returned by `build_head`
takes STANDARDISED features and returns LOGITS; `build_inference_model(spec, state)` wraps it into
the exported form: raw pooled features in, softmax probabilities out, standardisation folded in.

Archs:
- linear: input_dim -> n_labels.
- mlp: the paper's MLP, input_dim -> hidden[0] -> ... -> n_labels, ReLU + dropout.
- wsum: a learned softmax-weighted sum of hidden states (the SUPERB recipe), then an mlp (or a
  linear layer when hidden is empty); its input is the states' pooled rows concatenated
  (pooling "method@k+j+..."), so it exports like an mlp.
- attn: attentive pooling over frames (input [batch, n_frames, frame_dim]; input_dim = frame_dim),
  then an mlp. Not exportable to the daemon's pooled `features` input; an experiment.
- ensemble: heads trained apart on the same pooled features, their probabilities averaged. Its spec
  lists the members' specs under `members` (each with its own arch and standardisation) and head.pt
  holds member k's state under keys `k.<key>`; it has no build_head module of its own, only
  `build_inference_model`.

A log-mel model folder has the same two files; its spec names `build_cnn` (the compact CNN) as its
builder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edge_ser.errors import ModelError
from edge_ser.pooling import parse_state_pooling

ARCHS = ("linear", "mlp", "wsum", "attn")
ENSEMBLE = "ensemble"


def _mlp(input_dim: int, hidden: list[int], dropout: float, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = input_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class LinearHead(nn.Module):
    def __init__(self, input_dim: int, n_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(input_dim, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


class MLPHead(nn.Module):
    def __init__(self, input_dim: int, n_labels: int, hidden: list[int], dropout: float = 0.3) -> None:
        super().__init__()
        self.net = _mlp(input_dim, hidden, dropout, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WeightedStatesHead(nn.Module):
    """[batch, n_states * dim] -> softmax(w)-weighted sum of the n_states rows -> mlp."""

    def __init__(self, input_dim: int, n_labels: int, n_states: int, hidden: list[int],
                 dropout: float = 0.3) -> None:
        super().__init__()
        if n_states < 1 or input_dim % n_states:
            raise ModelError(f"wsum head: input_dim {input_dim} is not n_states {n_states} equal rows")
        self.n_states, self.dim = n_states, input_dim // n_states
        self.state_logits = nn.Parameter(torch.zeros(n_states))
        self.net = _mlp(self.dim, hidden, dropout, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.state_logits, dim=0)
        return self.net((x.reshape(-1, self.n_states, self.dim) * w[None, :, None]).sum(dim=1))


class AttnHead(nn.Module):
    """Attention-weighted mean over frames (silent frames can get ~0 weight), then an MLP."""

    def __init__(self, input_dim: int, n_labels: int, hidden: list[int], dropout: float = 0.3,
                 attn_dim: int = 128) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(input_dim, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))
        self.net = _mlp(input_dim, hidden, dropout, n_labels)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(frames).squeeze(-1), dim=1)
        return self.net((w.unsqueeze(-1) * frames).sum(dim=1))


def build_head(spec: dict) -> nn.Module:
    """The torch module described by a head.json spec (standardised features in, logits out)."""
    arch = spec.get("arch")
    try:
        d, n = int(spec["input_dim"]), len(spec["labels"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"head spec lacks input_dim/labels: {exc}") from exc
    if arch == "linear":
        return LinearHead(d, n, float(spec.get("dropout", 0.0)))
    if arch == "mlp":
        return MLPHead(d, n, list(spec.get("hidden", [256])), float(spec.get("dropout", 0.3)))
    if arch == "wsum":
        _, states = parse_state_pooling(str(spec.get("pooling", "")))
        return WeightedStatesHead(d, n, len(states), list(spec.get("hidden", [256])),
                                  float(spec.get("dropout", 0.3)))
    if arch == "attn":
        return AttnHead(d, n, list(spec.get("hidden", [256])), float(spec.get("dropout", 0.3)),
                        int(spec.get("attn_dim", 128)))
    if arch == ENSEMBLE:
        raise ModelError("an ensemble head is its members' heads; build it with build_inference_model")
    raise ModelError(f"unknown head arch {arch!r}; expected one of {', '.join(ARCHS)}")


class InferenceModel(nn.Module):
    """Pooled features -> standardise -> head -> softmax: the form the daemon runs."""

    def __init__(self, head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", 1.0 / std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head((features - self.mean) * self.inv_std), dim=-1)


class MeanOfMembers(nn.Module):
    """The members' outputs (probabilities) averaged: the inference form of an ensemble head."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(features) for m in self.members]).mean(dim=0)


def ensemble_members(spec: dict, state: dict | None = None) -> list[tuple[dict, dict | None]]:
    """(spec, state) of each member of an ensemble head; a member inherits input_dim and labels."""
    members = spec.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise ModelError("an ensemble head spec needs a `members` list of at least two head specs")
    out = []
    for k, member in enumerate(members):
        if not isinstance(member, dict) or member.get("arch") in (ENSEMBLE, "attn", None):
            raise ModelError(f"ensemble member {k} is not a head over pooled features")
        sub = {"input_dim": spec["input_dim"], "labels": spec["labels"], **member}
        if sub["input_dim"] != spec["input_dim"] or list(sub["labels"]) != list(spec["labels"]):
            raise ModelError(f"ensemble member {k} has other input_dim or labels than the ensemble")
        own = None if state is None else {key[len(f"{k}."):]: v for key, v in state.items()
                                           if key.startswith(f"{k}.")}
        out.append((sub, own))
    return out


def head_kind(spec: dict) -> str:
    """What the folder holds, in words: "mlp head", "ensemble of 3 mlp heads"."""
    if spec.get("arch") != ENSEMBLE:
        return f"{spec.get('arch')} head"
    archs = sorted({str(m.get("arch")) for m in spec.get("members") or []})
    return f"ensemble of {len(spec.get('members') or [])} {'/'.join(archs)} heads"


def ensemble_state(states: list[dict]) -> dict:
    """head.pt of an ensemble: member k's state under keys `k.<key>`."""
    return {f"{k}.{key}": v for k, state in enumerate(states) for key, v in state.items()}


def build_inference_model(spec: dict, state: dict | None = None) -> nn.Module:
    """Head with its standardisation folded in and softmax applied (for export and evaluation);
    an ensemble averages its members' probabilities."""
    if spec.get("arch") == ENSEMBLE:
        return MeanOfMembers([build_inference_model(s, st) for s, st in ensemble_members(spec, state)]).eval()
    head = build_head(spec)
    if state is not None:
        head.load_state_dict(state)
    d = int(spec["input_dim"])
    mean = torch.tensor(spec.get("feature_mean") or [0.0] * d, dtype=torch.float32)
    std = torch.tensor(spec.get("feature_std") or [1.0] * d, dtype=torch.float32)
    return InferenceModel(head, mean, std).eval()


def save_head(folder: Path, spec: dict, head: nn.Module) -> Path:
    """Write head.pt + head.json into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), folder / "head.pt")
    (folder / "head.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder


def load_head(folder: Path) -> tuple[dict, nn.Module]:
    """Read a head folder back as (spec, inference model)."""
    folder = Path(folder)
    if not (folder / "head.json").is_file() or not (folder / "head.pt").is_file():
        raise ModelError(f"{folder} is not a head folder (needs head.json and head.pt)")
    spec = json.loads((folder / "head.json").read_text())
    state = torch.load(folder / "head.pt", map_location="cpu", weights_only=True)
    return spec, build_inference_model(spec, state)


# --- the compact log-mel CNN (a whole model: log-mel in, logits out) ---------------------------

class CompactCNN(nn.Module):
    """Four conv-BN-ReLU blocks (max-pooled), mean+max pooling over time and frequency, dropout, dense."""

    def __init__(self, n_labels: int, widths: tuple[int, ...] = (24, 48, 96, 128), dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for k, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if k < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * cin, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.out(self.drop(pooled))


def build_cnn(spec: dict) -> nn.Module:
    """Builder for `python -m convert logmel-cnn --builder artefact.heads:build_cnn`."""
    return CompactCNN(len(spec["labels"]), tuple(spec.get("widths", (24, 48, 96, 128))),
                      float(spec.get("dropout", 0.3)))
