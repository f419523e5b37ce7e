"""artefact.manifest: the typed builder and writer of manifest entries over edge_ser's ModelEntry."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from artefact.manifest import NO_FILE, entry_mapping, file_ref, write_entry
from edge_ser.errors import ModelError
from edge_ser.labels import EMOTIONS, NEUTRAL
from edge_ser.manifest import ModelEntry, ModelFile, load_manifest, package_models_dir, parse_entry


def test_every_shipped_entry_is_written_back_as_it_is():
    data = yaml.safe_load((package_models_dir() / "manifest.yaml").read_text())
    for mid, mapping in data["models"].items():
        assert entry_mapping(parse_entry(mid, mapping)) == mapping, mid


def test_written_entry_reads_back_equal(tmp_path):
    head = tmp_path / "heads" / "h.tflite"
    head.parent.mkdir()
    head.write_bytes(b"head")
    ref = tmp_path / "heads" / "h.norm.json"
    ref.write_text("{}")
    manifest = tmp_path / "manifest.yaml"
    entry = ModelEntry(
        id="m", labels=(*EMOTIONS, NEUTRAL), description="a head",
        backbone=ModelFile(file="yamnet/yamnet.tflite", sha256="a" * 64, size=3, url="https://x.org/y",
                           input="waveform", output="Identity_1", scores_output="Identity"),
        head=file_ref(head, manifest, input="features", output="probs", input_dim=1024),
        pooling="mean_std", quantization="int8", license="terms",
        adaptation=file_ref(ref, manifest), extra={"training": {"command": "x"}, "parity_report": "r.json"})
    write_entry(manifest, entry, make_default=True)
    m = load_manifest(manifest)
    assert m.default == "m"
    got = m.models["m"]
    assert got.head == ModelFile(file="heads/h.tflite", sha256=entry.head.sha256, size=4, input="features",
                                 output="probs", input_dim=1024)
    assert got.adaptation.file == "heads/h.norm.json"
    assert dataclasses.replace(got, adaptation=None, head=entry.head) == dataclasses.replace(
        entry, adaptation=None)


def test_a_template_without_its_file_is_refused(tmp_path):
    manifest = tmp_path / "manifest.yaml"
    with pytest.raises(ModelError, match="head.file"):
        write_entry(manifest, ModelEntry(id="t", labels=tuple(EMOTIONS), head=NO_FILE))
    assert not manifest.exists()


def test_a_file_outside_the_manifest_folder_is_named_by_its_absolute_path(tmp_path):
    f = tmp_path / "elsewhere" / "x.onnx"
    f.parent.mkdir()
    f.write_bytes(b"x")
    assert file_ref(f, tmp_path / "models" / "manifest.yaml").file == str(f.resolve())
