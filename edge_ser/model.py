"""An emotion model from the manifest: backbone -> frame embeddings -> pool_frames -> head -> probabilities.

Also runs single-file end-to-end models (input: the waveform, or edge_ser.logmel's spectrogram).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .adaptation import FeatureAdapter, default_state_path, load_adapter
from .backends import Backend, open_backend
from .errors import ModelError
from .labels import NEUTRAL
from .logmel import WINDOW as LOGMEL_MIN_SAMPLES
from .logmel import log_mel
from .manifest import ModelEntry, ModelFile, load_manifest, resolve_file, search_path
from .pooling import pool_frames, pool_states, pooled_dim
from .settings import ModelSettings
from .speech_level import prepare, speech_frames
from .whisper_mel import whisper_log_mel

log = logging.getLogger(__name__)

YAMNET_MIN_SAMPLES = 15600
"""YAMNet's shortest input (one 0.96 s patch plus the STFT window); shorter windows are zero-padded."""
SPEECH_CLASS = 0
"""AudioSet class index of `Speech` in YAMNet's class map."""


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one window."""

    probs: dict[str, float]
    """Probability per label of the model (EmotionModel.labels), summing to 1."""

    speech: float | None
    """AudioSet Speech score (max over the window's frames) when the backbone gives one, else None."""

    infer_ms: float
    """Wall time of backbone + head for this window, in milliseconds."""

    foreground: float | None = None
    """Probability that a foreground talker is in the window (1 - the foreground head's `neutral`),
    when the entry has a foreground head, else None."""


class Head:
    """An opened head file: features (or the whole model's input) -> probabilities in `labels` order."""

    def __init__(self, backend: Backend, ref: ModelFile, labels: tuple[str, ...]):
        self.backend = backend
        self.input = _pick(backend.input_names(), ref.input, backend.path, "input")
        self.output = _pick(backend.output_names(), ref.output, backend.path, "output")
        self.labels = labels
        """Output order (a foreground head's may differ from the entry's labels)."""

    def probs(self, x: np.ndarray, model_id: str) -> np.ndarray:
        p = np.asarray(self.backend.run({self.input: x})[self.output], dtype=np.float64).reshape(-1)
        if p.shape[0] != len(self.labels):
            raise ModelError(f"{self.backend.path} gives {p.shape[0]} outputs, the manifest names "
                             f"{len(self.labels)} labels for it in model {model_id}")
        s = p.sum()
        # Heads apply softmax inside the file; renormalise rounding (and int8 output steps) only.
        return p / s if s > 0 else np.full_like(p, 1.0 / len(p))


class EmotionModel:
    """A loaded model; call `predict` with one window of float32 16 kHz mono samples.

    Not thread-safe (runtimes keep per-call state): use it from one inference worker.
    """

    def __init__(self, entry: ModelEntry, head: Backend, backbone: Backend | None = None,
                 adapter: Any = None, fused: Backend | None = None, foreground: Backend | None = None):
        self.entry = entry
        self.id = entry.id
        """Manifest id (goes into each result message as `model`)."""
        self.labels: tuple[str, ...] = entry.labels
        """Head output order; probs keys."""
        self.sample_rate = entry.sample_rate
        self.window_samples = int(round(entry.window_s * entry.sample_rate))
        """Samples per window the model was trained on (2 s = 32000)."""
        self._head = Head(head, entry.head, entry.labels)
        self._backbone, self._adapter = backbone, adapter
        self._bb_in = self._bb_out = self._bb_scores = None
        if backbone is not None:
            bb = entry.backbone
            self._bb_in = _pick(backbone.input_names(), bb.input, backbone.path, "input")
            self._bb_out = _pick(backbone.output_names(), bb.output, backbone.path, "output")
            if bb.scores_output:
                self._bb_scores = _pick(backbone.output_names(), bb.scores_output, backbone.path, "output")
        self._fused = fused
        self._fused_in = self._fused_out = None
        if fused is not None:
            self._fused_in = _pick(fused.input_names(), entry.fused_backbone.input, fused.path, "input")
            self._fused_out = _pick(fused.output_names(), entry.fused_backbone.output, fused.path, "output")
        self._foreground = None if foreground is None else Head(
            foreground, entry.foreground_head, entry.foreground_labels or entry.labels)
        self._min_samples = (YAMNET_MIN_SAMPLES if backbone is not None
                             else LOGMEL_MIN_SAMPLES if entry.frontend == "logmel" else 1)

    @property
    def has_speech_score(self) -> bool:
        """True when predict() fills Prediction.speech (gate.vad = yamnet needs it)."""
        return self._bb_scores is not None

    def predict(self, window: np.ndarray) -> Prediction:
        """Classify one window (shorter ones are zero-padded to window_samples)."""
        x = np.asarray(window, dtype=np.float32).reshape(-1)
        if len(x) < self.window_samples:
            x = np.pad(x, (0, max(self.window_samples, self._min_samples) - len(x)))
        t0 = time.perf_counter()
        speech = foreground = None
        if self._backbone is not None:
            prepared = prepare(x) if self.entry.window_level == "speech" else None
            samples = x if prepared is None else prepared.samples
            out = self._run_backbone(samples)
            if self._bb_scores is not None:
                speech = float(np.max(out[self._bb_scores][..., SPEECH_CLASS]))
            frames = out[self._bb_out]
            features = self._pool(frames if prepared is None else speech_frames(frames, prepared.speech))
            if self._fused is not None:
                features = np.concatenate([features, self._fused_features(samples, prepared)])
            if self._adapter is not None:
                features = np.asarray(self._adapter(features), dtype=np.float32)
            probs = self._head.probs(features[None, :], self.id)
            if self._foreground is not None:
                fg = self._foreground
                foreground = float(1.0 - fg.probs(features[None, :], self.id)[fg.labels.index(NEUTRAL)])
        elif self.entry.frontend == "logmel":
            probs = self._head.probs(_shape_like(log_mel(x), self._head), self.id)
        else:
            probs = self._head.probs(_shape_like(x, self._head), self.id)
        ms = (time.perf_counter() - t0) * 1000.0
        return Prediction(probs=dict(zip(self.labels, (float(p) for p in probs), strict=True)),
                          speech=speech, foreground=foreground, infer_ms=ms)

    def close(self) -> None:
        """Save state that outlives the process (the adaptation statistics); call once at shutdown."""
        save = getattr(self._adapter, "save", None)
        if save is not None:
            save()

    def _run_backbone(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.entry.frontend == "whisper_logmel":
            return self._backbone.run({self._bb_in: whisper_log_mel(x)[None]})
        return self._backbone.run({self._bb_in: x})

    def _fused_features(self, samples: np.ndarray, prepared: Any) -> np.ndarray:
        frames = self._fused.run({self._fused_in: samples})[self._fused_out]
        return pool_fused(frames, None if prepared is None else prepared.speech, self.entry.fused_pooling)

    def _pool(self, frames: np.ndarray) -> np.ndarray:
        """[n_frames, dim] embeddings -> pool_frames; [n_states, n_frames, dim] -> pool_states."""
        if frames.ndim == 3:
            return pool_states(frames, self.entry.pooling)
        return pool_frames(frames.reshape(-1, frames.shape[-1]), self.entry.pooling)


def pool_fused(frames: np.ndarray, speech: np.ndarray | None, pooling: str) -> np.ndarray:
    """A fused backbone's frames of a window pooled (over the window's speech frames when `speech`,
    the prepared window's mask, is given): what training's --fuse cache holds for that window."""
    frames = np.asarray(frames).reshape(-1, np.shape(frames)[-1])
    if speech is not None:
        frames = speech_frames(frames, speech)
    return pool_frames(frames, pooling).astype(np.float32)


def _pick(names: list[str], wanted: str | None, path: str, kind: str) -> str:
    """Tensor by name (never by index); null = the file's first one."""
    if wanted is None:
        if not names:
            raise ModelError(f"{path} has no {kind}s")
        return names[0]
    if wanted not in names:
        raise ModelError(f"{path} has no {kind} named {wanted!r} (it has: {', '.join(names)}); "
                         "fix the manifest entry")
    return wanted


def _shape_like(x: np.ndarray, head: Head) -> np.ndarray:
    """Add batch/channel axes so `x` ([n] samples or [frames, 64]) matches the head's input rank."""
    shape_of = getattr(head.backend, "input_shape", None)
    if shape_of is None:
        return x[None]
    shape = shape_of(head.input)
    while x.ndim < len(shape):
        # Channels-last image input ([1, T, 64, 1]) vs a leading batch axis.
        x = x[..., None] if x.ndim >= 2 and len(shape) == 4 and shape[-1] == 1 else x[None]
    return x


def load_model(settings: ModelSettings) -> EmotionModel:
    """Load the manifest entry `settings.id` (or the default): find, verify and open its files."""
    limit_blas_threads()
    manifest = load_manifest(settings.manifest)
    entry = manifest.get(settings.id)
    dirs = search_path(settings.search_path, manifest)
    download = settings.download
    threads = usable_threads(settings.threads)
    backbone = None
    if entry.backbone is not None:
        backbone = open_backend(resolve_file(entry.backbone, dirs, download), threads=threads)
    fused = None
    if entry.fused_backbone is not None:
        fused = open_backend(resolve_file(entry.fused_backbone, dirs, download), threads=threads)
    head = open_backend(resolve_file(entry.head, dirs, download), threads=threads)
    foreground = None
    if entry.foreground_head is not None:
        foreground = open_backend(resolve_file(entry.foreground_head, dirs, download), threads=threads)
    adapter = _load_adapter(settings, entry, dirs)
    model = EmotionModel(entry, head, backbone, adapter=adapter, fused=fused, foreground=foreground)
    if backbone is not None:
        _check_dims(model)
    return model


def limit_blas_threads() -> None:
    """Run numpy's BLAS on the calling thread only, for the whole process.

    The frontends' small matmuls (a 2 s window's mel projection) gain nothing from a second BLAS
    thread, but OpenBLAS keeps that thread spinning after each call: measured on the Whisper
    log-mel, 9.5 ms of process CPU per window with the default threads against 1.5 ms with one.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def usable_threads(requested: int) -> int:
    """model.threads, but at most one per CPU this process may run on: each runtime starts that many
    threads per model file, and more than the cores only wait for each other."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    if requested > cores:
        log.warning("model.threads is %d but this process can use %d CPU(s); using %d", requested, cores,
                    cores)
    return max(1, min(requested, cores))


def _check_dims(model: EmotionModel) -> None:
    """Run a silent window once: catches a head/backbone mismatch at start, not on the first speech."""
    entry = model.entry
    out = model._run_backbone(np.zeros(model.window_samples, np.float32))
    frames = out[model._bb_out]
    dim = frames.shape[-1]
    want = pooled_dim(dim, entry.pooling) * (frames.shape[0] if frames.ndim == 3 else 1)
    if model._fused is not None:
        want += len(model._fused_features(np.zeros(model.window_samples, np.float32), None))
    if entry.head.input_dim is not None and entry.head.input_dim != want:
        raise ModelError(f"model {entry.id}: head {entry.head.file} takes {entry.head.input_dim} features "
                         f"but the backbone gives {dim} per frame ({entry.pooling} pooling"
                         f"{' + the fused backbone' if model._fused is not None else ''} -> {want})")
    for head in (model._head, model._foreground):
        shape_of = getattr(head.backend, "input_shape", None) if head is not None else None
        got = shape_of(head.input)[-1] if shape_of is not None else 0
        if got > 0 and got != want:
            raise ModelError(f"model {entry.id}: head file {head.backend.path} takes {got} features, "
                             f"the backbone + {entry.pooling} pooling gives {want}")


def _load_adapter(settings: ModelSettings, entry: ModelEntry, dirs: list) -> FeatureAdapter | None:
    """Room/mic feature adaptation (applied to pooled features before the head), when model.adapt is
    set: its reference statistics file is found on the search path and checked by sha256 here."""
    if not settings.adapt:
        return None
    if entry.backbone is None:
        raise ModelError(f"model.adapt needs a backbone model; {entry.id} is a single-file model")
    if entry.adaptation is None:
        raise ModelError(f"model {entry.id} has no adaptation reference statistics "
                         "(manifest key adaptation.reference); set model.adapt: false")
    state = Path(settings.adapt_state) if settings.adapt_state else default_state_path(entry.id)
    return load_adapter(resolve_file(entry.adaptation, dirs), state, entry.id)
