"""convert yamnet-head: a small trained head -> TFLite float16/INT8 files the daemon's backend runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from artefact import parity  # noqa: E402
from artefact.eval_data import load_eval  # noqa: E402
from convert import cli, head_export  # noqa: E402
from convert.synthetic import make_head_folder  # noqa: E402
from edge_ser.backends.tflite import TFLiteBackend  # noqa: E402
from edge_ser.errors import UserError  # noqa: E402
from edge_ser.manifest import load_manifest  # noqa: E402


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_head_folder(tmp_path_factory.mktemp("heads") / "tiny", n_train=300, n_test=200, epochs=40)


def _convert(head: Path, tmp: Path, **kw) -> list[head_export.Result]:
    return head_export.convert_head(
        head,
        None,
        tmp / "models" / "heads",
        "tiny",
        kw.pop("variants", ("int8",)),
        tmp / "models" / "manifest.yaml",
        reports_dir=tmp / "reports",
        latency_runs=3,
        command="test",
        **kw,
    )


def test_int8_and_fp16_match_the_torch_head(head: Path, tmp_path: Path) -> None:
    results = _convert(head, tmp_path, variants=("int8", "float16"), default="int8")
    assert [r.model_id for r in results] == ["tiny-int8", "tiny-fp16"]
    assert all(r.passed and r.path and r.path.is_file() for r in results)

    report = json.loads(results[0].report.read_text())
    assert report["parity"]["argmax_agreement"] >= 0.99
    assert report["size_bytes"] < 0.3 * report["float_size_bytes"] + 1  # int8 is ~4x smaller
    assert (tmp_path / "reports" / "tiny-int8.txt").read_text().startswith("tiny-int8: PASS")

    # The daemon's own backend loads the file by tensor names and gives the torch probabilities.
    spec = json.loads((head / "head.json").read_text())
    data = load_eval(head / "eval.npz", spec["labels"], 1024)
    from artefact.heads import load_head

    _, ref = load_head(head)
    with torch.no_grad():
        want = ref(torch.from_numpy(data.test_x[:20])).numpy()
    for r, tol in ((results[0], 0.05), (results[1], 1e-3)):
        be = TFLiteBackend(r.path)
        assert be.input_names() == ["features"] and be.output_names() == ["probs"]
        got = np.concatenate([be.run({"features": x[None]})["probs"] for x in data.test_x[:20]])
        assert np.abs(got - want).max() < tol

    m = load_manifest(tmp_path / "models" / "manifest.yaml")
    assert m.default == "tiny-int8"
    e = m.get("tiny-int8")
    assert e.quantization == "int8" and e.head.input_dim == 1024 and e.head.file == "heads/tiny-int8.tflite"
    assert e.backbone is not None and e.backbone.file == "yamnet/yamnet.tflite"


def test_speech_level_head_gets_a_speech_level_entry(head: Path, tmp_path: Path) -> None:
    """A head trained on a window_level speech cache: its entry makes the daemon prepare windows so."""
    import shutil

    speech = tmp_path / "speech-head"
    shutil.copytree(head, speech)
    spec = json.loads((speech / "head.json").read_text())
    (speech / "head.json").write_text(json.dumps(dict(spec, window_level="speech")))
    (r,) = _convert(speech, tmp_path, variants=("float16",))
    assert r.passed
    assert load_manifest(tmp_path / "models" / "manifest.yaml").get("tiny-fp16").window_level == "speech"


def test_missed_target_writes_nothing_unless_kept(
    head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parity, "HEAD_TARGETS", parity.Targets(min_agreement=1.01))
    r = _convert(head, tmp_path)[0]
    assert not r.passed and r.path is None
    assert not (tmp_path / "models" / "heads" / "tiny-int8.tflite").exists()
    assert not (tmp_path / "models" / "manifest.yaml").exists()
    assert json.loads(r.report.read_text())["artifact"] is None

    kept = _convert(head, tmp_path, keep_anyway=True)[0]
    assert not kept.passed and kept.path is not None and kept.path.is_file()


def test_bad_heads_are_refused_with_one_line(
    head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "head.pt").write_bytes((head / "head.pt").read_bytes())
    spec = json.loads((head / "head.json").read_text())
    (bad / "head.json").write_text(json.dumps(spec | {"arch": "transformer"}))
    with pytest.raises(UserError, match="unknown head arch"):
        _convert(bad, tmp_path)
    (bad / "head.json").write_text(json.dumps(spec | {"pooling": "mean_max"}))
    with pytest.raises(UserError, match="does not match backbone yamnet"):
        _convert(bad, tmp_path)

    monkeypatch.setattr(sys, "argv", ["convert", "yamnet-head", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: head folder not found: {tmp_path / 'missing'}"
    ]
