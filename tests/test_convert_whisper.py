"""convert whisper-encoder / whisper-model: checkpoint formats, export, INT8, the daemon entry end to end."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from convert import cli, whisper_ckpt, whisper_export, whisper_quant  # noqa: E402
from convert.macs import onnx_macs  # noqa: E402
from convert.whisper_cli import WHISPER_CANDIDATES  # noqa: E402
from convert.whisper_encoder import EncoderStates, encoder_states, export_onnx, run_torch  # noqa: E402
from convert.whisper_model import convert_whisper_model, torch_pipeline  # noqa: E402
from edge_ser.errors import UserError  # noqa: E402
from edge_ser.labels import EMOTIONS, NEUTRAL  # noqa: E402
from edge_ser.manifest import ModelEntry, load_manifest  # noqa: E402
from edge_ser.pooling import pool_states  # noqa: E402
from edge_ser.whisper_mel import whisper_log_mel  # noqa: E402
from tests.conftest import SHARED  # noqa: E402

REAL = SHARED / "weights" / "whisper-tiny.en"
TINY = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=64, max_source_positions=100,
            max_target_positions=16, num_mel_bins=80, pad_token_id=1, bos_token_id=2, eos_token_id=3,
            decoder_start_token_id=2)
"""A random-init Whisper of the real architecture: 2 s windows (100 positions) only."""


def _tiny_full_model(seed: int = 0):
    import transformers

    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY)).eval()
    with torch.no_grad():  # random LayerNorms/biases, so a wrong mapping of any tensor shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    """A full Hugging Face folder (encoder + decoder keys), as openai/whisper-* is published."""
    folder = tmp_path_factory.mktemp("tiny-hf")
    _tiny_full_model().save_pretrained(folder)
    return folder


def _windows(n: int, seed: int = 0) -> np.ndarray:
    """Tones of five pitches in noise: well apart in the encoder's states, whatever its weights."""
    rng = np.random.default_rng(seed)
    t = np.arange(32000) / 16000.0
    out = []
    for i in range(n):
        f = (150.0, 400.0, 1000.0, 2500.0, 6000.0)[i % 5]
        out.append(0.3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) + rng.normal(0, 0.02, 32000))
    return np.asarray(out, np.float32)


