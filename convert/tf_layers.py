"""The layers and ops convert.torch2tf translates: torch modules and functions -> TensorFlow ops,
with 4-d values kept in NHWC where the op allows (see convert/torch2tf.py). The names keep their
underscore: they are torch2tf's internals, not an interface of their own."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from edge_ser.errors import ModelError


@dataclass
class _V:
    """A translated value: the tf tensor and whether it is NHWC while torch sees NCHW."""

    t: Any
    nhwc: bool = False


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _logical(v: Any) -> Any:
    """The tf tensor in torch's dimension order."""
    if isinstance(v, _V):
        return tf.transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t
    if isinstance(v, (list, tuple)):
        return type(v)(_logical(x) for x in v)
    return v


def _to_nhwc(v: _V) -> Any:
    if v.nhwc:
        return v.t
    if len(v.t.shape) != 4:
        raise ModelError(f"expected a 4-D [N,C,H,W] tensor for a 2-D layer, got rank {len(v.t.shape)}")
    return tf.transpose(v.t, [0, 2, 3, 1])


def _static_shape(t: Any) -> list[int | None]:
    return list(t.shape)


def _dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _pair(x: Any) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else tuple(x)


def _torch_pad_nhwc(x: Any, pad: tuple[int, int], value: float = 0.0) -> Any:
    if pad == (0, 0):
        return x
    return tf.pad(x, [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]], constant_values=value)


def _conv2d(v: _V, m: nn.Conv2d) -> _V:
    x = _to_nhwc(v)
    w = _np(m.weight)  # [out, in/groups, kh, kw]
    stride, dil = _pair(m.stride), _pair(m.dilation)
    if isinstance(m.padding, str):
        padding = m.padding.upper()
    else:
        x = _torch_pad_nhwc(x, _pair(m.padding))
        padding = "VALID"
    cin = w.shape[1] * m.groups
    if m.groups == 1:
        y = tf.nn.conv2d(
            x, np.transpose(w, (2, 3, 1, 0)), strides=[1, *stride, 1], padding=padding, dilations=[1, *dil, 1]
        )
    elif m.groups == cin and w.shape[1] == 1:
        mult = m.out_channels // cin
        # torch depthwise weight [cin*mult, 1, kh, kw] -> tf [kh, kw, cin, mult]
        dw = np.transpose(w.reshape(cin, mult, w.shape[2], w.shape[3]), (2, 3, 0, 1))
        y = tf.nn.depthwise_conv2d(x, dw, strides=[1, *stride, 1], padding=padding, dilations=dil)
    else:
        raise ModelError(f"grouped Conv2d with groups={m.groups} (not depthwise) is not supported")
    if m.bias is not None:
        y = y + _np(m.bias)
    return _V(y, True)


def _conv1d(v: _V, m: nn.Conv1d) -> _V:
    x = tf.transpose(_logical(v), [0, 2, 1])  # [N, T, C]
    if m.groups != 1:
        raise ModelError("grouped Conv1d is not supported")
    pad = m.padding if isinstance(m.padding, str) else None
    if pad is None:
        p = m.padding[0]
        x = tf.pad(x, [[0, 0], [p, p], [0, 0]]) if p else x
    w = np.transpose(_np(m.weight), (2, 1, 0))  # [k, in, out]
    y = tf.nn.conv1d(x, w, stride=m.stride[0], padding=(pad or "valid").upper(), dilations=m.dilation[0])
    if m.bias is not None:
        y = y + _np(m.bias)
    return _V(tf.transpose(y, [0, 2, 1]))


def _batchnorm(v: _V, m: nn.modules.batchnorm._BatchNorm) -> _V:
    scale = 1.0 / np.sqrt(_np(m.running_var) + m.eps)
    shift = -_np(m.running_mean) * scale
    if m.affine:
        scale, shift = scale * _np(m.weight), shift * _np(m.weight) + _np(m.bias)
    if v.nhwc or len(v.t.shape) == 2:
        return _V(v.t * scale + shift, v.nhwc)
    x = _logical(v)
    extra = [1] * (len(x.shape) - 2)
    return _V(x * scale.reshape(-1, *extra) + shift.reshape(-1, *extra))


def _pool2d(v: _V, m: nn.Module, kind: str) -> _V:
    k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
    p = _pair(m.padding)
    if getattr(m, "ceil_mode", False):
        raise ModelError(f"{type(m).__name__} with ceil_mode=True is not supported")
    x = _to_nhwc(v)
    if kind == "max":
        x = _torch_pad_nhwc(x, p, value=-3.4e38)
        y = tf.nn.max_pool2d(x, k, s, "VALID")
    else:
        if p != (0, 0) and getattr(m, "count_include_pad", True) is False:
            raise ModelError("AvgPool2d with padding and count_include_pad=False is not supported")
        y = tf.nn.avg_pool2d(_torch_pad_nhwc(x, p), k, s, "VALID")
    return _V(y, True)


