"""Translate a traced torch module into TensorFlow ops, so the TFLite converter can take it.

Why not ONNX -> TF or litert-torch: both pull in version-pinned toolchains; the models this project
exports (heads, small CNNs, VGGish, a MobileNet YAMNet) use a few dozen layer types, so a direct
translation of the torch.fx graph is short, dependency-free beyond tensorflow, and easy to check.

Layout: torch is NCHW, TFLite convolutions are NHWC. Four-dimensional values are kept in NHWC while
they flow through convolution/pooling/batch-norm/elementwise ops and transposed back to torch's
order only where an op depends on dimension order (flatten, reshape, permute, reductions), so the
converted graph does not carry a transpose pair around every layer.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from edge_ser.errors import ModelError

from .tf_layers import (
    _BINARY,
    _ELEMENTWISE_FUNCS,
    _ELEMENTWISE_MODULES,
    _METHOD_BINARY,
    _METHOD_ELEMENTWISE,
    _V,
    _adaptive_pool,
    _batchnorm,
    _conv1d,
    _conv2d,
    _dim,
    _gelu,
    _get_attr,
    _is_scalar,
    _layernorm,
    _linear,
    _logical,
    _map,
    _np,
    _plain,
    _pool2d,
    _scalar,
    _shape,
    _static_shape,
)


class _Translator:
    """Walks an fx graph once, inside a tf.function, producing tf tensors."""

    def __init__(self, gm: torch.fx.GraphModule):
        self.gm = gm
        self.modules = dict(gm.named_modules())

    def run(self, inputs: list[Any]) -> Any:
        env: dict[str, Any] = {}
        it = iter(inputs)
        out = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                x = next(it)
                env[node.name] = x if isinstance(x, _V) else _V(x)
            elif node.op == "get_attr":
                env[node.name] = _V(tf.constant(_np(_get_attr(self.gm, node.target))))
            elif node.op == "output":
                out = _map(node.args[0], lambda n: _logical(env[n.name]))
            else:
                args = _map(node.args, lambda n: env[n.name])
                kwargs = _map(node.kwargs, lambda n: env[n.name])
                try:
                    env[node.name] = self._op(node, args, kwargs)
                except ModelError:
                    raise
                except Exception as exc:  # noqa: BLE001 - name the node the translation failed on
                    raise ModelError(
                        f"cannot translate {node.op} {node.target!s} ({node.name}): {exc}"
                    ) from exc
        return out

    def _op(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            return self._module(self.modules[node.target], args[0], *args[1:], **kwargs)
        if node.op == "call_function":
            return self._function(node.target, args, kwargs)
        if node.op == "call_method":
            return self._method(node.target, args[0], args[1:], kwargs)
        raise ModelError(f"unsupported fx node {node.op}")

    def _module(self, m: nn.Module, v: _V, *rest: Any, **kw: Any) -> _V:
        for cls, fn in _ELEMENTWISE_MODULES.items():
            if type(m) is cls:
                return _V(fn(m, v.t), v.nhwc)
        if isinstance(m, nn.Conv2d):
            return _conv2d(v, m)
        if isinstance(m, nn.Conv1d):
            return _conv1d(v, m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return _batchnorm(v, m)
        if isinstance(m, nn.Linear):
            return _V(_linear(_logical(v), _np(m.weight), None if m.bias is None else _np(m.bias)))
        if isinstance(m, nn.MaxPool2d):
            return _pool2d(v, m, "max")
        if isinstance(m, nn.AvgPool2d):
            return _pool2d(v, m, "avg")
        if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveAvgPool1d):
            return _adaptive_pool(v, m, "avg")
        if isinstance(m, nn.AdaptiveMaxPool2d | nn.AdaptiveMaxPool1d):
            return _adaptive_pool(v, m, "max")
        if isinstance(m, nn.Flatten):
            return self._flatten(v, m.start_dim, m.end_dim)
        if isinstance(m, nn.LayerNorm):
            w = None if m.weight is None else _np(m.weight)
            b = None if m.bias is None else _np(m.bias)
            return _V(_layernorm(_logical(v), tuple(m.normalized_shape), w, b, m.eps))
        if isinstance(m, nn.Softmax):
            return self._softmax(v, m.dim)
        if isinstance(m, nn.LogSoftmax):
            x = _logical(v)
            return _V(tf.nn.log_softmax(x, axis=_dim(m.dim, len(x.shape))))
        raise ModelError(f"layer {type(m).__name__} is not supported by the TFLite export")

    def _flatten(self, v: _V, start: int = 0, end: int = -1) -> _V:
        if v.nhwc and start == 1 and end in (-1, 3):
            h, w = v.t.shape[1], v.t.shape[2]
            if h == 1 and w == 1:  # [N,1,1,C]: the NCHW and NHWC orders agree, no transpose needed
                return _V(tf.reshape(v.t, [-1, v.t.shape[3]]))
        x = _logical(v)
        rank = len(x.shape)
        start, end = _dim(start, rank), _dim(end, rank)
        shape = _static_shape(x)
        merged = shape[start : end + 1]
        if all(d is not None for d in merged):
            mid = [int(np.prod(merged))]
        else:
            mid = [-1]
        lead = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(shape[:start])]
        tail = [d if d is not None else tf.shape(x)[end + 1 + i] for i, d in enumerate(shape[end + 1 :])]
        if mid == [-1] and any(not isinstance(d, int) for d in lead + tail):
            raise ModelError("flatten over dynamic dimensions is not supported")
        return _V(tf.reshape(x, lead + mid + tail))

    def _softmax(self, v: _V, dim: int | None) -> _V:
        x = _logical(v)
        d = _dim(-1 if dim is None else dim, len(x.shape))
        return _V(tf.nn.softmax(x, axis=d))

    def _function(self, fn: Any, args: tuple, kw: dict) -> Any:
        if fn in _ELEMENTWISE_FUNCS:
            v = args[0]
            return _V(_ELEMENTWISE_FUNCS[fn](v.t), v.nhwc)
        if fn in (F.gelu,):
            return _V(_gelu(args[0].t, kw.get("approximate", "none")), args[0].nhwc)
        if fn in (F.dropout, F.dropout1d, F.dropout2d):
            return args[0]
        if fn in _BINARY:
            return self._binary(_BINARY[fn], args[0], args[1])
        if fn is operator.neg or fn is torch.neg:
            return _V(-args[0].t, args[0].nhwc)
        if fn in (torch.softmax, F.softmax):
            return self._softmax(args[0], kw.get("dim", args[1] if len(args) > 1 else -1))
        if fn in (torch.log_softmax, F.log_softmax):
            x = _logical(args[0])
            return _V(
                tf.nn.log_softmax(x, axis=_dim(kw.get("dim", args[1] if len(args) > 1 else -1), len(x.shape)))
            )
        if fn is torch.flatten:
            return self._flatten(args[0], *(args[1:] or (kw.get("start_dim", 0), kw.get("end_dim", -1))))
        if fn in (torch.cat, torch.concat):
            xs = [_logical(a) for a in args[0]]
            return _V(
                tf.concat(xs, axis=_dim(kw.get("dim", args[1] if len(args) > 1 else 0), len(xs[0].shape)))
            )
        if fn is torch.stack:
            xs = [_logical(a) for a in args[0]]
            return _V(
                tf.stack(xs, axis=_dim(kw.get("dim", args[1] if len(args) > 1 else 0), len(xs[0].shape) + 1))
            )
        if fn in (torch.mean, torch.sum, torch.amax, torch.amin):
            name = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin"}[fn]
            return self._method(name, args[0], args[1:], kw)
        if fn is torch.clamp:
            return self._method("clamp", args[0], args[1:], kw)
        if fn is F.linear:
            w = args[1].t
            x = _logical(args[0])
            y = tf.matmul(x, w, transpose_b=True) if len(x.shape) == 2 else tf.einsum("...i,oi->...o", x, w)
            return _V(y + args[2].t if len(args) > 2 and args[2] is not None else y)
        if fn is F.layer_norm:
            w, b = kw.get("weight"), kw.get("bias")
            return _V(
                _layernorm(_logical(args[0]), tuple(args[1]), w and w.t, b and b.t, kw.get("eps", 1e-5))
            )
        if fn is operator.getitem:
            return self._getitem(args[0], args[1])
        if fn is getattr:
            if args[1] == "shape":
                return _shape(_logical(args[0]))
            raise ModelError(f"getattr {args[1]!r} is not supported")
        if fn in (torch.transpose, torch.permute, torch.reshape, torch.squeeze, torch.unsqueeze):
            return self._method(fn.__name__, args[0], args[1:], kw)
        raise ModelError(f"function {getattr(fn, '__name__', fn)} is not supported by the TFLite export")

    def _binary(self, op: Callable, a: Any, b: Any) -> _V:
        if isinstance(a, _V) and isinstance(b, _V):
            if a.nhwc and b.nhwc:
                return _V(op(a.t, b.t), True)
            return _V(op(_logical(a), _logical(b)))
        if isinstance(a, _V):
            return _V(op(a.t, _scalar(b)), a.nhwc) if _is_scalar(b) else _V(op(_logical(a), b))
        if isinstance(b, _V):
            return _V(op(_scalar(a), b.t), b.nhwc) if _is_scalar(a) else _V(op(a, _logical(b)))
        return op(a, b)  # python numbers (shape arithmetic)

    def _method(self, name: str, v: Any, args: tuple, kw: dict) -> Any:
        if name in _METHOD_ELEMENTWISE:
            return _V(_METHOD_ELEMENTWISE[name](v.t), v.nhwc)
        if name in _METHOD_BINARY:
            return self._binary(_METHOD_BINARY[name], v, args[0])
        if name in ("contiguous", "float", "detach", "clone"):
            return v
        if name == "size":
            shp = _shape(_logical(v))
            return shp[args[0]] if args else shp
        if name == "dim":
            return len(v.t.shape)
        if name == "softmax":
            return self._softmax(v, kw.get("dim", args[0] if args else -1))
        if name == "flatten":
            return self._flatten(v, *(args or (kw.get("start_dim", 0), kw.get("end_dim", -1))))
        x = _logical(v)
        rank = len(x.shape)
        if name in ("view", "reshape"):
            shape = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
            return _V(tf.reshape(x, [_plain(s) for s in shape]))
        if name == "permute":
            perm = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
            return _V(tf.transpose(x, [_dim(p, rank) for p in perm]))
        if name == "transpose":
            d0, d1 = _dim(args[0], rank), _dim(args[1], rank)
            perm = list(range(rank))
            perm[d0], perm[d1] = perm[d1], perm[d0]
            return _V(tf.transpose(x, perm))
        if name == "unsqueeze":
            return _V(tf.expand_dims(x, _dim(args[0] if args else kw["dim"], rank + 1)))
        if name == "squeeze":
            d = args[0] if args else kw.get("dim")
            return _V(tf.squeeze(x) if d is None else tf.squeeze(x, axis=_dim(d, rank)))
        if name in ("mean", "sum", "amax", "amin", "max", "min"):
            dim = kw.get("dim", args[0] if args else None)
            keep = kw.get("keepdim", args[1] if len(args) > 1 else False)
            if name in ("max", "min") and dim is not None:
                raise ModelError(f".{name}(dim) returns indices too; use amax/amin")
            red = {
                "mean": tf.reduce_mean,
                "sum": tf.reduce_sum,
                "amax": tf.reduce_max,
                "max": tf.reduce_max,
                "amin": tf.reduce_min,
                "min": tf.reduce_min,
            }[name]
            axes = (
                None
                if dim is None
                else [_dim(d, rank) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
            )
            return _V(red(x, axis=axes, keepdims=bool(keep)))
        if name == "clamp":
            lo = kw.get("min", args[0] if args else None)
            hi = kw.get("max", args[1] if len(args) > 1 else None)
            y = x if lo is None else tf.maximum(x, float(lo))
            return _V(y if hi is None else tf.minimum(y, float(hi)))
        if name == "expand_as":
            return _V(tf.broadcast_to(x, tf.shape(_logical(args[0]))))
        raise ModelError(f"tensor method .{name}() is not supported by the TFLite export")

    def _getitem(self, v: Any, idx: Any) -> Any:
        if not isinstance(v, _V):
            return v[idx]
        x = _logical(v)
        idx = idx if isinstance(idx, tuple) else (idx,)
        out = x
        squeeze = []
        begin, end, strides = [], [], []
        for i, s in enumerate(idx):
            if s is Ellipsis:
                raise ModelError("Ellipsis indexing is not supported")
            if s is None:
                raise ModelError("None indexing is not supported; use unsqueeze")
            if isinstance(s, slice):
                begin.append(s.start or 0)
                end.append(s.stop if s.stop is not None else (x.shape[i] or 2**31 - 1))
                strides.append(s.step or 1)
            else:
                begin.append(s)
                end.append(s + 1 if s != -1 else (x.shape[i] or 2**31 - 1))
                strides.append(1)
                squeeze.append(i)
        out = tf.strided_slice(x, begin, end, strides, shrink_axis_mask=sum(1 << i for i in squeeze))
        return _V(out)


def trace(module: nn.Module) -> torch.fx.GraphModule:
    """fx-trace `module` (eval mode); a module fx cannot trace gives one clear ModelError."""
    module = module.eval()
    try:
        return torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; one line for the user
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot trace {type(module).__name__} for export: {first}") from exc


def translate(module: nn.Module) -> Callable[..., Any]:
    """f(*tf tensors) -> tf output(s), in torch's dimension order; call it inside a tf.function.

    Pass `nhwc=True` when the (4-D) inputs are already NHWC tensors that torch sees as NCHW.
    """
    tr = _Translator(trace(module))

    def run(*xs: Any, nhwc: bool = False) -> Any:
        return tr.run([_V(x, nhwc) for x in xs])

    return run


def tf_function(
    module: nn.Module, input_specs: list[tf.TensorSpec]
) -> tf.types.experimental.ConcreteFunction:
    """A concrete tf.function computing `module` (float32 inputs as in `input_specs`, outputs as torch).

    The module's outputs are returned by position as `output_0`, `output_1`, ... (a single tensor as
    `output_0`); `tflite_export.export_tflite` renames them to what the manifest expects.
    """
    gm = trace(module)
    tr = _Translator(gm)

    @tf.function(input_signature=input_specs, autograph=False)
    def fn(*xs: Any) -> dict[str, Any]:
        out = tr.run(list(xs))
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        return {f"output_{i}": o for i, o in enumerate(outs)}

    return fn.get_concrete_function()


def check_close(module: nn.Module, fn: Any, inputs: list[np.ndarray], atol: float = 1e-4) -> float:
    """Max abs difference between torch and the translated function on `inputs` (raises past atol)."""
    with torch.no_grad():
        ref = module.eval()(*[torch.from_numpy(np.asarray(x, np.float32)) for x in inputs])
    refs = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    got = fn(*[tf.constant(np.asarray(x, np.float32)) for x in inputs])
    worst = 0.0
    for i, r in enumerate(refs):
        worst = max(worst, float(np.max(np.abs(got[f"output_{i}"].numpy() - r.numpy()))))
    if not math.isfinite(worst) or worst > atol:
        raise ModelError(f"TensorFlow translation differs from torch by {worst:.3g} (> {atol})")
    return worst
