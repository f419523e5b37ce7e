"""Where model files are found, and the checks before a runtime sees one: the search path, names that
stay inside it, size and sha256, https-only downloads written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .schema import ENV_MODELS, MANIFEST_NAME, Manifest, ModelFile

_PKG_DIR = Path(__file__).resolve().parent.parent
"""The edge_ser package folder."""


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
