"""Whisper's audio encoder as a graph that returns the hidden states an emotion head needs.

`EncoderStates` re-states the encoder's forward pass with plain tensor ops (no attention masks, no
SDPA kernels) so it exports to ONNX with a dynamic frame axis: conv1 (k3) + GELU, conv2 (k3,
stride 2) + GELU, + the position table cut to the input's length, pre-LayerNorm blocks, and the
final LayerNorm on the last block. Hidden state k is the output of block k (0 = conv + positions),
as transformers numbers `hidden_states`; blocks after the deepest chosen state are left out of the
graph, so a head on block 2 of 4 costs half the encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_ser.errors import UserError

from .whisper_ckpt import load_encoder

MEL_INPUT = "mel"
"""Graph input: float32 [1, 80, frames], frames even (Whisper log-mel of the window)."""
STATES_OUTPUT = "hidden"
"""Graph output: float32 [layers, frames / 2, d_model], the chosen hidden states in order."""


class EncoderStates(nn.Module):
    """[1, n_mels, T] log-mel -> [len(layers), T/2, d_model] hidden states (the chosen ones)."""

    def __init__(self, encoder: nn.Module, layers: tuple[int, ...], heads: int) -> None:
        super().__init__()
        n = len(encoder.layers)
        if not layers or any(not 0 <= k <= n for k in layers):
            raise UserError(f"layers must be chosen from 0..{n}, got {list(layers)}")
        self.layers = tuple(int(k) for k in layers)
        self.conv1, self.conv2 = encoder.conv1, encoder.conv2
        self.register_buffer("positions", encoder.embed_positions.weight.detach().clone(), persistent=False)
        self.blocks = nn.ModuleList(list(encoder.layers)[: max(self.layers)])
        self.final_norm = encoder.layer_norm if max(self.layers) == n else None
        self.n_blocks = n
        self.heads = heads

    def _attention(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        att = block.self_attn
        t, d = x.shape[1], x.shape[2]
        hd = d // self.heads
        q = att.q_proj(x).view(1, t, self.heads, hd).transpose(1, 2) * (hd ** -0.5)
        k = att.k_proj(x).view(1, t, self.heads, hd).transpose(1, 2)
        v = att.v_proj(x).view(1, t, self.heads, hd).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return att.out_proj((w @ v).transpose(1, 2).reshape(1, t, d))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.conv1(mel))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for i, block in enumerate(self.blocks):
            x = x + self._attention(block, block.self_attn_layer_norm(x))
            h = block.final_layer_norm(x)
            x = x + block.fc2(nn.functional.gelu(block.fc1(h)))
            if self.final_norm is not None and i == self.n_blocks - 1:
                states.append(self.final_norm(x))
            else:
                states.append(x)
        return torch.cat([states[k] for k in self.layers], dim=0)


def encoder_states(folder: Path, layers: tuple[int, ...] | str) -> tuple[EncoderStates, dict]:
    """(graph module returning the chosen states, checkpoint info) from any supported checkpoint folder.

    layers: state numbers, or the text of --layers ("all", "2", "1,2").
    """
    encoder, info = load_encoder(folder)
    if isinstance(layers, str):
        layers = parse_layers(layers, len(encoder.layers))
    return EncoderStates(encoder, layers, int(info.get("encoder_attention_heads", 6))).eval(), info


def export_onnx(model: EncoderStates, out: Path, opset: int = 17) -> Path:
    """FP32 ONNX with a dynamic frame axis (any even number of mel frames up to 3000)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mel = torch.zeros(1, model.conv1.in_channels, 200)
    with torch.no_grad():
        torch.onnx.export(model, (mel,), str(out), input_names=[MEL_INPUT], output_names=[STATES_OUTPUT],
                          dynamic_axes={MEL_INPUT: {2: "frames"}, STATES_OUTPUT: {1: "positions"}},
                          opset_version=opset, dynamo=False)
    return out


def run_torch(model: EncoderStates, mel: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(mel, np.float32)[None])).numpy()


def parse_layers(text: str, n_blocks: int) -> tuple[int, ...]:
    """"all" -> every hidden state of the encoder (0..n_blocks); "1,2" -> (1, 2)."""
    if text == "all":
        return tuple(range(n_blocks + 1))
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise UserError(f"--layers must be comma-separated state numbers or all, got {text!r}") from None
