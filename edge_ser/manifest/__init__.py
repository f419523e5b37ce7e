"""The model manifest (models/manifest.yaml): which files make a model, where to find them, their sha256.

Files are named relative to a search path (see `search_path`), so the same manifest works from a
source checkout (backbones in ../shared/weights), an installed wheel and a user's model folder.
Every file is checked against its sha256 before a runtime sees it.

schema: the entries and their allowed values; locate: the search path, sha256 checks, downloads;
parse: reading and validating a file; status: where each model's files are and whether they pass.
edge_ser only reads manifests; the offline tools write them (artefact.manifest).
"""

from .locate import (
    check_url,
    fetch_file,
    find_file,
    inside,
    package_models_dir,
    readable_mode,
    resolve_file,
    search_path,
    sha256_of,
    shared_weights_dir,
    user_models_dir,
    verify_file,
)
from .parse import load_manifest, parse_entry
from .schema import (
    BACKBONE_FRONTENDS,
    ENV_MODELS,
    FRONTENDS,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    QUANTIZATIONS,
    Manifest,
    ModelEntry,
    ModelFile,
)
from .status import model_status

__all__ = [
    "BACKBONE_FRONTENDS", "ENV_MODELS", "FRONTENDS", "MANIFEST_NAME", "MAX_MANIFEST_BYTES", "QUANTIZATIONS",
    "Manifest", "ModelEntry", "ModelFile", "check_url", "fetch_file", "find_file", "inside",
    "load_manifest", "model_status", "package_models_dir", "parse_entry", "readable_mode", "resolve_file",
    "search_path", "sha256_of", "shared_weights_dir", "user_models_dir", "verify_file",
]
