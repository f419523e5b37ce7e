"""`python -m convert hubert`: HuBERT (+ head) -> one ONNX graph (waveform -> probs) -> INT8 ONNX.

The head is folded into the same graph (mean over frames, then the head with softmax), so the
daemon runs one file per window. Quantization is onnxruntime's dynamic INT8: weights int8,
activations quantized per call. Candidates are measured and the fastest one within the accuracy
target is kept; on HuBERT-base, MatMul-only INT8 was about 2x faster than float while all-op INT8
was slower than float (ConvInteger for the conv feature encoder is slow in onnxruntime).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artefact import eval_data, parity
from artefact.manifest import DEFAULT_MANIFEST, file_ref, write_entry
from artefact.parity import Result
from edge_ser.errors import UserError
from edge_ser.labels import EMOTIONS, NEUTRAL
from edge_ser.manifest import ModelEntry

from . import head_model
from .hubert_ckpt import load_fairseq, load_hf

OPSET = 17
CANDIDATES = {
    "int8-matmul": {"op_types_to_quantize": ["MatMul"]},
    "int8-matmul-gemm": {"op_types_to_quantize": ["MatMul", "Gemm"]},
    "int8-all": {"op_types_to_quantize": None},
}
"""onnxruntime.quantization.quantize_dynamic settings; the fastest one within target is kept."""
DEFAULT_CANDIDATES = ("int8-matmul", "int8-all")
"""Measured by default (HuBERT has no Gemm nodes, so int8-matmul-gemm only adds time there)."""

TINY_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
"""A randomly initialised HuBERT of the real architecture, small enough for tests."""




class HubertClassifier(nn.Module):
    """Waveform [1, samples] -> (optional zero-mean/unit-variance) -> HuBERT -> mean -> head -> probs."""

    def __init__(self, hubert: nn.Module, head: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.hubert, self.head, self.normalize = hubert, head, normalize

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.normalize:  # what the checkpoint's feature extractor does (do_normalize)
            mean = waveform.mean(dim=-1, keepdim=True)
            var = ((waveform - mean) ** 2).mean(dim=-1, keepdim=True)
            waveform = (waveform - mean) / torch.sqrt(var + 1e-7)
        frames = self.hubert(waveform).last_hidden_state
        return self.head(frames.mean(dim=1))


class _SeqClsHead(nn.Module):
    """HubertForSequenceClassification's projector + classifier + softmax, over mean-pooled frames."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.projector, self.classifier = model.projector, model.classifier

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(self.projector(pooled)), dim=-1)


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise UserError("the hubert conversion needs transformers: pip install -e '.[convert]'") from exc
    transformers.logging.set_verbosity_error()
    return transformers


def load_model(
    checkpoint: Path | None,
    head_folder: Path | None,
    labels: list[str] | None,
    random_tiny: bool = False,
    seed: int = 0,
) -> tuple[HubertClassifier, list[str], dict]:
    """(model, labels, info) from a HF folder / fairseq checkpoint / random tiny config, plus a head."""
    tr = _transformers()
    torch.manual_seed(seed)
    normalize = False
    seq_cls = None
    if random_tiny:
        hubert = tr.HubertModel(tr.HubertConfig(**TINY_CONFIG))
        source = "random-init tiny HuBERT (tests)"
    elif checkpoint is None:
        raise UserError(
            "give --checkpoint PATH (a Hugging Face HuBERT folder or a fairseq .pt) or --random-tiny"
        )
    else:
        checkpoint = Path(checkpoint)
        if not checkpoint.exists():
            raise UserError(f"checkpoint not found: {checkpoint}")
        if checkpoint.is_dir():
            hubert, seq_cls, normalize = load_hf(tr, checkpoint)
        else:
            hubert = load_fairseq(tr, checkpoint)
        source = str(checkpoint)
    hidden = hubert.config.hidden_size
    if head_folder is not None:
        spec, head = head_model.load_float_model(head_folder)
        head_model.check_input_dim(spec, "hubert", backbone_dim=hidden)
        labels = list(spec["labels"])
    elif seq_cls is not None:
        head = _SeqClsHead(seq_cls)
        id2label = seq_cls.config.id2label or {}
        labels = labels or [id2label[i] for i in sorted(id2label)]
    elif random_tiny:
        labels = labels or [*EMOTIONS, NEUTRAL]
        head = nn.Sequential(nn.Linear(hidden, len(labels)), nn.Softmax(dim=-1))
    else:
        raise UserError(
            f"{checkpoint} has no classification head: pass --head FOLDER (a trained head "
            "on HuBERT features) or a HubertForSequenceClassification folder"
        )
    allowed = {*EMOTIONS, NEUTRAL}
    if not labels or not set(labels) <= allowed:
        raise UserError(f"labels {labels} must be drawn from {', '.join(sorted(allowed))}; pass --labels")
    model = HubertClassifier(hubert.eval(), head.eval(), normalize).eval()
    info = {
        "source": source,
        "hidden_size": hidden,
        "layers": hubert.config.num_hidden_layers,
        "normalize": normalize,
    }
    return model, labels, info


