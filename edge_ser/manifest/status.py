"""Each model of a manifest, where its files were found and whether they pass their checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelError
from .locate import find_file, search_path, verify_file
from .parse import load_manifest
from .schema import Manifest


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
