"""A randomly initialised HuBERT-base classifier and its ONNX FP32 / INT8 exports, for latency only.

Pretrained HuBERT weights are not available on these machines (../shared/weights/README.md). Latency
does not depend on weight values, so the architecture with random weights gives honest timings of the
three ways to serve it: plain transformers/PyTorch float, ONNX FP32, ONNX INT8 (MatMul-only dynamic
quantization). Accuracy numbers must never come from these files.

When convert/ ships a HuBERT export, bench/latency.py uses that instead (see `find_convert_export`).
Files are cached under cache/bench/ (git-ignored) so reruns reuse them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "cache" / "bench" / "hubert-random"
N_LABELS = 4
WINDOW_SAMPLES = 32000


def build_torch_model(seed: int = 0):
    """HubertForSequenceClassification with the hubert-base config (95 M parameters), eval mode."""
    import torch
    from transformers import HubertConfig, HubertForSequenceClassification

    torch.manual_seed(seed)
    # HubertConfig() defaults are facebook/hubert-base-ls960's architecture (12 layers, 768 wide)
    config = HubertConfig(num_labels=N_LABELS)
    model = HubertForSequenceClassification(config)
    return model.eval()


def torch_dir() -> Path:
    """save_pretrained folder, so every process loads the very same random weights."""
    out = CACHE / "torch"
    if not (out / "config.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        build_torch_model().save_pretrained(out)
    return out


def export_onnx() -> tuple[Path, Path]:
    """Export FP32 ONNX (opset 17, dynamic length, softmax inside) and its MatMul-only INT8 variant."""
    fp32 = CACHE / "hubert_fp32.onnx"
    int8 = CACHE / "hubert_int8_matmul.onnx"
    if not fp32.exists():
        import torch
        from transformers import HubertForSequenceClassification

        model = HubertForSequenceClassification.from_pretrained(torch_dir()).eval()

        class WithSoftmax(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, waveform):
                return torch.softmax(self.inner(waveform).logits, dim=-1)

        dummy = torch.zeros(1, WINDOW_SAMPLES)
        tmp = fp32.with_suffix(".tmp.onnx")
        torch.onnx.export(
            WithSoftmax(model), (dummy,), str(tmp), input_names=["waveform"], output_names=["probs"],
            dynamic_axes={"waveform": {1: "samples"}}, opset_version=17, dynamo=False,
        )
        tmp.rename(fp32)
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_suffix(".tmp.onnx")
        # MatMul only: ConvInteger for the conv feature encoder was slower than FP32 (issue 5)
        quantize_dynamic(str(fp32), str(tmp), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        tmp.rename(int8)
    return fp32, int8


if __name__ == "__main__":
    paths = export_onnx()
    for p in paths:
        print(p, round(p.stat().st_size / 1e6, 1), "MB")
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, WINDOW_SAMPLES)).astype(np.float32) * 0.05
    outs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"waveform": x})[0]
            for p in paths]
    print("fp32", outs[0], "int8", outs[1])