def export_onnx(model: nn.Module, path: Path, samples: int = 32000) -> None:
    """ONNX (opset 17), input `waveform` [1, samples] with a dynamic length axis, output `probs`."""
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, samples),),
            str(path),
            input_names=["waveform"],
            output_names=["probs"],
            dynamic_axes={"waveform": {1: "samples"}},
            opset_version=OPSET,
            dynamo=False,
        )


def quantize(src: Path, dst: Path, settings: dict) -> None:
    """onnxruntime dynamic INT8 with the given op types (None = all supported ops)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kw = {k: v for k, v in settings.items() if v is not None}
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, **kw)


def _session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _probs(sess, xs: np.ndarray) -> np.ndarray:
    return np.concatenate([sess.run(["probs"], {"waveform": x[None].astype(np.float32)})[0] for x in xs])


def synthetic_eval(
    model: nn.Module, labels: list[str], n: int = 24, samples: int = 32000
) -> eval_data.EvalData:
    """Test rows for a random model: noisy tones, labelled with the float model's own answers."""
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 16000.0
    xs = np.stack(
        [
            0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + rng.normal(0, 0.05, samples)
            for _ in range(n)
        ]
    ).astype(np.float32)
    with torch.no_grad():
        y = np.concatenate([model(torch.from_numpy(x[None])).numpy() for x in xs]).argmax(1)
    return eval_data.EvalData(xs[:2], xs, y, tuple(labels), "synthetic tones labelled by the float model")


