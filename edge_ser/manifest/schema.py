"""The manifest's schema: the model files and entries edge_ser reads, and the values they may take."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

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
    """edge_ser.pooling.pool_frames method applied to the backbone frames."""

    fused_backbone: ModelFile | None = None
    """A second backbone run on the same window (raw 16 kHz samples in, [n_frames, dim] out): its
    frames, pooled by `fused_pooling`, follow the backbone's pooled features into the head (a head
    trained on fused features, `training --fuse`); null for one backbone."""

    fused_pooling: str = "mean"
    """edge_ser.pooling.pool_frames method applied to the fused backbone's frames."""

    window_level: str = "raw"
    """How a window reaches the backbone (edge_ser.speech_level.LEVELS): raw, or speech = its level set
    on its speech frames and only those frames pooled."""

    quantization: str = "float32"
    """Numeric format of the head (see QUANTIZATIONS)."""

    license: str = ""
    """Terms of use (trained models inherit their corpora's terms)."""

    foreground_head: ModelFile | None = None
    """A second head on the same pooled features, trained where other people talk in the background
    (room copies with babble): its `neutral` probability says that no foreground talker is in the
    window, and `gate.background_threshold` calls such a window `neutral`; null = none."""

    foreground_labels: tuple[str, ...] = ()
    """The foreground head's output order: (foreground, neutral) for a binary head (training --classes
    foreground); empty = the entry's labels (another emotion head)."""

    adaptation: ModelFile | None = None
    """Reference feature statistics for model.adapt (manifest: `adaptation: {reference, sha256}`)."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Every other key of the entry (training, parity_report, ...), kept as written."""

    def files(self) -> list[tuple[str, ModelFile]]:
        """(role, file) pairs, backbones first."""
        roles = [("backbone", self.backbone), ("fused_backbone", self.fused_backbone), ("head", self.head),
                 ("foreground_head", self.foreground_head)]
        return [(role, ref) for role, ref in roles if ref is not None]


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
