"""`python -m convert whisper-encoder`: a Whisper checkpoint -> FP32 + INT8 ONNX encoder + parity report.

The graph (convert.whisper_encoder.EncoderStates, opset 17): input `mel` float32 [1, n_mels, frames]
(any even frame count up to the position table's 2x; 200 for a 2 s window), output `hidden`
[n_states, frames / 2, d_model]. INT8 variants are measured side by side (convert.whisper_quant)
and the chosen one is written as `<out stem>-int8.onnx`.

Parity (report convert/reports/<name>.json + .txt):
- reference: when the checkpoint folder (or --reference) has `reference.npz` (CTranslate2's own
  encoder output on 30 s padded clips), the FP32 graph of every state of this checkpoint must give
  per-frame cosine >= 0.999 on its last state (`encoder_out`);
- windows: FP32 and INT8 graphs against the torch encoder, per frame of each exported state, on
  real 2 s windows (test-speaker clips of the shared corpora, or --audio).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from artefact import parity
from edge_ser.errors import UserError
from edge_ser.whisper_mel import whisper_log_mel

from . import whisper_quant
from .macs import onnx_macs
from .whisper_encoder import MEL_INPUT, EncoderStates, encoder_states, export_onnx, run_torch

REFERENCE_NAME = "reference.npz"
REFERENCE_MIN_COSINE = 0.999
EXPORT_MIN_COSINE = 0.9999
"""FP32 graph against torch on the windows: the same maths, so only rounding may differ."""


@dataclass(frozen=True)
class EncoderFiles:
    """What `convert_encoder` wrote."""

    fp32: Path
    int8: Path | None
    report: Path
    chosen: str | None
    passed: bool
    info: dict


def reference_parity(checkpoint_model: EncoderStates, reference: Path, work: Path) -> dict:
    """The FP32 graph of all states on the reference's 30 s mels vs its `encoder_out_i` (first frames)."""
    z = np.load(reference)
    idx = sorted(int(k.split("_")[-1]) for k in z.files if k.startswith("encoder_out_"))
    if not idx:
        raise UserError(f"{reference} has no encoder_out_<i> arrays")
    path = export_onnx(checkpoint_model, work / "all-states.onnx")
    sess = whisper_quant.session(path)
    clips = {}
    worst = 1.0
    for i in idx:
        out = sess.run(None, {MEL_INPUT: z[f"mel_{i}"][None].astype(np.float32)})[0][-1]
        ref = z[f"encoder_out_{i}"]
        got = out[: len(ref)]
        c = whisper_quant.frame_cosine(got, ref)
        worst = min(worst, float(c.min()))
        clips[f"clip_{i}"] = {"frames": len(ref), "cosine_min": round(float(c.min()), 7),
                              "cosine_mean": round(float(c.mean()), 7),
                              "max_abs_diff": round(float(np.abs(got - ref).max()), 6)}
    return {"reference": str(reference),
            "input": "30 s zero-padded clips, the reference's own mel (80 x 3000)",
            "state": f"{checkpoint_model.layers[-1]} (after the final LayerNorm = encoder_out)",
            "clips": clips, "cosine_min": round(worst, 7), "target_min_cosine": REFERENCE_MIN_COSINE,
            "passed": worst >= REFERENCE_MIN_COSINE}


