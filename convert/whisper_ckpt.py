"""Whisper checkpoints as users have them -> a float32 transformers `WhisperEncoder`.

A checkpoint folder holds one of:
- `model.safetensors` or `pytorch_model.bin` with Hugging Face names: a full `openai/whisper-*`
  folder (`WhisperForConditionalGeneration`: `model.encoder.*` plus decoder keys, ignored) or an
  encoder-only copy (`model.encoder.*` / `encoder.*`); its `config.json` gives the sizes;
- `model.bin`, a CTranslate2 model (faster-whisper and friends), binary format versions 4-6. Its
  sizes come from the tensors themselves (width, layers, FFN, mel bands) and from the scalar
  `encoder/num_heads`, so the `config.json` beside it (token lists only) is not needed.

The CTranslate2 layout, as `ctranslate2.specs.model_spec.ModelSpec._serialize` writes it (all
integers little-endian): u32 binary version, string spec name, u32 spec revision, u32 variable
count, then per variable: string name, u8 rank, u32 per dimension, u8 dtype id (float32, int8,
int16, int32, float16, bfloat16), u32 byte count, raw bytes; then u32 alias count and (alias,
target) string pairs. A string is a u16 length counting a trailing NUL, the UTF-8 bytes, the NUL.
Quantized linear weights have a `<name>_scale` variable (int8: per output row, w = q / scale;
int16: one scalar). The encoder's self-attention stores q, k and v fused as `linear_0`
([3 d, d] rows in that order) and the output projection as `linear_1`.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_ser.errors import UserError
from edge_ser.manifest import sha256_of

CT2_FILE = "model.bin"
HF_FILES = ("model.safetensors", "pytorch_model.bin")
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
"""CTranslate2's DataType enum order (include/ctranslate2/types.h): the dtype id is the index."""
CT2_VERSIONS = (4, 5, 6)
"""Binary versions with the (dtype id, byte count) variable header this reader understands."""
ENCODER_KEYS = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins",
                "max_source_positions", "activation_function")
"""config.json keys that shape the encoder (the decoder's are irrelevant here)."""


def load_encoder(folder: Path) -> tuple[nn.Module, dict]:
    """(float32 WhisperEncoder in eval mode, info) from a checkpoint folder of any supported format.

    info: the encoder config keys, `format`, `weights` (file name) and `weights_sha256`, and
    `origin` (a `source` line of config.json, when there is one).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"Whisper checkpoint folder not found: {folder}")
    cfg_path = folder / "config.json"
    cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
    hf = next((folder / f for f in HF_FILES if (folder / f).is_file()), None)
    if hf is not None:
        if not cfg:
            raise UserError(f"{folder} has {hf.name} but no config.json (the encoder's sizes are in it)")
        state = _hf_encoder_state(hf)
        enc_cfg = {k: cfg[k] for k in ENCODER_KEYS if k in cfg}
        fmt, weights = "huggingface", hf
    elif (folder / CT2_FILE).is_file():
        weights = folder / CT2_FILE
        variables = read_ct2(weights)
        state, enc_cfg = ct2_to_hf(variables, weights)
        fmt = "ctranslate2"
    else:
        raise UserError(f"{folder} holds no Whisper checkpoint ({', '.join(HF_FILES)} with config.json, "
                        f"or a CTranslate2 {CT2_FILE})")
    encoder = _build(enc_cfg, state, weights)
    info = dict(enc_cfg) | {"format": fmt, "weights": weights.name, "weights_sha256": sha256_of(weights)}
    if isinstance(cfg.get("source"), str):
        info["origin"] = cfg["source"]
        m = re.search(r"model\.bin sha256 ([0-9a-f]{64})", cfg["source"])
        if m:
            info["ct2_model_bin_sha256"] = m.group(1)
    if fmt == "ctranslate2":
        info["ct2_model_bin_sha256"] = info["weights_sha256"]
    return encoder, info


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must be a JSON object")
    return data


def _hf_encoder_state(path: Path) -> dict[str, torch.Tensor]:
    """Encoder tensors of a Hugging Face file, names relative to the encoder, float32."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors/torch raise many types for a bad file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {path}: {why}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a state_dict")
    state = {}
    for k, v in raw.items():
        for prefix in ("model.encoder.", "encoder."):
            if k.startswith(prefix) and isinstance(v, torch.Tensor):
                state[k[len(prefix):]] = v.float()
                break
    if not state:
        raise UserError(f"{path} has no Whisper encoder tensors (model.encoder.* or encoder.*)")
    return state


