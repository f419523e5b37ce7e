"""The model manifest: parsing, search path, sha256 refusal, missing-file message, upsert, describe."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from artefact.manifest import entry_mapping, upsert_entry
from edge_ser import manifest as mf
from edge_ser.cli import describe_models
from edge_ser.errors import ModelError

LABELS = ["anger_disgust", "fear_surprise", "happiness", "sadness"]


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """No test sees the real user model dir or $EDGE_SER_MODELS."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(mf.ENV_MODELS, raising=False)


def _file(tmp: Path, rel: str, content: bytes) -> dict:
    p = tmp / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)
    return {"file": rel, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _entry(head: dict, **kw) -> dict:
    return {"description": "test", "labels": LABELS, "head": head, **kw}


def test_shipped_manifest_is_valid_and_its_files_verify():
    m = mf.load_manifest()
    entry = m.get()  # the default
    assert entry.id == m.default
    dirs = mf.search_path((), m)
    for _, ref in entry.files():
        assert mf.resolve_file(ref, dirs).is_file()


def test_search_path_order(tmp_path, monkeypatch):
    monkeypatch.setenv(mf.ENV_MODELS, f"{tmp_path / 'env1'}:{tmp_path / 'env2'}")
    m_path = tmp_path / "m" / "manifest.yaml"
    m_path.parent.mkdir()
    m_path.write_text("version: 1\nmodels: {}\n")
    dirs = mf.search_path([tmp_path / "cfg"], mf.load_manifest(m_path))
    assert dirs[:5] == [tmp_path / "cfg", tmp_path / "env1", tmp_path / "env2",
                        tmp_path / "xdg" / "edge-ser" / "models", tmp_path / "m"]
    # ../shared may be a symbolic link: compare where the folders really are
    assert [d.resolve() for d in dirs[-2:]] == [mf.package_models_dir().resolve(),
                                                mf.shared_weights_dir().resolve()]


def test_first_folder_on_the_search_path_wins(tmp_path):
    a = _file(tmp_path / "a", "heads/h.onnx", b"first")
    _file(tmp_path / "b", "heads/h.onnx", b"second")
    ref = mf.ModelFile(**a)
    assert mf.resolve_file(ref, [tmp_path / "a", tmp_path / "b"]) == tmp_path / "a" / "heads/h.onnx"


def test_wrong_sha256_is_refused(tmp_path):
    good = _file(tmp_path, "heads/h.onnx", b"the real head")
    (tmp_path / "heads/h.onnx").write_bytes(b"the evil head")  # same size, other content
    ref = mf.ModelFile(**good, url="https://example.org/h.onnx")
    with pytest.raises(ModelError) as e:
        mf.resolve_file(ref, [tmp_path])
    msg = str(e.value)
    assert "sha256" in msg and str(tmp_path / "heads/h.onnx") in msg and "https://example.org/h.onnx" in msg
    assert "\n" not in msg


def test_wrong_size_is_refused(tmp_path):
    good = _file(tmp_path, "h.onnx", b"the real head")
    (tmp_path / "h.onnx").write_bytes(b"trunc")
    with pytest.raises(ModelError, match="has 5 bytes, the manifest expects 13"):
        mf.resolve_file(mf.ModelFile(**good), [tmp_path])


def test_missing_file_says_where_it_looked_and_where_to_download(tmp_path):
    ref = mf.ModelFile(file="yamnet/nothere.tflite", sha256="0" * 64, url="https://example.org/y.tflite")
    dirs = [tmp_path / "one", tmp_path / "two"]
    with pytest.raises(ModelError) as e:
        mf.resolve_file(ref, dirs)
    msg = str(e.value)
    assert "yamnet/nothere.tflite not found" in msg
    assert str(tmp_path / "one") in msg and str(tmp_path / "two") in msg
    assert "https://example.org/y.tflite" in msg and "model.download" in msg


@pytest.fixture
def https_server(tmp_path, monkeypatch):
    """A local HTTPS server (certificate from a test CA that urllib is told to trust) serving
    tmp_path/www; /redirect-http answers 302 to a plain http:// URL. Tests never touch the network."""
    import http.server
    import ssl
    import threading

    from mosquitto import make_certs

    certs = make_certs(tmp_path / "certs")
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def do_GET(self):
            if self.path == "/redirect-http":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/x.bin")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"https://localhost:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_download_only_when_allowed_and_checked(tmp_path, https_server):
    www, base = https_server
    (www / "upstream.bin").write_bytes(b"backbone bytes")
    ref = mf.ModelFile(file="bb/x.tflite", sha256=hashlib.sha256(b"backbone bytes").hexdigest(),
                       url=f"{base}/upstream.bin")
    with pytest.raises(ModelError, match="not found"):
        mf.resolve_file(ref, [tmp_path / "empty"])
    got = mf.resolve_file(ref, [tmp_path / "empty"], download=True)
    assert got == mf.user_models_dir() / "bb/x.tflite" and got.read_bytes() == b"backbone bytes"

    bad = mf.ModelFile(file="bb/y.tflite", sha256="f" * 64, url=f"{base}/upstream.bin")
    with pytest.raises(ModelError, match="refusing it"):
        mf.resolve_file(bad, [tmp_path / "empty"], download=True)
    assert not (mf.user_models_dir() / "bb/y.tflite").exists()


@pytest.mark.parametrize("url", ["file:///etc/hostname", "http://127.0.0.1:9/x.bin", "ftp://h/x.bin",
                                 "data:,backbone%20bytes", "/etc/hostname"])
def test_downloads_only_over_https(tmp_path, url):
    ref = mf.ModelFile(file="bb/x.tflite", sha256="0" * 64, url=url)
    with pytest.raises(ModelError, match="only https"):
        mf.resolve_file(ref, [tmp_path / "empty"], download=True)
    assert not mf.user_models_dir().exists()
    with pytest.raises(ModelError, match=r"models\.m\.head\.url"):
        mf.parse_entry("m", _entry({"file": "h.onnx", "sha256": "0" * 64, "url": url}), "x.yaml")


def test_a_redirect_to_plain_http_is_refused(tmp_path, https_server):
    _, base = https_server
    ref = mf.ModelFile(file="bb/x.tflite", sha256="0" * 64, url=f"{base}/redirect-http")
    with pytest.raises(ModelError, match="only https"):
        mf.resolve_file(ref, [tmp_path / "empty"], download=True)
    assert not (mf.user_models_dir() / "bb").exists() or not any((mf.user_models_dir() / "bb").iterdir())


def test_file_names_never_leave_the_search_path(tmp_path):
    models = tmp_path / "models"
    outside = _file(tmp_path, "secret.onnx", b"outside")
    # a parsed manifest refuses `..` that leaves the folder
    with pytest.raises(ModelError, match=r"models\.m\.head\.file .*leaves the model folders"):
        mf.parse_entry("m", _entry({**outside, "file": "../secret.onnx"}), "x.yaml")
    assert mf.parse_entry("m", _entry({**outside, "file": "heads/../h.onnx"}), "x.yaml")
    # names that bypass the parser (adaptation.reference, a ModelFile built in code) are refused too
    for name in ("../secret.onnx", "heads/../../secret.onnx", str(tmp_path / "secret.onnx")):
        ref = mf.ModelFile(file=name, sha256=outside["sha256"], url="https://example.org/x")
        with pytest.raises(ModelError, match="outside the model search path"):
            mf.resolve_file(ref, [models], download=True)
        assert mf.find_file(ref, [models]) is None
        with pytest.raises(ModelError, match="outside"):
            mf.fetch_file(ref, into=models)
    assert not models.exists() and not mf.user_models_dir().exists()
    # an absolute name inside a search-path folder still resolves
    inner = _file(models, "h.onnx", b"inner")
    ref = mf.ModelFile(file=str(models / "h.onnx"), sha256=inner["sha256"])
    assert mf.resolve_file(ref, [models]) == models / "h.onnx"


def test_manifest_with_download_and_traversal_writes_nothing_outside(tmp_path, monkeypatch):
    from edge_ser.model import load_model
    from edge_ser.settings import ModelSettings

    mpath = tmp_path / "m" / "manifest.yaml"
    mpath.parent.mkdir()
    mpath.write_text(yaml.safe_dump({"version": 1, "default": "m", "models": {"m": _entry(
        {"file": "../../escaped.onnx", "sha256": "0" * 64, "url": "https://example.org/x"})}}))
    with pytest.raises(ModelError, match="leaves the model folders"):
        load_model(ModelSettings(manifest=str(mpath), download=True))
    assert not (tmp_path / "escaped.onnx").exists() and not (tmp_path.parent / "escaped.onnx").exists()


def test_unknown_model_id_lists_known(tmp_path):
    head = _file(tmp_path, "h.onnx", b"h")
    mpath = tmp_path / "manifest.yaml"
    upsert_entry(mpath, "one", _entry(head))
    with pytest.raises(ModelError, match=r"unknown model 'two' .*known: one"):
        mf.load_manifest(mpath).get("two")


@pytest.mark.parametrize("patch, key", [
    ({"labels": ["anger", "sadness"]}, "labels"),
    ({"labels": ["anger_disgust", "sadness", "neutral"]}, "labels"),
    ({"labels": [*LABELS, "sadness"]}, "labels"),
    ({"frontend": "mfcc"}, "frontend"),
    ({"pooling": "median"}, "pooling"),
    ({"sample_rate": 44100}, "sample_rate"),
    ({"head": {"file": "h.onnx", "sha256": "abc"}}, "head.sha256"),
    ({"head": {"file": "h.onnx", "sha256": "0" * 64, "colour": "red"}}, "head.colour"),
    ({"fused_backbone": {"file": "y.tflite", "sha256": "0" * 64}}, "fused_backbone"),  # no backbone
    ({"foreground_head": {"file": "f.onnx", "sha256": "0" * 64}}, "foreground_head"),  # no backbone
    ({"foreground_labels": ["foreground", "neutral"]}, "foreground_labels"),  # no foreground head
    ({"labels": [*LABELS, "neutral"], "backbone": {"file": "b.onnx", "sha256": "0" * 64},
      "foreground_head": {"file": "f.onnx", "sha256": "0" * 64}, "foreground_labels": ["speech", "neutral"]},
     "foreground_labels"),
    ({"backbone": {"file": "b.onnx", "sha256": "0" * 64}, "fused_pooling": "frames"}, "fused_pooling"),
])
def test_bad_entries_name_the_key(tmp_path, patch, key):
    head = _file(tmp_path, "h.onnx", b"h")
    with pytest.raises(ModelError, match=rf"models\.m\.{key}"):
        mf.parse_entry("m", {**_entry(head), **patch}, "x.yaml")


def test_foreground_labels_of_a_binary_head_are_read_and_written(tmp_path):
    head = _file(tmp_path, "h.onnx", b"h")
    ref = {"file": "f.onnx", "sha256": "0" * 64}
    raw = {**_entry(head), "labels": [*LABELS, "neutral"], "backbone": ref, "foreground_head": ref,
           "foreground_labels": ["foreground", "neutral"]}
    entry = mf.parse_entry("m", raw, "x.yaml")
    assert entry.foreground_labels == ("foreground", "neutral")
    assert mf.parse_entry("m", entry_mapping(entry), "x.yaml") == entry
    alike = mf.parse_entry("m", {k: v for k, v in raw.items() if k != "foreground_labels"})
    assert alike.foreground_labels == ()  # an emotion head as foreground head: the entry's labels


def test_bad_manifest_files(tmp_path):
    p = tmp_path / "manifest.yaml"
    p.write_text("models: [1, 2\n")
    with pytest.raises(ModelError, match="not valid YAML"):
        mf.load_manifest(p)
    p.write_text("version: 1\ndefault: ghost\nmodels: {}\n")
    with pytest.raises(ModelError, match="default 'ghost'"):
        mf.load_manifest(p)
    with pytest.raises(ModelError, match="cannot read model manifest"):
        mf.load_manifest(tmp_path / "absent.yaml")


def test_upsert_adds_updates_and_keeps_the_file_readable(tmp_path):
    mpath = tmp_path / "manifest.yaml"
    mpath.write_text("# header comment kept\nversion: 1\nmodels: {}\n")
    head = _file(tmp_path, "heads/a.onnx", b"a")
    upsert_entry(mpath, "a", _entry(head, training={"command": "python -m training x"}))
    upsert_entry(mpath, "b", _entry(head, description="second"))
    text = mpath.read_text()
    assert text.startswith("# header comment kept\n")
    assert mpath.stat().st_mode & 0o777 == 0o644 & ~_umask()  # never mkstemp's 0600
    assert "labels: [anger_disgust, fear_surprise, happiness, sadness]" in text
    assert "\n\n  b:\n" in text  # one block per model
    m = mf.load_manifest(mpath)
    assert list(m.models) == ["a", "b"] and m.default == "a"
    assert m.models["a"].extra["training"]["command"] == "python -m training x"

    upsert_entry(mpath, "a", _entry(head, description="updated"), make_default=False)
    upsert_entry(mpath, "b", _entry(head, description="second"), make_default=True)
    m = mf.load_manifest(mpath)
    assert m.models["a"].description == "updated" and m.default == "b"
    assert list(m.models) == ["a", "b"]


def test_upsert_refuses_a_bad_entry_and_leaves_the_file_alone(tmp_path):
    mpath = tmp_path / "manifest.yaml"
    head = _file(tmp_path, "h.onnx", b"h")
    upsert_entry(mpath, "good", _entry(head))
    before = mpath.read_text()
    with pytest.raises(ModelError, match="labels"):
        upsert_entry(mpath, "bad", _entry(head, labels=["joy"]))
    assert mpath.read_text() == before
    assert yaml.safe_load(before)["models"]["good"]["head"]["file"] == "h.onnx"


def test_describe_models_reports_found_missing_and_mismatch(tmp_path):
    mpath = tmp_path / "manifest.yaml"
    ok = _file(tmp_path, "ok.onnx", b"ok")
    bad = _file(tmp_path, "bad.onnx", b"bad")
    (tmp_path / "bad.onnx").write_bytes(b"BAD")
    upsert_entry(mpath, "fine", _entry(ok))
    upsert_entry(mpath, "broken", _entry(bad))
    upsert_entry(mpath, "absent", _entry({"file": "gone.onnx", "sha256": "1" * 64,
                                            "url": "https://example.org/gone.onnx"}))
    rows = {r["id"]: r for r in mf.model_status(mpath)}
    assert rows["fine"]["default"] and rows["fine"]["files"][0]["status"] == "ok"
    assert rows["broken"]["files"][0]["status"] == "mismatch"
    assert rows["absent"]["files"][0]["status"] == "missing"
    text = describe_models(mpath)
    assert "fine (default)" in text and "[sha256 ok]" in text
    assert "SHA256 MISMATCH" in text and "MISSING" in text and "https://example.org/gone.onnx" in text


def test_sha256_of_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * (3 << 20))
    assert mf.sha256_of(p) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_every_subpackage_and_the_models_ship_in_the_wheel():
    """pyproject lists packages explicitly (to map models/ to edge_ser._models): keep it complete."""
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    tool = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "edge_ser").rglob("__init__.py")}
    missing = sorted(on_disk - set(tool["packages"]))
    assert not missing, f"add to pyproject packages: {missing}"
    assert tool["package-dir"]["edge_ser._models"] == "models"
    assert "manifest.yaml" in tool["package-data"]["edge_ser._models"]