def convert_encoder(
    checkpoint: Path,
    layers: tuple[int, ...] | str,
    out: Path,
    windows: np.ndarray | None,
    windows_source: str = "",
    int8: bool = True,
    candidates: tuple[str, ...] = (),
    reference: Path | None = None,
    name: str | None = None,
    reports_dir: Path = parity.REPORTS_DIR,
    command: str = "",
    rounds: int = 30,
    int8_out: Path | None = None,
) -> EncoderFiles:
    """Export, check, quantize, choose, report. Raises UserError when the FP32 export is wrong."""
    torch.set_num_threads(1)
    model, info = encoder_states(checkpoint, layers)
    out = Path(out)
    fp32 = export_onnx(model, out)
    name = name or out.stem
    report: dict = {
        "model_id": name, "kind": "whisper-encoder", "source": str(checkpoint), "checkpoint": info,
        "states": list(model.layers), "opset": 17,
        "input": f"{MEL_INPUT} float32 [1, {model.conv1.in_channels}, frames] (Whisper log-mel, "
        "edge_ser.whisper_mel; 200 frames per 2 s)",
        "output": f"hidden float32 [{len(model.layers)}, frames / 2, {model.conv1.out_channels}]",
        "command": command, "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    mel2s = np.zeros((1, model.conv1.in_channels, 200), np.float32)
    report["macs_per_2s_window"] = onnx_macs(fp32, {MEL_INPUT: mel2s})
    work = Path(tempfile.mkdtemp(prefix="whisper-enc-"))
    try:
        ref_path = reference or Path(checkpoint) / REFERENCE_NAME
        if ref_path.is_file():
            full, _ = encoder_states(checkpoint, "all")
            report["reference_parity"] = reference_parity(full, ref_path, work)
            if not report["reference_parity"]["passed"]:
                _write(report, reports_dir, name)
                raise UserError(f"the FP32 graph misses the reference {ref_path} (worst frame cosine "
                                f"{report['reference_parity']['cosine_min']:.5f} < {REFERENCE_MIN_COSINE}); "
                                f"see {reports_dir / (name + '.txt')}")
        passed, chosen, int8_path = True, None, None
        if windows is not None and len(windows):
            mels = np.stack([whisper_log_mel(w) for w in windows])
            torch_states = np.stack([run_torch(model, m) for m in mels])
            names = tuple(candidates) or whisper_quant.DEFAULT_CANDIDATES
            table, paths = whisper_quant.measure(fp32, mels, names if int8 else (), rounds, work / "q",
                                                 model.layers)
            fp32_states = whisper_quant.run_all(whisper_quant.session(fp32), mels)
            table["fp32"]["cosine_vs_torch"] = whisper_quant.cosine_stats(fp32_states, torch_states,
                                                                          model.layers)
            export_ok = all(c["min"] >= EXPORT_MIN_COSINE for c in table["fp32"]["cosine_vs_torch"].values())
            if not export_ok:
                _write(report | {"variants": table}, reports_dir, name)
                raise UserError(f"the FP32 graph differs from the torch encoder on real windows "
                                f"({table['fp32']['cosine_vs_torch']}); not written as a model")
            if int8:
                chosen = whisper_quant.choose(table)
                passed = chosen is not None
                pick = chosen or min(names, key=lambda k: table[k]["latency_ms_median"])
                q_states = whisper_quant.run_all(whisper_quant.session(paths[pick]), mels)
                table[pick]["cosine_vs_torch"] = whisper_quant.cosine_stats(q_states, torch_states,
                                                                            model.layers)
                int8_path = Path(int8_out) if int8_out else out.with_name(out.stem + "-int8.onnx")
                if passed:
                    shutil.copyfile(paths[pick], int8_path)
                else:
                    int8_path = None
            report |= {
                "windows": windows_source or f"{len(windows)} given windows",
                "variants": table,
                "chosen_int8": chosen,
                "int8_targets": {"min_cosine_mean": whisper_quant.MIN_COSINE_MEAN,
                                 "min_cosine_min": whisper_quant.MIN_COSINE_MIN},
                "latency_note": f"2 s window (200 mel frames), 1 thread, median of {rounds} interleaved "
                f"rounds, onnxruntime session set up like the daemon's; {parity.machine()}",
            }
        elif int8:
            raise UserError("INT8 needs real windows to measure parity on (no corpora found: pass --audio)")
        report["artifacts"] = {"fp32": str(fp32), "int8": str(int8_path) if int8_path else None}
        rpath = _write(report, reports_dir, name)
        return EncoderFiles(fp32, int8_path, rpath, chosen, passed, info)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(report: dict, reports_dir: Path, name: str) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    jpath = reports_dir / f"{name}.json"
    jpath.write_text(json.dumps(report, indent=1) + "\n")
    (reports_dir / f"{name}.txt").write_text(summary(report) + "\n")
    return jpath


def summary(r: dict) -> str:
    """A few lines a person reads."""
    ck = r.get("checkpoint", {})
    lines = [f"{r['model_id']}: Whisper encoder graph, states {r['states']} "
             f"({ck.get('format')} checkpoint {ck.get('weights')}, d_model {ck.get('d_model')}, "
             f"{ck.get('encoder_layers')} blocks)"]
    macs = r.get("macs_per_2s_window", {})
    if macs:
        lines.append(f"  multiply-accumulates per 2 s window: {macs['total'] / 1e6:.1f} M")
    ref = r.get("reference_parity")
    if ref:
        lines.append(f"  reference ({Path(ref['reference']).name}, 30 s padded, state {ref['state']}): "
                     f"worst frame cosine {ref['cosine_min']:.6f} (target >= {ref['target_min_cosine']}) "
                     f"{'PASS' if ref['passed'] else 'FAIL'}")
    if "variants" in r:
        lines.append(f"  windows: {r['windows']}")
        lines.append("  variant: size, median latency (2 s, 1 thread), frame cosine vs FP32 / vs torch "
                     "(min, mean)")
        for k, v in r["variants"].items():
            def fmt(c):
                return "; ".join(f"{s} {d['min']:.5f} {d['mean']:.6f}" for s, d in c.items()) if c else "-"
            mark = " <- chosen" if k == r.get("chosen_int8") else ("" if v["passed"] else " (misses target)")
            lines.append(f"    {k}: {v['size_bytes'] / 1e6:.2f} MB, {v['latency_ms_median']:.2f} ms, "
                         f"{fmt(v.get('cosine_vs_fp32'))} / {fmt(v.get('cosine_vs_torch'))}{mark}")
        lines.append(f"  {r.get('latency_note', '')}")
    lines.append(f"  command: {r.get('command')}")
    return "\n".join(lines)
