"""The model manifest (models/manifest.yaml): which files make a model, where to find them, their sha256.

Files are named relative to a search path (see `search_path`), so the same manifest works from a
source checkout (backbones in ../shared/weights), an installed wheel and a user's model folder.
Every file is checked against its sha256 before a runtime sees it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError
from .features import POOLINGS
from .labels import EMOTIONS, NEUTRAL
from .yamlfile import read_yaml

MANIFEST_NAME = "manifest.yaml"
FRONTENDS = ("waveform", "logmel", "whisper_logmel")
"""Input of a model's first file: raw 16 kHz samples, the 64-band log-mel of edge_ser.logmel, or the
80-band Whisper log-mel of edge_ser.whisper_mel."""
BACKBONE_FRONTENDS = ("waveform", "whisper_logmel")
"""Frontends a backbone file can take (the log-mel CNN is a single-file model)."""
QUANTIZATIONS = ("float32", "float16", "int8", "dynamic")
MAX_MANIFEST_BYTES = 1 << 20
"""Largest manifest read (the shipped one, with ten models, is 16 KB)."""
ENV_MODELS = "EDGE_SER_MODELS"
"""Environment variable: extra model folders (os.pathsep-separated), searched after the config's."""

_PKG_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelFile:
    """One file of a model as the manifest names it."""

    file: str
    """Path relative to a search-path folder (or absolute)."""

    sha256: str
    """Expected sha256 (hex) of the file; any other content is refused."""

    size: int | None = None
    """Expected size in bytes (a cheap first check, and shown to people before a download)."""

    url: str | None = None
    """Public download URL, used only when the user allows downloading."""

    input: str | None = None
    """Input tensor name; null = the file's only/first input."""

    output: str | None = None
    """Output tensor name: frame embeddings for a backbone, probabilities for a head; null = first."""

    scores_output: str | None = None
    """Backbone output with AudioSet class scores (class 0 = Speech); null = none."""

    input_dim: int | None = None
    """Length of the head's feature vector (checked against the pooled backbone output)."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest."""

    id: str
    """Model id (the key under `models:`)."""

    labels: tuple[str, ...]
    """Head output order; EMOTIONS plus optionally `neutral`."""

    head: ModelFile
    """The trained head, or the whole model when there is no backbone."""

    backbone: ModelFile | None = None
    """Pretrained feature extractor giving [n_frames, dim] embeddings, or [n_states, n_frames, dim]
    hidden states (each state pooled, then concatenated); null for end-to-end models."""

    description: str = ""
    """One line for `edge-ser models`."""

    frontend: str = "waveform"
    """Input of the first file (see FRONTENDS)."""

    sample_rate: int = 16000
    """Sample rate the model expects."""

    window_s: float = 2.0
    """Window length the model was trained on."""

    pooling: str = "mean"
    """edge_ser.features.pool_frames method applied to the backbone frames."""

    quantization: str = "float32"
    """Numeric format of the head (see QUANTIZATIONS)."""

    license: str = ""
    """Terms of use (trained models inherit their corpora's terms)."""

    adaptation: ModelFile | None = None
    """Reference feature statistics for model.adapt (manifest: `adaptation: {reference, sha256}`)."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Every other key of the entry (training, parity_report, ...), kept as written."""

    def files(self) -> list[tuple[str, ModelFile]]:
        """(role, file) pairs, backbone first."""
        return ([("backbone", self.backbone)] if self.backbone else []) + [("head", self.head)]


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest file."""

    path: Path
    """Where it was read from (its folder is part of the search path)."""

    default: str | None
    """Id used when the config names none."""

    models: dict[str, ModelEntry]
    """Entries by id, in file order."""

    def get(self, model_id: str | None = None) -> ModelEntry:
        """The entry `model_id` (or the default), or a ModelError listing the known ids."""
        mid = model_id or self.default
        if mid is None:
            raise ModelError(f"{self.path} names no default model; pass a model id ({self._known()})")
        if mid not in self.models:
            raise ModelError(f"unknown model {mid!r} in {self.path} ({self._known()})")
        return self.models[mid]

    def _known(self) -> str:
        return "known: " + (", ".join(self.models) or "none")


def package_models_dir() -> Path:
    """The models/ folder shipped with the package (wheel: edge_ser/_models; checkout: <repo>/models)."""
    inside = _PKG_DIR / "_models"
    if (inside / MANIFEST_NAME).is_file():
        return inside
    return _PKG_DIR.parent / "models"


def shared_weights_dir() -> Path:
    """<repo>/../shared/weights: the team's pretrained backbones beside a source checkout."""
    return _PKG_DIR.parent.parent / "shared" / "weights"


