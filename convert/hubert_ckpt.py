"""HuBERT checkpoints for `python -m convert hubert`: a local Hugging Face folder, or a fairseq .pt
renamed to transformers' HubertModel (`tr` is the imported transformers module)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edge_ser.errors import UserError


def load_hf(tr, folder: Path):
    """(HubertModel, HubertForSequenceClassification or None, do_normalize) from a local HF folder."""
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a Hugging Face model folder (no config.json)")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") not in ("hubert", None):
        raise UserError(f"{folder} holds a {cfg.get('model_type')!r} model, not HuBERT")
    pre = folder / "preprocessor_config.json"
    normalize = bool(json.loads(pre.read_text()).get("do_normalize", False)) if pre.is_file() else False
    try:
        if "HubertForSequenceClassification" in (cfg.get("architectures") or []):
            seq = tr.HubertForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
            return seq.hubert, seq, normalize
        return tr.HubertModel.from_pretrained(folder, local_files_only=True).eval(), None, normalize
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load HuBERT from {folder}: {str(exc).splitlines()[0]}") from None


# fairseq HubertModel parameter names -> transformers HubertModel names (prefix rewrites, in order)
_FAIRSEQ_RENAMES = [
    ("post_extract_proj.", "feature_projection.projection."),
    ("layer_norm.", "feature_projection.layer_norm."),  # top-level only (checked below)
    ("encoder.pos_conv.0.", "encoder.pos_conv_embed.conv."),
    ("mask_emb", "masked_spec_embed"),
]
_LAYER_RENAMES = [
    ("self_attn.k_proj.", "attention.k_proj."),
    ("self_attn.v_proj.", "attention.v_proj."),
    ("self_attn.q_proj.", "attention.q_proj."),
    ("self_attn.out_proj.", "attention.out_proj."),
    ("self_attn_layer_norm.", "layer_norm."),
    ("fc1.", "feed_forward.intermediate_dense."),
    ("fc2.", "feed_forward.output_dense."),
    ("final_layer_norm.", "final_layer_norm."),
]


def fairseq_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a fairseq HuBERT state_dict to transformers' HubertModel names (pretraining heads dropped)."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("w2v_encoder.w2v_model.")
        if k.startswith(("label_embs", "final_proj")):
            continue  # pretraining targets, not part of the encoder
        if k.startswith("feature_extractor.conv_layers."):
            # N.0 = conv, N.2 = GroupNorm (layer 0, "default" mode) or N.2.1 = LayerNorm ("layer_norm" mode)
            parts = k.split(".")
            if parts[3] == "0":
                k = ".".join([*parts[:3], "conv", *parts[4:]])
            elif parts[3] == "2":
                k = ".".join([*parts[:3], "layer_norm", *parts[5 if parts[4] == "1" else 4 :]])
            else:
                continue
        elif k.startswith("encoder.layers."):
            head, rest = k.split(".", 3)[:3], k.split(".", 3)[3]
            for a, b in _LAYER_RENAMES:
                if rest.startswith(a):
                    rest = b + rest[len(a) :]
                    break
            k = ".".join([*head, rest])
        elif not k.startswith("encoder.layer_norm."):
            for a, b in _FAIRSEQ_RENAMES:
                if k.startswith(a):
                    k = b + k[len(a) :]
                    break
        # weight norm of the positional conv: weight_g / weight_v -> torch parametrization names
        k = k.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
        k = k.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        out[k] = v
    return out


def conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """fairseq's conv_feature_layers string ("[(512,10,5)] + [(512,3,2)] * 4 + ...") without eval()."""
    import ast

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise UserError(f"cannot read conv_feature_layers {spec!r}")

    try:
        layers = ev(ast.parse(spec, mode="eval"))
    except SyntaxError:
        raise UserError(f"cannot read conv_feature_layers {spec!r}") from None
    return [tuple(x) for x in layers]


def load_fairseq(tr, path: Path) -> nn.Module:
    """A fairseq HuBERT checkpoint (.pt with "model" and "cfg"/"args") as a transformers HubertModel."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise UserError(f"{path} pickles {exc.name!r} objects: pip install {exc.name} to read it") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise UserError(f"cannot read fairseq checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path} is not a fairseq checkpoint (no 'model' state_dict)")
    mcfg = _fairseq_cfg(ckpt)
    state = fairseq_to_hf(ckpt["model"])
    conv = conv_layers(mcfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"))
    cfg = tr.HubertConfig(
        hidden_size=int(mcfg.get("encoder_embed_dim", 768)),
        num_hidden_layers=int(mcfg.get("encoder_layers", 12)),
        num_attention_heads=int(mcfg.get("encoder_attention_heads", 12)),
        intermediate_size=int(mcfg.get("encoder_ffn_embed_dim", 3072)),
        conv_dim=tuple(c[0] for c in conv),
        conv_kernel=tuple(c[1] for c in conv),
        conv_stride=tuple(c[2] for c in conv),
        conv_bias=bool(mcfg.get("conv_bias", False)),
        feat_extract_norm="layer" if mcfg.get("extractor_mode") == "layer_norm" else "group",
        do_stable_layer_norm=bool(mcfg.get("layer_norm_first", False)),
        num_conv_pos_embeddings=int(mcfg.get("conv_pos", 128)),
        num_conv_pos_embedding_groups=int(mcfg.get("conv_pos_groups", 16)),
    )
    model = tr.HubertModel(cfg).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "masked_spec_embed" not in k]
    if missing or unexpected:
        raise UserError(
            f"{path}: fairseq weights do not fit HubertModel (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return model


def _fairseq_cfg(ckpt: dict) -> dict:
    cfg = ckpt.get("cfg")
    if cfg is not None:
        m = cfg["model"] if isinstance(cfg, dict) else getattr(cfg, "model", None)
        if m is not None:
            return dict(m) if not isinstance(m, dict) else m
    args = ckpt.get("args")
    return vars(args) if args is not None and not isinstance(args, dict) else (args or {})