def _adaptive_pool(v: _V, m: nn.Module, kind: str) -> _V:
    size = m.output_size
    if size not in (1, (1, 1), (1,)):
        raise ModelError(f"{type(m).__name__}({size}) is not supported (only output size 1)")
    if v.nhwc:
        red = tf.reduce_mean if kind == "avg" else tf.reduce_max
        return _V(red(v.t, axis=[1, 2], keepdims=True), True)
    x = _logical(v)
    red = tf.reduce_mean if kind == "avg" else tf.reduce_max
    axes = list(range(2, len(x.shape)))
    return _V(red(x, axis=axes, keepdims=True))


def _linear(x: Any, w: np.ndarray, b: np.ndarray | None) -> Any:
    rank = len(x.shape)
    if rank == 2:
        y = tf.matmul(x, w.T)
    else:
        lead = tf.shape(x)[:-1]
        y = tf.reshape(tf.matmul(tf.reshape(x, [-1, w.shape[1]]), w.T), tf.concat([lead, [w.shape[0]]], 0))
        static = list(x.shape[:-1])
        if all(d is not None for d in static):
            y = tf.reshape(y, [*static, w.shape[0]])
    return y + b if b is not None else y


def _layernorm(x: Any, shape: tuple[int, ...], w: Any, b: Any, eps: float) -> Any:
    axes = list(range(len(x.shape) - len(shape), len(x.shape)))
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), axis=axes, keepdims=True)
    y = (x - mean) * tf.math.rsqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def _gelu(x: Any, approximate: str = "none") -> Any:
    return tf.nn.gelu(x, approximate=approximate == "tanh")


_ELEMENTWISE_MODULES: dict[type, Callable[[nn.Module, Any], Any]] = {
    nn.ReLU: lambda m, x: tf.nn.relu(x),
    nn.ReLU6: lambda m, x: tf.nn.relu6(x),
    nn.LeakyReLU: lambda m, x: tf.nn.leaky_relu(x, m.negative_slope),
    nn.ELU: lambda m, x: tf.nn.elu(x) if m.alpha == 1.0 else tf.where(x > 0, x, m.alpha * (tf.exp(x) - 1)),
    nn.GELU: lambda m, x: _gelu(x, m.approximate),
    nn.SiLU: lambda m, x: x * tf.sigmoid(x),
    nn.Sigmoid: lambda m, x: tf.sigmoid(x),
    nn.Tanh: lambda m, x: tf.tanh(x),
    nn.Hardtanh: lambda m, x: tf.clip_by_value(x, m.min_val, m.max_val),
    nn.Dropout: lambda m, x: x,
    nn.Dropout1d: lambda m, x: x,
    nn.Dropout2d: lambda m, x: x,
    nn.Identity: lambda m, x: x,
}

_ELEMENTWISE_FUNCS: dict[Any, Callable[..., Any]] = {
    torch.relu: tf.nn.relu,
    F.relu: tf.nn.relu,
    F.relu6: tf.nn.relu6,
    torch.sigmoid: tf.sigmoid,
    F.sigmoid: tf.sigmoid,
    torch.tanh: tf.tanh,
    F.tanh: tf.tanh,
    torch.exp: tf.exp,
    torch.log: tf.math.log,
    torch.sqrt: tf.sqrt,
    torch.abs: tf.abs,
    torch.rsqrt: tf.math.rsqrt,
    F.silu: lambda x: x * tf.sigmoid(x),
}

_METHOD_ELEMENTWISE = {
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "exp": tf.exp,
    "log": tf.math.log,
    "sqrt": tf.sqrt,
    "abs": tf.abs,
    "rsqrt": tf.math.rsqrt,
}

_BINARY = {
    operator.add: tf.add,
    torch.add: tf.add,
    operator.sub: tf.subtract,
    torch.sub: tf.subtract,
    operator.mul: tf.multiply,
    torch.mul: tf.multiply,
    operator.truediv: tf.divide,
    torch.div: tf.divide,
    operator.pow: tf.pow,
    torch.pow: tf.pow,
    operator.matmul: tf.matmul,
    torch.matmul: tf.matmul,
    torch.bmm: tf.matmul,
    torch.maximum: tf.maximum,
    torch.minimum: tf.minimum,
}
_METHOD_BINARY = {
    "add": tf.add,
    "sub": tf.subtract,
    "mul": tf.multiply,
    "div": tf.divide,
    "pow": tf.pow,
    "matmul": tf.matmul,
    "bmm": tf.matmul,
}


def _shape(x: Any) -> list[Any]:
    dyn = tf.shape(x)
    return [d if d is not None else dyn[i] for i, d in enumerate(x.shape)]


def _plain(s: Any) -> Any:
    return s.t if isinstance(s, _V) else s


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (int, float)) or (isinstance(x, _V) is False and np.ndim(x) == 0)


def _scalar(x: Any) -> Any:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x


def _map(a: Any, fn: Callable) -> Any:
    return torch.fx.node.map_arg(a, fn)


def _get_attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
