"""Read a trained head folder (head.pt + head.json, the training/convert interchange) for export.

The exported head is one float graph: raw pooled features -> probabilities. The feature
standardisation is folded into the first Linear layer's weights (W' = W / std, b' = b - W' @ mean)
rather than kept as subtract/multiply ops: in a full-integer model every extra op is one more
requantisation, and folding removes two of them at no cost.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edge_ser.errors import ModelError, UserError
from edge_ser.features import POOLINGS, pooled_dim

BACKBONE_DIMS = {"yamnet": 1024, "vggish": 128, "hubert": 768, "hubert-base": 768, "hubert-large": 1024}
"""Frame-embedding width of each backbone a head may sit on."""

EXPORTABLE_ARCHS = ("linear", "mlp")
"""Heads over pooled features; `attn` pools frames itself and has no pooled `features` input."""


def read_spec(folder: str | Path) -> dict:
    """head.json of a head folder, checked for the keys export needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"head folder not found: {folder}")
    for name in ("head.json", "head.pt"):
        if not (folder / name).is_file():
            raise UserError(f"{folder} is not a head folder: {name} is missing")
    try:
        spec = json.loads((folder / "head.json").read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{folder / 'head.json'} is not valid JSON: {exc}") from None
    for key in ("arch", "input_dim", "labels"):
        if key not in spec:
            raise UserError(f"{folder / 'head.json'} lacks {key!r}")
    return spec


def check_input_dim(spec: dict, backbone: str | None = None, backbone_dim: int | None = None) -> None:
    """Refuse a head whose input size does not match its backbone's pooled embedding."""
    backbone = backbone or spec.get("backbone", "yamnet")
    pooling = spec.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise UserError(f"head pooling {pooling!r} is not a daemon pooling ({', '.join(POOLINGS)})")
    dim = backbone_dim or BACKBONE_DIMS.get(backbone)
    if dim is None:
        raise UserError(f"unknown backbone {backbone!r}; expected one of {', '.join(BACKBONE_DIMS)}")
    want = pooled_dim(dim, pooling)
    if int(spec["input_dim"]) != want:
        raise UserError(
            f"head input_dim {spec['input_dim']} does not match backbone {backbone} "
            f"({dim}-d frames, {pooling} pooling -> {want})"
        )


def load_float_model(folder: str | Path) -> tuple[dict, nn.Module]:
    """(spec, torch module: raw pooled features [1, input_dim] -> probabilities [1, n_labels])."""
    from training.heads import build_head

    spec = read_spec(folder)
    if spec["arch"] not in (*EXPORTABLE_ARCHS, "attn"):
        raise UserError(f"unknown head arch {spec['arch']!r}; exportable: {', '.join(EXPORTABLE_ARCHS)}")
    if spec["arch"] not in EXPORTABLE_ARCHS:
        raise UserError(
            f"head arch {spec['arch']!r} cannot be exported to the daemon's pooled "
            f"`features` input; exportable: {', '.join(EXPORTABLE_ARCHS)}"
        )
    try:
        head = build_head(spec)
        state = torch.load(Path(folder) / "head.pt", map_location="cpu", weights_only=True)
        head.load_state_dict(state)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    except (RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot load {Path(folder) / 'head.pt'} into a {spec['arch']} head: {first}"
        ) from None
    d = int(spec["input_dim"])
    mean = torch.tensor(spec.get("feature_mean") or [0.0] * d, dtype=torch.float32)
    std = torch.tensor(spec.get("feature_std") or [1.0] * d, dtype=torch.float32)
    if mean.numel() != d or std.numel() != d:
        raise UserError(f"feature_mean/feature_std in head.json must have input_dim={d} values")
    return spec, fold_standardisation(head.eval(), mean, std)


def fold_standardisation(head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> nn.Sequential:
    """Sequential(first Linear with (x - mean) / std folded in, the remaining layers, Softmax).

    Valid for heads that are a plain chain of leaf layers in registration order (linear, mlp).
    """
    layers = [m for m in head.modules() if len(list(m.children())) == 0]
    if not layers or not any(isinstance(m, nn.Linear) for m in layers):
        raise UserError(f"{type(head).__name__} has no Linear layer to fold the standardisation into")
    out: list[nn.Module] = []
    folded = False
    for m in layers:
        if isinstance(m, nn.Dropout):
            continue  # identity at inference; keeps the graph minimal
        if isinstance(m, nn.Linear) and not folded:
            lin = nn.Linear(m.in_features, m.out_features)
            with torch.no_grad():
                w = m.weight / std[None, :]
                lin.weight.copy_(w)
                bias = m.bias if m.bias is not None else torch.zeros(m.out_features)
                lin.bias.copy_(bias - w @ mean)
            m, folded = lin, True
        elif not folded:
            raise UserError(
                f"{type(m).__name__} before the first Linear layer: cannot fold the standardisation"
            )
        out.append(m)
    out.append(nn.Softmax(dim=-1))
    return nn.Sequential(*out).eval()
