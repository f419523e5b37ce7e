"""Reading a manifest file: every key checked, errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..labels import EMOTIONS, FOREGROUND_LABELS, NEUTRAL
from ..pooling import POOLINGS
from ..speech_level import LEVELS
from ..yamlfile import read_yaml
from .locate import check_url, package_models_dir
from .schema import (
    BACKBONE_FRONTENDS,
    FRONTENDS,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    QUANTIZATIONS,
    Manifest,
    ModelEntry,
    ModelFile,
)

_FILE_KEYS = {f for f in ModelFile.__dataclass_fields__}
_ENTRY_KEYS = {"description", "frontend", "sample_rate", "window_s", "labels", "backbone", "pooling",
               "fused_backbone", "fused_pooling", "window_level", "head", "foreground_head",
               "foreground_labels", "quantization", "license", "adaptation"}


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
    window_level = e.get("window_level", "raw")
    if window_level not in LEVELS:
        raise bad("window_level", f"must be one of {', '.join(LEVELS)}, got {window_level!r}")
    if window_level != "raw" and e.get("backbone") is None:
        raise bad("window_level", "needs a backbone (its frames are what speech frames select)")
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
    fused = _parse_file(e["fused_backbone"], f"{key}.fused_backbone", where) if e.get("fused_backbone") \
        else None
    if fused is not None and backbone is None:
        raise bad("fused_backbone", "needs a backbone (its pooled frames follow the backbone's)")
    fused_pooling = e.get("fused_pooling", "mean")
    if fused_pooling not in POOLINGS:
        raise bad("fused_pooling", f"must be one of {', '.join(POOLINGS)}, got {fused_pooling!r}")
    foreground = _parse_file(e["foreground_head"], f"{key}.foreground_head", where) \
        if e.get("foreground_head") else None
    if foreground is not None and (backbone is None or NEUTRAL not in labels):
        raise bad("foreground_head", "needs a backbone and a `neutral` label (it reads the pooled features "
                                     "the head reads, and its neutral probability is the background score)")
    fg_labels = e.get("foreground_labels")
    if fg_labels is not None:
        if foreground is None:
            raise bad("foreground_labels", "is given without a foreground_head")
        if fg_labels not in (list(FOREGROUND_LABELS), labels):
            raise bad("foreground_labels", f"must be {list(FOREGROUND_LABELS)} (a binary foreground head) or "
                                           f"the entry's labels; got {fg_labels!r}")
    return ModelEntry(
        id=mid, labels=tuple(labels), head=head, backbone=backbone, fused_backbone=fused,
        fused_pooling=fused_pooling, foreground_head=foreground,
        foreground_labels=tuple(fg_labels) if fg_labels is not None else (),
        description=str(e.get("description", "")), frontend=frontend, sample_rate=sr,
        window_s=float(window_s), pooling=pooling, window_level=window_level, quantization=quant,
        license=str(e.get("license", "")), adaptation=adaptation,
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
