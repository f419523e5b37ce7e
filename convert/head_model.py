"""Read a trained head folder (head.pt + head.json, the training/convert interchange) for export.

The exported head is one graph: raw pooled features -> standardise -> layers -> softmax.

The standardisation is NOT folded into the first Linear layer. Measured on a RAVDESS MLP head
(convert/README.md, "Quantizing heads"): YAMNet features whose training std is tiny (down to the
0.001 floor) make the folded weights W/std span three orders of magnitude, and per-channel INT8
weights then agree with float on only 79 % of windows against 99.5 % unfolded. A no-op clamp after
the standardisation stops the converter from fusing the multiply back into the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edge_ser.errors import ModelError, UserError
from edge_ser.pooling import POOLINGS, pooled_dim

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
    """(spec, torch module: raw pooled features [1, input_dim] -> probabilities [1, n_labels]); an
    ensemble head averages its members' standardised heads."""
    from artefact.heads import ENSEMBLE, MeanOfMembers, ensemble_members

    spec = read_spec(folder)
    source = Path(folder) / "head.pt"
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise _cannot_load(source, spec, exc) from None
    if spec["arch"] != ENSEMBLE:
        return spec, _standardised(spec, state, source)
    try:
        members = ensemble_members(spec, state)
    except ModelError as exc:
        raise UserError(f"{Path(folder) / 'head.json'}: {exc}") from None
    return spec, MeanOfMembers([_standardised(s, st, source) for s, st in members]).eval()


def _cannot_load(source: Path, spec: dict, exc: Exception) -> UserError:
    """One line for a head.pt that torch cannot read or that does not fit the spec's head."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"cannot load {source} into a {spec['arch']} head: {first}")


def _standardised(spec: dict, state: dict, source: Path) -> StandardisedHead:
    """One linear/mlp head with its standardisation in front and softmax after."""
    if spec["arch"] not in (*EXPORTABLE_ARCHS, "attn"):
        raise UserError(f"unknown head arch {spec['arch']!r}; exportable: {', '.join(EXPORTABLE_ARCHS)}")
    if spec["arch"] not in EXPORTABLE_ARCHS:
        raise UserError(
            f"head arch {spec['arch']!r} cannot be exported to the daemon's pooled "
            f"`features` input; exportable: {', '.join(EXPORTABLE_ARCHS)}"
        )
    from artefact.heads import build_head

    try:
        head = build_head(spec)
        head.load_state_dict(state)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    except (RuntimeError, ValueError) as exc:
        raise _cannot_load(source, spec, exc) from None
    d = int(spec["input_dim"])
    mean = torch.tensor(spec.get("feature_mean") or [0.0] * d, dtype=torch.float32)
    std = torch.tensor(spec.get("feature_std") or [1.0] * d, dtype=torch.float32)
    if mean.numel() != d or std.numel() != d:
        raise UserError(f"feature_mean/feature_std in head.json must have input_dim={d} values")
    return standardised_head(head.eval(), mean, std)


CLAMP = 1e4
"""Bounds of the no-op clamp after standardisation (standardised YAMNet features stay within +-100)."""


class StandardisedHead(nn.Module):
    """(x - mean) / std, a no-op clamp that keeps the converter from fusing it into the weights,
    then the head's layers (dropout removed) and softmax."""

    def __init__(self, layers: list[nn.Module], mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.body = nn.Sequential(*layers, nn.Softmax(dim=-1))
        self.register_buffer("mean", mean.reshape(1, -1))
        self.register_buffer("inv_std", (1.0 / std).reshape(1, -1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(torch.clamp((features - self.mean) * self.inv_std, -CLAMP, CLAMP))


def standardised_head(head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> StandardisedHead:
    """The head as a plain chain of its leaf layers (valid for linear and mlp heads)."""
    layers = [m for m in head.modules() if len(list(m.children())) == 0 and not isinstance(m, nn.Dropout)]
    if not any(isinstance(m, nn.Linear) for m in layers):
        raise UserError(f"{type(head).__name__} has no Linear layer")
    return StandardisedHead(layers, mean, std).eval()