def _build(enc_cfg: dict, state: dict[str, torch.Tensor], weights: Path) -> nn.Module:
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    transformers.logging.set_verbosity_error()
    encoder = WhisperEncoder(transformers.WhisperConfig(**enc_cfg))
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{weights}: the tensors do not fit a Whisper encoder of its config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return encoder.eval()


# --- CTranslate2 model.bin ------------------------------------------------------------------------

class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise UserError(f"{self.path} is truncated (a CTranslate2 model.bin ends at byte "
                            f"{len(self.data)}, needed {self.pos + n})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.u("H"))
        return raw[:-1].decode("utf-8")


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin by name (aliases resolved), in its stored dtype."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    version = r.u("I")
    if version not in CT2_VERSIONS:
        raise UserError(f"{path}: CTranslate2 binary version {version} is not supported "
                        f"(this reader knows {', '.join(map(str, CT2_VERSIONS))})")
    spec = r.string()
    r.u("I")  # spec revision: the Whisper encoder's variable names are the same in revisions 1-3
    if spec != "WhisperSpec":
        raise UserError(f"{path} is a CTranslate2 {spec or 'unnamed'} model, not Whisper")
    out: dict[str, np.ndarray] = {}
    for _ in range(r.u("I")):
        name = r.string()
        shape = tuple(r.u("I") for _ in range(r.u("B")))
        type_id = r.u("B")
        if type_id >= len(CT2_DTYPES):
            raise UserError(f"{path}: variable {name} has unknown dtype id {type_id}")
        raw = r.take(r.u("I"))
        dtype = CT2_DTYPES[type_id]
        if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 bits to float32's top half
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
        if arr.size != int(np.prod(shape)):
            raise UserError(f"{path}: variable {name} has {arr.size} values for shape {list(shape)}")
        out[name] = arr.reshape(shape)
    for _ in range(r.u("I")):
        alias, target = r.string(), r.string()
        if target in out:
            out[alias] = out[target]
            if target + "_scale" in out:
                out[alias + "_scale"] = out[target + "_scale"]
    return out


NORMS = (("self_attn_layer_norm", "self_attention/layer_norm"), ("final_layer_norm", "ffn/layer_norm"))
"""Per block: transformers LayerNorm name -> CTranslate2 scope (gamma = weight, beta = bias)."""


def _dequant(v: dict[str, np.ndarray], name: str, path: Path) -> torch.Tensor:
    if name not in v:
        raise UserError(f"{path}: CTranslate2 Whisper model lacks {name}")
    w = v[name]
    scale = v.get(name + "_scale")
    if scale is not None and w.dtype in (np.int8, np.int16):
        s = np.asarray(scale, np.float32)
        w = w.astype(np.float32) / (s.reshape(-1, *([1] * (w.ndim - 1))) if s.ndim else s)
    return torch.from_numpy(np.array(w, np.float32))


def ct2_to_hf(v: dict[str, np.ndarray], path: Path = Path(CT2_FILE)) -> tuple[dict[str, torch.Tensor], dict]:
    """(WhisperEncoder state_dict, encoder config) from CTranslate2 variables."""
    e = "encoder/"
    n_layers = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    if n_layers == 0 or e + "conv1/weight" not in v:
        raise UserError(f"{path}: no Whisper encoder variables (encoder/conv1, encoder/layer_N)")
    state = {
        "conv1.weight": _dequant(v, e + "conv1/weight", path),
        "conv1.bias": _dequant(v, e + "conv1/bias", path),
        "conv2.weight": _dequant(v, e + "conv2/weight", path),
        "conv2.bias": _dequant(v, e + "conv2/bias", path),
        "embed_positions.weight": _dequant(v, e + "position_encodings/encodings", path),
        "layer_norm.weight": _dequant(v, e + "layer_norm/gamma", path),
        "layer_norm.bias": _dequant(v, e + "layer_norm/beta", path),
    }
    d = state["conv1.weight"].shape[0]
    for i in range(n_layers):
        src, dst = f"{e}layer_{i}/", f"layers.{i}."
        qkv_w = _dequant(v, src + "self_attention/linear_0/weight", path)
        qkv_b = _dequant(v, src + "self_attention/linear_0/bias", path)
        if qkv_w.shape[0] != 3 * d:
            raise UserError(f"{path}: {src}self_attention/linear_0/weight has {qkv_w.shape[0]} rows, "
                            f"fused q/k/v of width {d} needs {3 * d}")
        q, k, vv = qkv_w.split(d)
        qb, _, vb = qkv_b.split(d)  # a key bias shifts every logit of a query alike: softmax ignores it
        state |= {dst + "self_attn.q_proj.weight": q, dst + "self_attn.q_proj.bias": qb,
                  dst + "self_attn.k_proj.weight": k,
                  dst + "self_attn.v_proj.weight": vv, dst + "self_attn.v_proj.bias": vb}
        for hf, ct in (("self_attn.out_proj", "self_attention/linear_1"), ("fc1", "ffn/linear_0"),
                       ("fc2", "ffn/linear_1")):
            state[dst + hf + ".weight"] = _dequant(v, src + ct + "/weight", path)
            state[dst + hf + ".bias"] = _dequant(v, src + ct + "/bias", path)
        for hf, ct in NORMS:
            state[dst + hf + ".weight"] = _dequant(v, src + ct + "/gamma", path)
            state[dst + hf + ".bias"] = _dequant(v, src + ct + "/beta", path)
    # every Whisper size has 64-wide heads, should an old file lack the scalar
    heads = int(np.ravel(v[e + "num_heads"])[0]) if e + "num_heads" in v else d // 64
    cfg = {
        "d_model": d,
        "encoder_layers": n_layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": int(state["layers.0.fc1.weight"].shape[0]),
        "num_mel_bins": int(state["conv1.weight"].shape[1]),
        "max_source_positions": int(state["embed_positions.weight"].shape[0]),
    }
    return state, cfg


def hf_to_ct2(encoder: nn.Module, heads: int, quantization: str = "float16") -> dict[str, np.ndarray]:
    """CTranslate2 encoder variables of a WhisperEncoder (what its transformers converter writes).

    quantization: float16/float32 (every tensor), or int8 (linear weights int8 with per-row
    scales, the rest float16, as CTranslate2's int8_float16).
    """
    sd = {k: t.detach().float().numpy() for k, t in encoder.state_dict().items()}
    flt = np.float32 if quantization == "float32" else np.float16
    out: dict[str, np.ndarray] = {"encoder/num_heads": np.array(heads, np.int16)}

    def put(name: str, arr: np.ndarray, linear: bool = False) -> None:
        if linear and quantization == "int8":
            amax = np.abs(arr).max(axis=1)
            amax[amax == 0] = 127.0
            scale = (127.0 / amax).astype(np.float32)
            out[name] = np.rint(arr * scale[:, None]).astype(np.int8)
            out[name + "_scale"] = scale
        else:
            out[name] = arr.astype(flt)

    e = "encoder/"
    for c in ("conv1", "conv2"):
        put(f"{e}{c}/weight", sd[f"{c}.weight"])
        put(f"{e}{c}/bias", sd[f"{c}.bias"])
    put(e + "position_encodings/encodings", sd["embed_positions.weight"])
    put(e + "layer_norm/gamma", sd["layer_norm.weight"])
    put(e + "layer_norm/beta", sd["layer_norm.bias"])
    for i in range(len(encoder.layers)):
        p, dst = f"layers.{i}.", f"{e}layer_{i}/"
        zero = np.zeros_like(sd[p + "self_attn.q_proj.bias"])
        put(dst + "self_attention/linear_0/weight", np.concatenate(
            [sd[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]), linear=True)
        put(dst + "self_attention/linear_0/bias", np.concatenate(
            [sd[p + "self_attn.q_proj.bias"], zero, sd[p + "self_attn.v_proj.bias"]]))
        for hf, ct in (("self_attn.out_proj", "self_attention/linear_1"), ("fc1", "ffn/linear_0"),
                       ("fc2", "ffn/linear_1")):
            put(dst + ct + "/weight", sd[p + hf + ".weight"], linear=True)
            put(dst + ct + "/bias", sd[p + hf + ".bias"])
        for hf, ct in NORMS:
            put(dst + ct + "/gamma", sd[p + hf + ".weight"])
            put(dst + ct + "/beta", sd[p + hf + ".bias"])
    return out


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
              spec: str = "WhisperSpec", revision: int = 3, version: int = 6) -> Path:
    """A CTranslate2 model.bin with these variables (sorted by name, as CTranslate2 writes them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def string(s: str) -> bytes:
        raw = s.encode("utf-8")
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    parts = [struct.pack("<I", version), string(spec), struct.pack("<I", revision),
             struct.pack("<I", len(variables))]
    for name in sorted(variables):
        arr = np.ascontiguousarray(variables[name])
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        parts += [string(name), struct.pack("<B", arr.ndim), *(struct.pack("<I", n) for n in arr.shape),
                  struct.pack("<B", CT2_DTYPES.index(arr.dtype.name)), struct.pack("<I", len(raw)), raw]
    aliases = aliases or {}
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [string(alias), string(target)]
    path.write_bytes(b"".join(parts))
    return path