def _in_checkout() -> bool:
    """True when edge_ser runs from a source tree (editable install), not from an installed wheel."""
    return (_PKG_DIR.parent / "pyproject.toml").is_file()


def user_models_dir() -> Path:
    """Per-user model folder (~/.local/share/edge-ser/models, honouring XDG_DATA_HOME)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edge-ser" / "models"


def search_path(extra: Sequence[str | Path] = (), manifest: Manifest | None = None) -> list[Path]:
    """Folders searched for model files, in order, without duplicates.

    settings.model.search_path, $EDGE_SER_MODELS, the user dir, the manifest's own folder (when it
    is not the package one), the package models/, <repo>/../shared/weights.
    """
    dirs: list[Path] = [Path(p).expanduser() for p in extra]
    env = os.environ.get(ENV_MODELS, "")
    dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs.append(user_models_dir())
    if manifest is not None:
        dirs.append(manifest.path.parent)
    dirs.append(package_models_dir())
    if _in_checkout():  # beside an installed wheel this path would mean nothing
        dirs.append(shared_weights_dir())
    seen: set[str] = set()
    out = []
    for d in dirs:
        key = os.path.normpath(os.path.abspath(d))
        if key not in seen:
            seen.add(key)
            out.append(Path(key))
    return out


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}
"""(path, size, mtime_ns) -> sha256, so describing and then loading a model hashes each file once."""


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_of(path)
    return _verified[key]


def inside(name: str, folder: Path) -> Path | None:
    """`folder / name` when it stays inside `folder` with `..` resolved by name, else None.

    An absolute name is inside a folder only when it lies under it. Symbolic links placed in a
    folder are followed: whoever can create them there could as well put the file there.
    """
    base = os.path.normpath(os.path.abspath(folder))
    path = os.path.normpath(os.path.join(base, os.path.expanduser(name)))
    return Path(path) if path.startswith(base.rstrip(os.sep) + os.sep) else None


def find_file(ref: ModelFile, dirs: Sequence[Path]) -> Path | None:
    """First existing file for `ref` along `dirs` (no checksum check); names never leave `dirs`."""
    for d in dirs:
        path = inside(ref.file, d)
        if path is not None and path.is_file():
            return path
    return None


def verify_file(path: Path, ref: ModelFile) -> None:
    """Refuse a file whose size or sha256 differs from the manifest."""
    size = path.stat().st_size
    if ref.size is not None and size != ref.size:
        raise ModelError(f"model file {path} has {size} bytes, the manifest expects {ref.size}: "
                         f"it is truncated or a different version; replace it{_from(ref)}")
    try:
        digest = _cached_sha256(path)
    except OSError as e:  # e.g. a root-owned 0600 file under DynamicUser=yes
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}") from None
    if digest != ref.sha256.lower():
        raise ModelError(f"model file {path} has sha256 {digest[:16]}..., the manifest expects "
                         f"{ref.sha256[:16]}...: it is corrupt or a different version; "
                         f"replace it{_from(ref)}")


def _from(ref: ModelFile) -> str:
    return f" (download: {ref.url})" if ref.url else ""


def resolve_file(ref: ModelFile, dirs: Sequence[Path], download: bool = False) -> Path:
    """Find `ref` along `dirs` and check its sha256; download it only when `download` is true."""
    if not any(inside(ref.file, d) for d in dirs):
        raise ModelError(f"model file {ref.file} is outside the model search path "
                         f"({', '.join(str(d) for d in dirs)}); manifest file names must stay inside it")
    path = find_file(ref, dirs)
    if path is None:
        if download and ref.url:
            path = fetch_file(ref)
        else:
            looked = ", ".join(str(d) for d in dirs) if not Path(ref.file).is_absolute() else ref.file
            how = (f"; download it from {ref.url} into {user_models_dir() / ref.file} "
                   f"(or allow downloading: model.download: true)" if ref.url else "")
            raise ModelError(f"model file {ref.file} not found (looked in: {looked}){how}")
    verify_file(path, ref)
    return path


def fetch_file(ref: ModelFile, into: Path | None = None) -> Path:
    """Download `ref.url` into the user model dir, verify it, then move it into place atomically."""
    if not ref.url:
        raise ModelError(f"model file {ref.file} has no download URL in the manifest")
    check_url(ref.url)
    base = user_models_dir() if into is None else into
    dest = inside(ref.file, base)
    if dest is None:
        raise ModelError(f"model file {ref.file} would be downloaded outside {base}; refusing it")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot download {ref.url} to {dest}: {e}") from None
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, _HTTPS_ONLY.open(ref.url, timeout=60) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
        digest = sha256_of(tmp)
        if digest != ref.sha256.lower():
            raise ModelError(f"download of {ref.url} has sha256 {digest[:16]}..., the manifest expects "
                             f"{ref.sha256[:16]}...; refusing it")
        os.chmod(tmp, readable_mode(dest))
        os.replace(tmp, dest)
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        raise ModelError(f"cannot download {ref.url} to {dest}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def check_url(url: str) -> None:
    """Downloads only over https: the sha256 check catches a changed file, TLS who is listening."""
    if urllib.parse.urlsplit(url).scheme.lower() != "https":
        raise ModelError(f"model download URL {url} is not https://; only https downloads are allowed")


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another https URL (urllib would also follow one to http)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_HTTPS_ONLY = urllib.request.OpenerDirector()
for _handler in (urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(), _HttpsRedirectsOnly(),
                 urllib.request.HTTPErrorProcessor(), urllib.request.HTTPDefaultErrorHandler()):
    _HTTPS_ONLY.add_handler(_handler)
"""An opener that speaks https only (no file:, ftp:, data: or plain http handlers at all)."""


def readable_mode(existing: Path) -> int:
    """Keep an existing file's mode; new files get 0644 minus the umask (mkstemp's 0600 would hide
    the file from a daemon running as another user)."""
    if existing.exists():
        return existing.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o644 & ~umask



# --- parsing -----------------------------------------------------------------------------------

_FILE_KEYS = {f for f in ModelFile.__dataclass_fields__}
_ENTRY_KEYS = {"description", "frontend", "sample_rate", "window_s", "labels", "backbone", "pooling",
               "head", "quantization", "license", "adaptation"}


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate a manifest; null = the package's models/manifest.yaml."""
    p = Path(path).expanduser() if path is not None else package_models_dir() / MANIFEST_NAME
    data = read_yaml(p, "model manifest", max_bytes=MAX_MANIFEST_BYTES, error=ModelError)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelError(f"model manifest {p} must be a mapping with a `models:` mapping")
    if data.get("version", 1) != 1:
        raise ModelError(f"model manifest {p} has version {data.get('version')!r}; this edge-ser reads 1")
    models = {str(mid): parse_entry(str(mid), e, p) for mid, e in data["models"].items()}
    default = data.get("default")
    if default is not None and default not in models:
        raise ModelError(f"model manifest {p}: default {default!r} is not one of its models")
    return Manifest(path=p.resolve(), default=default, models=models)