def convert_hubert(
    checkpoint: Path | None,
    head_folder: Path | None,
    out_dir: Path,
    name: str,
    eval_path: Path | None,
    manifest: Path = DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    labels: list[str] | None = None,
    random_tiny: bool = False,
    candidates: tuple[str, ...] = (),
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    register_manifest: bool = True,
    latency_runs: int = 20,
    make_default: bool = False,
) -> list[Result]:
    """Export float ONNX, quantize each candidate, keep the fastest that meets the target."""
    torch.set_num_threads(1)
    model, labels, info = load_model(checkpoint, head_folder, labels, random_tiny)
    if eval_path is not None:
        data = eval_data.load_eval(eval_path, labels)
    elif random_tiny:
        data = synthetic_eval(model, labels)
    else:
        raise UserError(
            "--eval NPZ is required for a real checkpoint (test waveforms and labels; see convert/README.md)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / f"{name}-fp32.onnx"
    export_onnx(model, fp32, samples=data.test_x.shape[-1])
    with torch.no_grad():
        torch_probs = np.concatenate([model(torch.from_numpy(x[None])).numpy() for x in data.test_x])
    sess = _session(fp32)
    float_probs = _probs(sess, data.test_x)
    export_err = float(np.abs(float_probs - torch_probs).max())
    if export_err > 1e-3:
        fp32.unlink()
        raise UserError(f"ONNX export differs from torch by {export_err:.3g}; refusing to convert")
    x1 = data.test_x[:1].astype(np.float32)
    float_ms = parity.median_ms(lambda: sess.run(["probs"], {"waveform": x1}), runs=latency_runs, warmup=2)
    candidates = candidates or DEFAULT_CANDIDATES
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in candidates:
            qpath = Path(tmp) / f"{c}.onnx"
            quantize(fp32, qpath, CANDIDATES[c])
            qs = _session(qpath)
            verdict = parity.compare(float_probs, _probs(qs, data.test_x), data.test_y, parity.HUBERT_TARGETS)
            ms = parity.median_ms(
                lambda qs=qs: qs.run(["probs"], {"waveform": x1}), runs=latency_runs, warmup=2
            )
            measured[c] = {
                "parity": verdict,
                "latency_ms_median": round(ms, 3),
                "size_bytes": qpath.stat().st_size,
                "blob": qpath.read_bytes(),
            }
        passing = [c for c in candidates if measured[c]["parity"]["passed"]]
        best = min(passing or candidates, key=lambda c: measured[c]["latency_ms_median"])
    chosen = measured[best]
    keep = bool(passing) or keep_anyway
    int8 = out_dir / f"{name}-int8.onnx"
    if keep:
        int8.write_bytes(chosen["blob"])
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = {
        "kind": "hubert",
        "source": info["source"],
        "backbone": info,
        "data": data.source,
        "labels": labels,
        "command": command,
        "created": created,
        "opset": OPSET,
        "export_max_abs_diff_vs_torch": round(export_err, 8),
        "latency_note": f"one {data.test_x.shape[-1]}-sample window, 1 thread, median of {latency_runs}, "
        f"onnxruntime; {parity.machine()}",
    }
    results = []
    # the float file: parity against torch (exact export check)
    f_report = base | {
        "model_id": f"{name}-fp32",
        "quantization": "float32",
        "artifact": str(fp32),
        "parity": parity.compare(torch_probs, float_probs, data.test_y, parity.HUBERT_TARGETS),
        "size_bytes": fp32.stat().st_size,
        "float_size_bytes": fp32.stat().st_size,
        "latency_ms_median": {"onnx_float32": round(float_ms, 3)},
    }
    f_json, _ = parity.write_report(f"{name}-fp32", f_report, reports_dir)
    results.append(Result(f"{name}-fp32", fp32, f_json, True))
    q_report = base | {
        "model_id": f"{name}-int8",
        "quantization": "dynamic",
        "artifact": str(int8) if keep else None,
        "chosen": best,
        "parity": chosen["parity"],
        "size_bytes": chosen["size_bytes"],
        "float_size_bytes": fp32.stat().st_size,
        "latency_ms_median": {
            "onnx_float32": round(float_ms, 3),
            f"onnx_{best}": chosen["latency_ms_median"],
        },
        "candidates": {c: {k: v for k, v in m.items() if k != "blob"} for c, m in measured.items()},
    }
    q_json, _ = parity.write_report(f"{name}-int8", q_report, reports_dir)
    results.append(Result(f"{name}-int8", int8 if keep else None, q_json, bool(passing)))
    if register_manifest:
        for r, q in ((results[0], "float32"), (results[1], "dynamic")):
            if r.path is not None:
                write_entry(
                    manifest,
                    _entry(r, q, labels, info, manifest, command),
                    make_default=make_default and q == "dynamic",
                )
    return results


def _entry(r: Result, q: str, labels: list[str], info: dict, manifest: Path, command: str) -> ModelEntry:
    return ModelEntry(
        id=r.model_id,
        description=f"HuBERT ({info['layers']}x{info['hidden_size']}) + head, one ONNX file, {q}",
        frontend="waveform",
        window_s=2.0,
        labels=tuple(labels),
        head=file_ref(r.path, manifest, input="waveform", output="probs"),
        quantization=q,
        license="inherits the checkpoint's and the training corpora's terms",
        extra={"conversion": {"command": command, "source": info["source"]}, "parity_report": str(r.report)},
    )