def _mel(seed: int = 0, frames: int = 200) -> np.ndarray:
    x = _windows(1, seed)[0]
    return whisper_log_mel(np.tile(x, frames // 200 + 1)[: frames * 160])


def _states(folder: Path, layers=(0, 1, 2)) -> np.ndarray:
    model, _ = encoder_states(folder, tuple(layers))
    return run_torch(model, _mel())


def _cos_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(whisper_quant.frame_cosine(a, b).min())


def test_full_hf_folder_gives_transformers_hidden_states(tiny_hf: Path, tmp_path: Path) -> None:
    model = _tiny_full_model()
    mel = torch.from_numpy(_mel()[None])
    with torch.no_grad():
        want = model.model.encoder(mel, output_hidden_states=True).hidden_states
    ours = _states(tiny_hf)
    for k in range(3):
        assert np.abs(ours[k] - want[k][0].numpy()).max() < 1e-4, k
    # pytorch_model.bin instead of safetensors: the same encoder
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "config.json").write_text((tiny_hf / "config.json").read_text())
    torch.save(model.state_dict(), bin_folder / "pytorch_model.bin")
    assert np.abs(_states(bin_folder) - ours).max() < 1e-6


@pytest.mark.parametrize("quant, min_cos", [("float32", 0.999999), ("float16", 0.9999), ("int8", 0.99)])
def test_ctranslate2_model_bin_round_trips(tiny_hf: Path, tmp_path: Path, quant: str, min_cos: float) -> None:
    enc, info = whisper_ckpt.load_encoder(tiny_hf)
    variables = whisper_ckpt.hf_to_ct2(enc, info["encoder_attention_heads"], quant)
    variables["decoder/embeddings/weight"] = np.ones((4, 32), np.float16)  # ignored, like a real decoder
    # CTranslate2 aliases duplicated tensors; an aliased decoder tensor must not confuse the reader
    folder = tmp_path / "ct2"
    whisper_ckpt.write_ct2(folder / "model.bin", variables,
                           aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    (folder / "config.json").write_text(json.dumps({"suppress_ids": [1], "lang_ids": []}))
    back = whisper_ckpt.read_ct2(folder / "model.bin")
    assert back["decoder/projection/weight"].shape == (4, 32)
    assert back["encoder/layer_0/self_attention/linear_0/weight"].shape == (96, 32)
    if quant == "int8":
        assert back["encoder/layer_1/ffn/linear_0/weight"].dtype == np.int8
    ours = _states(folder)
    want = _states(tiny_hf)
    for k in range(3):
        assert _cos_min(ours[k], want[k]) >= min_cos, k
    _, ct2_info = whisper_ckpt.load_encoder(folder)
    assert ct2_info["format"] == "ctranslate2" and ct2_info["encoder_attention_heads"] == 2
    assert ct2_info["ct2_model_bin_sha256"] == ct2_info["weights_sha256"]
    assert ct2_info["encoder_ffn_dim"] == 64 and ct2_info["max_source_positions"] == 100


def test_bad_ctranslate2_files_are_one_clear_error(tiny_hf: Path, tmp_path: Path) -> None:
    enc, _ = whisper_ckpt.load_encoder(tiny_hf)
    good = whisper_ckpt.write_ct2(tmp_path / "g" / "model.bin", whisper_ckpt.hf_to_ct2(enc, 2))
    cut = tmp_path / "cut" / "model.bin"
    cut.parent.mkdir()
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated"):
        whisper_ckpt.load_encoder(cut.parent)
    newer = tmp_path / "v7" / "model.bin"
    newer.parent.mkdir()
    newer.write_bytes(struct.pack("<I", 7) + good.read_bytes()[4:])
    with pytest.raises(UserError, match="version 7"):
        whisper_ckpt.load_encoder(newer.parent)
    other = whisper_ckpt.write_ct2(tmp_path / "t" / "model.bin", {"x": np.zeros(2, np.float32)},
                                   spec="TransformerSpec")
    with pytest.raises(UserError, match="not Whisper"):
        whisper_ckpt.load_encoder(other.parent)
    with pytest.raises(UserError, match="no Whisper checkpoint"):
        whisper_ckpt.load_encoder(tmp_path)


def test_tiny_export_has_dynamic_frames_and_int8_keeps_parity(tiny_hf: Path, tmp_path: Path) -> None:
    files = whisper_export.convert_encoder(
        tiny_hf, (1, 2), tmp_path / "enc.onnx", _windows(6), "tones", rounds=3,
        candidates=("matmul-s8", "matmul-s8-fp16rest"), reports_dir=tmp_path / "rep")
    assert files.passed and files.int8.is_file() and files.chosen in ("matmul-s8", "matmul-s8-fp16rest")
    report = json.loads(files.report.read_text())
    v = report["variants"]
    assert v["matmul-s8-fp16rest"]["size_bytes"] < v["matmul-s8"]["size_bytes"] < v["fp32"]["size_bytes"]
    assert v["fp32"]["cosine_vs_torch"]["state_2"]["min"] > 0.9999
    assert report["macs_per_2s_window"]["total"] > 0 and "reference_parity" not in report
    model, _ = encoder_states(tiny_hf, (1, 2))
    for frames in (100, 200):  # 1 s and 2 s: the position table is cut to the input
        mel = _mel(1, frames)
        want = run_torch(model, mel)
        for path in (files.fp32, files.int8):
            got = whisper_quant.session(path).run(None, {"mel": mel[None]})[0]
            assert got.shape == (2, frames // 2, 32)
            assert _cos_min(got, want) > (0.9999 if path == files.fp32 else 0.99)


def test_float16_storage_keeps_outputs_and_shrinks(tiny_hf: Path, tmp_path: Path) -> None:
    import onnx

    model, _ = encoder_states(tiny_hf, (2,))
    src = export_onnx(model, tmp_path / "f.onnx")
    m = onnx.load(str(src))
    assert whisper_quant.float16_initializers(m, min_elements=3000) == 3  # both convs, the position table
    onnx.save(m, str(tmp_path / "h.onnx"))
    mel = _mel()[None]
    a = whisper_quant.session(src).run(None, {"mel": mel})[0]
    b = whisper_quant.session(tmp_path / "h.onnx").run(None, {"mel": mel})[0]
    saved = src.stat().st_size - (tmp_path / "h.onnx").stat().st_size
    assert saved > 0.95 * 2 * (32 * 80 * 3 + 32 * 32 * 3 + 100 * 32)  # 2 bytes per value of the three
    assert _cos_min(a, b) > 0.99999


def test_macs_counted_from_the_graph_match_the_formula(tiny_hf: Path, tmp_path: Path) -> None:
    model, _ = encoder_states(tiny_hf, (2,))
    path = export_onnx(model, tmp_path / "m.onnx")
    d, f, t = 32, 64, 100
    conv = 2 * t * d * 80 * 3 + t * d * d * 3
    block = 4 * t * d * d + 2 * t * t * d + 2 * t * d * f
    assert onnx_macs(path, {"mel": np.zeros((1, 80, 200), np.float32)})["total"] == conv + 2 * block


def test_real_checkpoint_fp32_graph_matches_ctranslate2_reference(tmp_path: Path) -> None:
    if not (REAL / "reference.npz").is_file():
        pytest.skip("shared Whisper tiny.en weights not available")
    model, info = encoder_states(REAL, "all")
    assert isinstance(model, EncoderStates) and info["ct2_model_bin_sha256"].startswith("1a5afae0")
    ref = whisper_export.reference_parity(model, REAL / "reference.npz", tmp_path)
    assert ref["passed"] and ref["cosine_min"] >= 0.999 and len(ref["clips"]) == 3


def _tiny_head(folder: Path, tiny_hf: Path, fuse: dict | None = None, seed: int = 0,
               labels: tuple[str, ...] = (*EMOTIONS, NEUTRAL)) -> Path:
    """An MLP head on mean_std of state 1 of the tiny encoder (followed by YAMNet's mean frame with
    `fuse`), trained to tell the five tones apart (with two labels: the three low tones from the two
    high ones)."""
    from artefact.eval_data import save_eval
    from artefact.heads import build_head, save_head
    from convert.whisper_model import read_fused

    model, _ = encoder_states(tiny_hf, (1,))
    x = _windows(60, seed=3)
    feats = np.stack([pool_states(run_torch(model, whisper_log_mel(w)), "mean_std") for w in x])
    if fuse:
        yam = read_fused({"fuse": fuse}, tiny_hf / "none.yaml")
        feats = np.concatenate([feats, np.stack([yam.features(w, None) for w in x])], axis=1)
    y = np.arange(60) % 5 if len(labels) == 5 else (np.arange(60) % 5 >= 3).astype(np.int64)
    labels = list(labels)
    mean, std = feats[:40].mean(0), feats[:40].std(0) + 1e-3
    spec = {"arch": "mlp", "hidden": [16], "dropout": 0.0, "input_dim": feats.shape[1], "labels": labels,
            "pooling": "mean_std@1", "backbone": "whisper-tiny-test", "feature_mean": mean.tolist(),
            "feature_std": std.tolist(), "command": "tests", "data": "tones", "split": "synthetic",
            "license": "test data"} | ({"fuse": fuse} if fuse else {})
    torch.manual_seed(seed)
    head = build_head(spec)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy((feats[:40] - mean) / std), torch.from_numpy(y[:40])
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(xt), yt).backward()
        opt.step()
    save_head(folder, spec, head.eval())
    save_eval(folder / "eval.npz", feats[:40], feats[40:], y[40:], labels)
    return folder


def test_whisper_model_entry_loads_in_the_daemon_and_agrees_with_torch(tiny_hf: Path, tmp_path: Path) -> None:
    from convert.head_model import load_float_model
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    head_folder = _tiny_head(tmp_path / "tones-head", tiny_hf)
    manifest = tmp_path / "models" / "manifest.yaml"
    windows = _windows(10, seed=7)
    results = convert_whisper_model(
        head_folder, tiny_hf, windows, "tones", tmp_path / "models" / "heads", "tones", ("float16",),
        manifest, make_default=True, candidates=("matmul-s8",), reports_dir=tmp_path / "rep",
        latency_runs=3)
    (r,) = results
    assert r.passed and r.path.name == "tones-fp16.tflite"
    assert (tmp_path / "models" / "heads" / "tones-encoder-int8.onnx").is_file()
    report = json.loads(r.report.read_text())
    assert report["pipeline"]["argmax_agreement"] >= 0.99 and report["pipeline"]["n"] == 10
    m = load_manifest(manifest)
    entry = m.get()  # --default: the passing variant is the default
    assert entry.id == "tones-fp16" and entry.frontend == "whisper_logmel" and entry.pooling == "mean_std"
    assert entry.backbone.file == "heads/tones-encoder-int8.onnx" and entry.backbone.output == "hidden"
    assert entry.head.input_dim == 64 and "MIT" in entry.license
    assert entry.extra["conversion"]["encoder"] | {"report": None} == {
        "states": [1], "variant": "matmul-s8", "report": None}
    assert not (tmp_path / "models" / "heads" / "tones-encoder-fp16w.onnx").exists()  # unused fallback

    daemon = load_model(ModelSettings(id="tones-fp16", manifest=str(manifest)))
    model, _ = encoder_states(tiny_hf, (1,))
    _, head = load_float_model(head_folder)
    w = _windows(3, seed=11)
    want = torch_pipeline(model, head, "mean_std", w)
    for i in range(3):
        got = np.array([daemon.predict(w[i]).probs[lb] for lb in daemon.labels])
        assert got.argmax() == want[i].argmax()
        assert np.abs(got - want[i]).max() < 0.05


def test_whisper_model_falls_back_to_the_float_encoder_when_int8_moves_decisions(
        tiny_hf: Path, tmp_path: Path, monkeypatch) -> None:
    from convert import whisper_model

    real = whisper_model.daemon_probs

    def int8_disagrees(entry_id: str, manifest: Path, windows: np.ndarray, files_in=()):
        probs, ms = real(entry_id, manifest, windows, files_in)
        if "encoder-int8" in manifest.read_text():  # a decision moved on every other window
            probs[::2] = np.roll(probs[::2], 1, axis=1)
        return probs, ms

    monkeypatch.setattr(whisper_model, "daemon_probs", int8_disagrees)
    head_folder = _tiny_head(tmp_path / "tones-head", tiny_hf)
    manifest = tmp_path / "models" / "manifest.yaml"
    (r,) = convert_whisper_model(
        head_folder, tiny_hf, _windows(6, seed=7), "tones", tmp_path / "models" / "heads", "tones",
        ("float16",), manifest, candidates=("matmul-s8",), reports_dir=tmp_path / "rep", latency_runs=3)
    assert r.passed
    tried = json.loads(r.report.read_text())["pipeline"]["encoders_tried"]
    assert [t["encoder"] for t in tried] == ["matmul-s8", "fp16-weights"]
    agreement = [t["argmax_agreement"]["tones-fp16"] for t in tried]
    assert agreement[0] <= 0.5 and agreement[1] == 1.0
    entry = load_manifest(manifest).get("tones-fp16")
    assert entry.backbone.file == "heads/tones-encoder-fp16w.onnx"
    assert not (tmp_path / "models" / "heads" / "tones-encoder-int8.onnx").exists()


def test_onnx_head_entry_reuses_the_encoder_and_runs_without_tflite(tiny_hf: Path, tmp_path: Path) -> None:
    from convert.head_model import load_float_model
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    head_folder = _tiny_head(tmp_path / "tones-head", tiny_hf)
    heads, manifest = tmp_path / "models" / "heads", tmp_path / "models" / "manifest.yaml"
    (first,) = convert_whisper_model(
        head_folder, tiny_hf, _windows(6, seed=7), "tones", heads, "tones", ("float16",), manifest,
        candidates=("matmul-s8",), reports_dir=tmp_path / "rep", latency_runs=3)
    encoder = heads / "tones-encoder-int8.onnx"
    before = sorted(p.name for p in heads.iterdir())
    (head_folder / "eval.npz").unlink()  # as a shipped head folder: head.pt + head.json only
    with pytest.raises(UserError, match="int8 head needs labelled"):
        convert_whisper_model(head_folder, tiny_hf, _windows(6, seed=7), "tones", heads, "tones", ("int8",),
                              manifest, reports_dir=tmp_path / "rep", latency_runs=3, encoder_file=encoder)
    (r,) = convert_whisper_model(
        head_folder, tiny_hf, _windows(6, seed=7), "tones", heads, "tones", ("onnx-float32",), manifest,
        make_default=True, reports_dir=tmp_path / "rep", latency_runs=3, encoder_file=encoder)
    assert first.passed and r.passed and r.model_id == "tones-onnx-fp32"
    assert r.path.name == "tones-onnx-fp32.onnx"
    assert sorted(p.name for p in heads.iterdir()) == sorted([*before, "tones-onnx-fp32.onnx"])
    report = json.loads(r.report.read_text())
    assert report["format"] == "onnx" and report["quantization"] == "float32"
    assert "unlabelled" in report["data"] and report["parity"]["accuracy"] is None
    assert report["parity"]["argmax_agreement"] == 1.0 and report["parity"]["max_abs_prob_diff"] < 1e-5
    assert report["pipeline"]["argmax_agreement"] >= 0.99
    entry = load_manifest(manifest).get()
    assert entry.id == "tones-onnx-fp32" and entry.quantization == "float32"
    assert entry.backbone.file == "heads/tones-encoder-int8.onnx"
    assert entry.head.file == "heads/tones-onnx-fp32.onnx"
    assert entry.extra["conversion"]["encoder"]["variant"] == "matmul-s8"  # from the first entry
    assert entry.description.endswith("float32 ONNX")

    daemon = load_model(ModelSettings(id="tones-onnx-fp32", manifest=str(manifest)))
    assert daemon._head.backend.path.endswith(".onnx") and daemon._backbone.path.endswith(".onnx")
    model, _ = encoder_states(tiny_hf, (1,))
    _, head = load_float_model(head_folder)
    w = _windows(3, seed=11)
    want = torch_pipeline(model, head, "mean_std", w)
    got = np.array([[daemon.predict(x).probs[lb] for lb in daemon.labels] for x in w])
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() < 0.05


@pytest.mark.needs_shared  # YAMNet
def test_a_head_with_yamnet_fused_in_becomes_an_entry_with_a_fused_backbone(tiny_hf: Path, tmp_path: Path):
    from convert.head_model import load_float_model
    from convert.whisper_model import read_fused
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    fuse = {"cache": "cache/yamnet-speech", "pooling": "mean", "backbone": "yamnet", "window_level": "raw"}
    head_folder = _tiny_head(tmp_path / "fused-head", tiny_hf, fuse)
    heads, manifest = tmp_path / "models" / "heads", tmp_path / "models" / "manifest.yaml"
    (r,) = convert_whisper_model(
        head_folder, tiny_hf, _windows(6, seed=7), "tones", heads, "fused", ("onnx-float32",), manifest,
        candidates=("matmul-s8",), reports_dir=tmp_path / "rep", latency_runs=3)
    assert r.passed
    entry = load_manifest(manifest).get("fused-onnx-fp32")
    assert entry.fused_backbone.file == "yamnet/yamnet.tflite" and entry.fused_pooling == "mean"
    assert entry.head.input_dim == 64 + 1024 and "YAMNet" in entry.license
    daemon = load_model(ModelSettings(id="fused-onnx-fp32", manifest=str(manifest)))
    model, _ = encoder_states(tiny_hf, (1,))
    _, head = load_float_model(head_folder)
    w = _windows(3, seed=11)
    want = torch_pipeline(model, head, "mean_std", w, fused=read_fused({"fuse": fuse}, manifest))
    got = np.array([[daemon.predict(x).probs[lb] for lb in daemon.labels] for x in w])
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() < 0.05
    with pytest.raises(UserError, match="not 'egemaps'"):
        read_fused({"fuse": fuse | {"backbone": "egemaps"}}, manifest)


def test_a_foreground_head_from_another_entry_scores_each_window(tiny_hf: Path, tmp_path: Path, monkeypatch,
                                                                  capsys):
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    heads, manifest = tmp_path / "models" / "heads", tmp_path / "models" / "manifest.yaml"
    for name, seed in (("tones", 0), ("bg", 1)):
        folder = _tiny_head(tmp_path / name, tiny_hf, seed=seed)
        (r,) = convert_whisper_model(
            folder, tiny_hf, _windows(6, seed=7), "tones", heads, name, ("onnx-float32",), manifest,
            candidates=("matmul-s8",), reports_dir=tmp_path / "rep", latency_runs=3)
        assert r.passed
    code, err = _run_cli(["foreground-head", "--model", "tones-onnx-fp32", "--from", "tones-onnx-fp32",
                          "--manifest", str(manifest)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot gate itself" in err
    code, _ = _run_cli(["foreground-head", "--model", "tones-onnx-fp32", "--from", "bg-onnx-fp32",
                        "--manifest", str(manifest)], monkeypatch, capsys)
    assert code == 0
    entry = load_manifest(manifest).get("tones-onnx-fp32")
    assert entry.foreground_head.file == "heads/bg-onnx-fp32.onnx"
    assert entry.extra["foreground_from"] == "bg-onnx-fp32"
    assert [role for role, _ in entry.files()] == ["backbone", "head", "foreground_head"]
    both, alone, bg = (load_model(ModelSettings(id=i, manifest=str(manifest)))
                       for i in ("tones-onnx-fp32", "tones-onnx-fp32", "bg-onnx-fp32"))
    alone._foreground = None  # the same entry without its foreground head
    for x in _windows(4, seed=12):
        got, own, other = both.predict(x), alone.predict(x), bg.predict(x)
        assert got.probs == own.probs and own.foreground is None  # the emotion is the entry's own head's
        assert got.foreground == pytest.approx(1.0 - other.probs[NEUTRAL], abs=1e-6)
    assert len({round(both.predict(x).foreground, 4) for x in _windows(4, seed=12)}) > 1


def test_a_binary_foreground_head_folder_is_exported_and_checked_end_to_end(tiny_hf: Path, tmp_path: Path,
                                                                             monkeypatch, capsys):
    from convert.foreground import attach_head
    from convert.head_model import load_float_model
    from convert.whisper_model import torch_features
    from edge_ser.labels import FOREGROUND_LABELS
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    heads, manifest = tmp_path / "models" / "heads", tmp_path / "models" / "manifest.yaml"
    (r,) = convert_whisper_model(
        _tiny_head(tmp_path / "tones", tiny_hf), tiny_hf, _windows(6, seed=7), "tones", heads, "tones",
        ("onnx-float32",), manifest, candidates=("matmul-s8",), reports_dir=tmp_path / "rep", latency_runs=3)
    assert r.passed
    folder = _tiny_head(tmp_path / "fg", tiny_hf, seed=1, labels=FOREGROUND_LABELS)
    entry, report = attach_head(manifest, "tones-onnx-fp32", folder, tiny_hf, _windows(10, seed=5), "tones",
                                out_dir=heads, reports_dir=tmp_path / "rep")
    assert entry.foreground_head.file == "heads/fg-onnx-fp32.onnx"
    assert entry.foreground_labels == FOREGROUND_LABELS and report["agreement"] >= 0.99
    assert entry.extra["foreground_report"].endswith("rep/tones-onnx-fp32.foreground.json")
    assert json.loads((tmp_path / "rep" / "tones-onnx-fp32.foreground.json").read_text())["n_windows"] == 20
    daemon = load_model(ModelSettings(id="tones-onnx-fp32", manifest=str(manifest)))
    model, _ = encoder_states(tiny_hf, (1,))
    _, head = load_float_model(folder)
    w = _windows(5, seed=13)
    with torch.no_grad():
        want = head(torch.from_numpy(torch_features(model, "mean_std", w))).numpy()[:, 0]
    got = np.array([daemon.predict(x).foreground for x in w])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got.min() < 0.5 < got.max()  # the high tones are background, the low ones foreground
    # a five-label folder may gate too, a folder of other labels may not
    bad = tmp_path / "bad"
    bad.mkdir()
    spec = json.loads((folder / "head.json").read_text())
    (bad / "head.json").write_text(json.dumps(spec | {"labels": ["speech", NEUTRAL]}))
    (bad / "head.pt").write_bytes((folder / "head.pt").read_bytes())
    with pytest.raises(UserError, match="labels"):
        attach_head(manifest, "tones-onnx-fp32", bad, tiny_hf, _windows(2), "tones", out_dir=heads,
                    reports_dir=tmp_path / "rep")
    code, err = _run_cli(["foreground-head", "--model", "tones-onnx-fp32", "--from", "x", "--head",
                          str(folder), "--manifest", str(manifest)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "exactly one" in err


def test_a_foreground_head_must_read_the_same_features() -> None:
    import dataclasses

    from convert.foreground import feature_mismatch
    from edge_ser.manifest import ModelFile

    def entry(**kw):
        return ModelEntry(id="m", labels=(*EMOTIONS, NEUTRAL),
                          head=ModelFile("h.onnx", "0" * 64, input_dim=8),
                          backbone=ModelFile("b.onnx", "1" * 64), frontend="whisper_logmel",
                          **({"pooling": "mean_std", "window_level": "speech"} | kw))

    base = entry()
    assert feature_mismatch(base, entry()) is None
    assert "pooling" in feature_mismatch(base, entry(pooling="mean"))
    assert "window_level" in feature_mismatch(base, entry(window_level="raw"))
    assert "backbone files differ" in feature_mismatch(base, dataclasses.replace(
        base, backbone=ModelFile("b.onnx", "2" * 64)))
    assert "input_dim" in feature_mismatch(base, dataclasses.replace(
        base, head=ModelFile("h.onnx", "0" * 64, input_dim=9)))
    assert "labels" in feature_mismatch(base, dataclasses.replace(base, labels=(*EMOTIONS, NEUTRAL)[::-1]))
    assert "no neutral" in feature_mismatch(dataclasses.replace(base, labels=EMOTIONS), base)


def test_an_encoder_identical_to_a_file_already_there_is_found(tmp_path: Path) -> None:
    from convert.whisper_reuse import same_file

    (tmp_path / "a-encoder.onnx").write_bytes(b"graph")
    (tmp_path / "b-encoder.onnx").write_bytes(b"graph")
    (tmp_path / "c-encoder.onnx").write_bytes(b"other")
    assert same_file(tmp_path / "b-encoder.onnx", tmp_path) == tmp_path / "a-encoder.onnx"
    assert same_file(tmp_path / "c-encoder.onnx", tmp_path) is None


def _run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["convert", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code or 0), capsys.readouterr().err


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    code, err = _run_cli(["whisper-encoder", "--checkpoint", str(tmp_path / "none"), "--out",
                          str(tmp_path / "x.onnx"), "--windows", "0"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "not found" in err
    yam = tmp_path / "yam"
    yam.mkdir()
    (yam / "head.pt").write_bytes(b"")
    (yam / "head.json").write_text(json.dumps({"arch": "mlp", "input_dim": 1024, "labels": list(EMOTIONS),
                                               "pooling": "mean", "backbone": "yamnet"}))
    code, err = _run_cli(["whisper-model", str(yam), "--checkpoint", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "not a Whisper encoder" in err and err.count("\n") == 1


def test_cli_lists_every_quantization_candidate() -> None:
    assert set(WHISPER_CANDIDATES) == set(whisper_quant.CANDIDATES)
    assert whisper_quant.FALLBACK in whisper_quant.DEFAULT_CANDIDATES
    table = {k: {"passed": True, "latency_ms_median": 10.0, "size_bytes": 100,
                 "cosine_vs_fp32": {"state_2": {"min": 0.99, "mean": 0.999}}} for k in ("a", "b")}
    table[whisper_quant.FALLBACK] = table["a"] | {"size_bytes": 1}
    table["b"] = table["b"] | {"cosine_vs_fp32": {"state_2": {"min": 0.995, "mean": 0.999}}}
    assert whisper_quant.choose(table) == "b"  # never the float fallback; best cosine among equals
