"""A whole YAMNet (+ head) as one TFLite file, waveform [1, samples] -> probs, from torch weights.

For fine-tuned YAMNets (issue 7): training/yamnet_model.py rebuilds YAMNet in torch, but its
forward pass is not fx-traceable (data-dependent "SAME" padding, unfold, rfft), so this module
builds the same network directly with TensorFlow ops, which have "SAME" padding natively, and
takes the weights from the torch state_dict:

    from convert.yamnet_tf import yamnet_function
    from convert.tflite_export import export_concrete
    fn = yamnet_function(yamnet.state_dict(), head=my_head)          # head: torch, pooled -> probs
    blob = export_concrete(fn, ["waveform"], ["probs"], "dynamic")   # or float16 / int8 (+ fallback)

or `convert.waveform_export.convert_whole(fn, "waveform", reference, data, ...)` for the parity
report and manifest entry. The log-mel frontend is convert.frontend_tf (float RFFT, offset 0.001),
i.e. the published float frontend, not yamnet.tflite's INT8 mel product.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from . import frontend_tf

SAMPLES = 32000
PATCH, PATCH_HOP = 96, 48
MIN_SAMPLES = 15600
PATCH_HOP_SAMPLES = PATCH_HOP * 160
LAYERS = [
    ("conv", 2),
    ("sep", 1),
    ("sep", 2),
    ("sep", 1),
    ("sep", 2),
    ("sep", 1),
    ("sep", 2),
    ("sep", 1),
    ("sep", 1),
    ("sep", 1),
    ("sep", 1),
    ("sep", 1),
    ("sep", 2),
    ("sep", 1),
]
"""(kind, stride) of YAMNet's 14 MobileNet-v1 layers (yamnet.py _YAMNET_LAYER_DEFS)."""


def padded_length(samples: int) -> int:
    """The published pad_waveform: at least one patch, then whole 0.48 s patch hops."""
    extra = max(samples, MIN_SAMPLES) - MIN_SAMPLES
    return MIN_SAMPLES + math.ceil(extra / PATCH_HOP_SAMPLES) * PATCH_HOP_SAMPLES


def n_patches(samples: int) -> int:
    """0.96 s patches YAMNet makes of `samples` samples (4 for a 2 s window)."""
    return 1 + (padded_length(samples) - MIN_SAMPLES) // PATCH_HOP_SAMPLES


def _np(state: dict, key: str) -> np.ndarray:
    return state[key].detach().cpu().numpy().astype(np.float32)


def backbone_tf(patches, state: dict, prefix: str = "backbone."):
    """TF MobileNet-v1 of YAMNet: patches [n, 96, 64] -> embeddings [n, 1024] (ReLU, global mean)."""
    import tensorflow as tf

    x = patches[..., None]
    for i, (kind, stride) in enumerate(LAYERS, start=1):
        p = f"{prefix}layer{i}."
        if kind == "conv":
            w = np.transpose(_np(state, p + "conv.weight"), (2, 3, 1, 0))
            x = tf.nn.relu(tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME") + _np(state, p + "conv.bias"))
        else:
            dw = np.transpose(_np(state, p + "dw.weight"), (2, 3, 0, 1))  # [in, 1, 3, 3] -> [3, 3, in, 1]
            x = tf.nn.relu(
                tf.nn.depthwise_conv2d(x, dw, [1, stride, stride, 1], "SAME") + _np(state, p + "dw.bias")
            )
            pw = np.transpose(_np(state, p + "pw.weight"), (2, 3, 1, 0))
            x = tf.nn.relu(tf.nn.conv2d(x, pw, [1, 1, 1, 1], "VALID") + _np(state, p + "pw.bias"))
    return tf.reduce_mean(x, axis=[1, 2])


def yamnet_function(state: dict, head: nn.Module | None = None, samples: int = SAMPLES, scores: bool = False):
    """Concrete tf.function: waveform [1, samples] -> {"output_0": probs [1, n]} (head on mean-pooled
    embeddings), or embeddings [n_patches, 1024] without a head; scores=True adds the AudioSet
    sigmoid scores [n_patches, 521] as "output_1" (class 0 = Speech, for the daemon's speech gate)."""
    import tensorflow as tf

    from .torch2tf import translate

    head_fn = translate(head.eval()) if head is not None else None
    count = n_patches(samples)

    @tf.function(input_signature=[tf.TensorSpec([1, samples], tf.float32, name="waveform")], autograph=False)
    def fn(waveform):
        padded = tf.pad(waveform, [[0, 0], [0, padded_length(samples) - samples]])
        log_mel = frontend_tf.log_mel_tf(padded, frontend_tf.YAMNET_LOG_OFFSET)
        emb = backbone_tf(frontend_tf.patches_tf(log_mel, PATCH, PATCH_HOP, count), state)
        out = {"output_0": head_fn(tf.reduce_mean(emb, axis=0, keepdims=True)) if head_fn else emb}
        if scores:
            out["output_1"] = tf.sigmoid(
                tf.matmul(emb, _np(state, "logits.weight").T) + _np(state, "logits.bias")
            )
        return out

    return fn.get_concrete_function()
