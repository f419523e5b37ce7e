"""model.adapt end to end: the reference statistics are checked like every model file, and the
adaptation state is written when the daemon exits (each model closed exactly once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SPEECH, FakeModel, run_cli

from edge_ser import manifest as mf
from edge_ser.errors import ModelError
from edge_ser.model import load_model
from edge_ser.pipeline import Pipeline
from edge_ser.publish.memory import MemoryPublisher
from edge_ser.settings import ModelSettings, Settings

MODELS = REPO / "models"
REFERENCE = "heads/yamnet-mlp-allplus.norm.json"


def adapted_manifest(tmp_path: Path, **adaptation) -> Path:
    """A YAMNet model of the shipped manifest with an adaptation block (its head resolves in the package
    models/, its backbone in ../shared/weights)."""
    shipped = yaml.safe_load((MODELS / "manifest.yaml").read_text())
    entry = dict(shipped["models"]["yamnet-mlp-allplus-int8"])
    entry["adaptation"] = adaptation
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "default": "adapted", "models": {"adapted": entry}}))
    return path


@pytest.mark.needs_shared
def test_listen_writes_the_adaptation_state_when_it_exits(tmp_path: Path) -> None:
    manifest = adapted_manifest(tmp_path, reference=REFERENCE, sha256=mf.sha256_of(MODELS / REFERENCE))
    state = tmp_path / "state" / "adapt.json"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"manifest": str(manifest), "adapt": True,
                                             "adapt_state": str(state)},
                                   "gate": {"neutral_once": False}}))
    proc = run_cli("listen", "--config", str(cfg), "--input", str(SPEECH), timeout=120)
    assert proc.returncode == 0, proc.stderr
    inferred = sum(not json.loads(line)["gated"] for line in proc.stdout.splitlines())
    assert inferred > 0
    saved = json.loads(state.read_text())
    assert saved["model"] == "adapted" and saved["n"] == inferred
    # the next run starts from it
    proc = run_cli("listen", "--config", str(cfg), "--input", str(SPEECH), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(state.read_text())["n"] == 2 * inferred


@pytest.mark.needs_shared
def test_the_reference_file_is_checked_by_sha256(tmp_path: Path) -> None:
    manifest = adapted_manifest(tmp_path, reference="ref.json", sha256="0" * 64)
    (tmp_path / "ref.json").write_text((MODELS / REFERENCE).read_text())
    with pytest.raises(ModelError, match="ref.json has sha256"):
        load_model(ModelSettings(manifest=str(manifest), adapt=True))
    # without adapt the reference is not needed at all
    assert load_model(ModelSettings(manifest=str(manifest))).id == "adapted"


@pytest.mark.parametrize("adaptation, fragment", [
    ({"reference": REFERENCE}, "adaptation.sha256 must be 64 hex digits"),
    ({"reference": "../../ref.json", "sha256": "0" * 64}, "leaves the model folders"),
    ({"file": REFERENCE}, "adaptation must be a mapping with reference"),
])
def test_a_bad_adaptation_block_names_the_key(tmp_path: Path, adaptation: dict, fragment: str) -> None:
    manifest = adapted_manifest(tmp_path, **adaptation)
    with pytest.raises(ModelError, match=fragment):
        mf.load_manifest(manifest)


class ClosingModel(FakeModel):
    def __init__(self, model_id: str) -> None:
        super().__init__(model_id=model_id)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_a_model_replaced_by_a_reload_is_closed_once_by_the_pipeline() -> None:
    from test_pipeline import ArraySource, tone

    first, second = ClosingModel("first"), ClosingModel("second")
    new = Settings(model=ModelSettings(id="second"))
    p = Pipeline(Settings(), first, [MemoryPublisher()], reloader=lambda: new, model_loader=lambda _: second)
    p.run(ArraySource(tone(6, 0.1), on_block=lambda n: p.request_reload() if n == 20 else None))
    assert p.model is second and second.calls > 0
    assert (first.closed, second.closed) == (1, 0)  # the one in use is closed by its owner, the CLI