def parse_entry(mid: str, e: Any, where: str | Path = "manifest") -> ModelEntry:
    """Validate one `models.<id>` mapping; errors name the key."""
    key = f"models.{mid}"
    if not isinstance(e, dict):
        raise ModelError(f"{where}: {key} must be a mapping")

    def bad(sub: str, why: str) -> ModelError:
        return ModelError(f"{where}: {key}.{sub} {why}")

    labels = e.get("labels")
    allowed = set(EMOTIONS) | {NEUTRAL}
    if not isinstance(labels, list) or not labels or any(lb not in allowed for lb in labels):
        raise bad("labels", f"must be a list drawn from {', '.join(EMOTIONS)}, {NEUTRAL}; got {labels!r}")
    if len(set(labels)) != len(labels):
        raise bad("labels", "has duplicates")
    if not set(EMOTIONS) <= set(labels):
        raise bad("labels", f"must contain all of {', '.join(EMOTIONS)} (the published classes); "
                            f"got {labels!r}")
    frontend = e.get("frontend", "waveform")
    if frontend not in FRONTENDS:
        raise bad("frontend", f"must be one of {', '.join(FRONTENDS)}, got {frontend!r}")
    pooling = e.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise bad("pooling", f"must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    quant = e.get("quantization", "float32")
    if quant not in QUANTIZATIONS:
        raise bad("quantization", f"must be one of {', '.join(QUANTIZATIONS)}, got {quant!r}")
    sr = e.get("sample_rate", 16000)
    if sr != 16000:
        raise bad("sample_rate", f"must be 16000 (the daemon resamples to 16 kHz), got {sr!r}")
    window_s = e.get("window_s", 2.0)
    if not isinstance(window_s, (int, float)) or isinstance(window_s, bool) or not 0.5 <= window_s <= 30:
        raise bad("window_s", f"must be a number of seconds between 0.5 and 30, got {window_s!r}")
    if "head" not in e:
        raise bad("head", "is missing")
    head = _parse_file(e["head"], f"{key}.head", where)
    backbone = _parse_file(e["backbone"], f"{key}.backbone", where) if e.get("backbone") else None
    adaptation = _parse_reference(e["adaptation"], f"{key}.adaptation", where) if e.get("adaptation") \
        else None
    if backbone is not None and frontend not in BACKBONE_FRONTENDS:
        raise bad("frontend", f"must be one of {', '.join(BACKBONE_FRONTENDS)} when a backbone is given")
    return ModelEntry(
        id=mid, labels=tuple(labels), head=head, backbone=backbone,
        description=str(e.get("description", "")), frontend=frontend, sample_rate=sr,
        window_s=float(window_s), pooling=pooling, quantization=quant, license=str(e.get("license", "")),
        adaptation=adaptation,
        extra={k: v for k, v in e.items() if k not in _ENTRY_KEYS},
    )


def _parse_file(d: Any, key: str, where: str | Path) -> ModelFile:
    if not isinstance(d, dict):
        raise ModelError(f"{where}: {key} must be a mapping with file and sha256")
    unknown = set(d) - _FILE_KEYS
    if unknown:
        known = ", ".join(sorted(_FILE_KEYS))
        raise ModelError(f"{where}: unknown key {key}.{sorted(unknown)[0]} (known: {known})")
    if not isinstance(d.get("file"), str) or not d["file"]:
        raise ModelError(f"{where}: {key}.file must be a file name")
    if not os.path.isabs(d["file"]) and os.path.normpath(d["file"]).split(os.sep)[0] == "..":
        raise ModelError(f"{where}: {key}.file {d['file']} leaves the model folders (..); "
                         "name files inside the search path")
    if d.get("url") is not None:
        if not isinstance(d["url"], str):
            raise ModelError(f"{where}: {key}.url must be a URL")
        try:
            check_url(d["url"])
        except ModelError as e:
            raise ModelError(f"{where}: {key}.url: {e}") from None
    sha = d.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
        raise ModelError(f"{where}: {key}.sha256 must be 64 hex digits")
    for k in ("size", "input_dim"):
        if d.get(k) is not None and (not isinstance(d[k], int) or isinstance(d[k], bool) or d[k] <= 0):
            raise ModelError(f"{where}: {key}.{k} must be a positive integer")
    return ModelFile(**{k: d.get(k) for k in _FILE_KEYS if k in d})


def _parse_reference(d: Any, key: str, where: str | Path) -> ModelFile:
    """`adaptation: {reference: <file>, sha256: <hex>}`: checked like any other model file."""
    if not isinstance(d, dict) or not isinstance(d.get("reference"), str):
        raise ModelError(f"{where}: {key} must be a mapping with reference (a file name) and sha256")
    rest = {k: v for k, v in d.items() if k != "reference"}
    return _parse_file({"file": d["reference"], **rest}, key, where)


# --- describing (`edge-ser models`) --------------------------------------------------------------

def model_status(manifest: str | Path | Manifest | None = None,
                 extra: Sequence[str | Path] = ()) -> list[dict]:
    """One dict per model: id, default, description, labels, and per file where it was found and
    whether its sha256 matches ("ok", "mismatch", "missing")."""
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    dirs = search_path(extra, m)
    rows = []
    for mid, entry in m.models.items():
        files = []
        for role, ref in entry.files():
            path = find_file(ref, dirs)
            if path is None:
                status = "missing"
            else:
                try:
                    verify_file(path, ref)
                    status = "ok"
                except ModelError:
                    status = "mismatch"
            files.append({"role": role, "file": ref.file, "path": str(path) if path else None,
                          "status": status, "url": ref.url, "size": ref.size})
        rows.append({"id": mid, "default": mid == m.default, "description": entry.description,
                     "labels": list(entry.labels), "quantization": entry.quantization,
                     "license": entry.license, "files": files})
    return rows


def describe_models(manifest: str | Path | None = None, extra: Sequence[str | Path] = ()) -> str:
    """Human-readable text for `edge-ser models`: each model, its files, where found, sha256 status."""
    m = load_manifest(manifest)
    lines = [f"manifest: {m.path}",
             "search path: " + os.pathsep.join(str(d) for d in search_path(extra, m))]
    for row in model_status(m, extra):
        mark = " (default)" if row["default"] else ""
        lines.append("")
        lines.append(f"{row['id']}{mark}: {row['description']}")
        lines.append(f"  labels: {', '.join(row['labels'])}; quantization: {row['quantization']}")
        if row["license"]:
            lines.append(f"  license: {row['license']}")
        for f in row["files"]:
            where = f["path"] or (f"not found; download: {f['url']}" if f["url"] else "not found")
            status = {"ok": "sha256 ok", "mismatch": "SHA256 MISMATCH (refused)", "missing": "MISSING"}
            lines.append(f"  {f['role']}: {f['file']} -> {where} [{status[f['status']]}]")
    return "\n".join(lines)
