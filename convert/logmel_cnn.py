"""`python -m convert logmel-cnn`: a compact CNN on log-mel spectrograms -> TFLite float32/float16/INT8.

The daemon computes the log-mel itself (edge_ser.logmel, frontend `logmel` in the manifest) and
feeds the file `logmel` [1, 1, frames, 64] (or whatever input_shape the model folder names); the
file returns `probs`. The model folder follows the head interchange: head.pt + head.json with
"arch" known to the builder (default artefact.heads.build_head), "labels", "input_shape"
(default [1, 1, 198, 64]: a 2 s window), optional scalar/per-band "feature_mean"/"feature_std".
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artefact import eval_data, parity
from artefact.manifest import DEFAULT_MANIFEST, NO_FILE, training_provenance
from edge_ser.errors import UserError
from edge_ser.logmel import BANDS, n_frames
from edge_ser.manifest import ModelEntry

from .waveform_export import Result, convert_whole

DEFAULT_SHAPE = (1, 1, n_frames(32000), BANDS)


class LogMelClassifier(nn.Module):
    """Standardise (if the spec says so), run the CNN, softmax."""

    def __init__(self, net: nn.Module, mean: torch.Tensor | None, std: torch.Tensor | None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean if mean is not None else torch.zeros(1))
        self.register_buffer("inv_std", 1.0 / std if std is not None else torch.ones(1))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net((logmel - self.mean) * self.inv_std), dim=-1)


def _builder(spec: str | None) -> Callable[[dict], nn.Module]:
    if spec is None:
        from artefact.heads import build_head

        return build_head
    mod, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import builder {spec!r} (expected module:function): {exc}") from None


def load(
    folder: Path, builder: str | Callable[[dict], nn.Module] | None = None
) -> tuple[dict, LogMelClassifier]:
    """(spec, float model) of a log-mel model folder."""
    folder = Path(folder)
    if not (folder / "head.json").is_file() or not (folder / "head.pt").is_file():
        raise UserError(f"{folder} is not a model folder (needs head.json and head.pt)")
    spec = json.loads((folder / "head.json").read_text())
    if "labels" not in spec or "arch" not in spec:
        raise UserError(f"{folder / 'head.json'} lacks 'arch' or 'labels'")
    build = builder if callable(builder) else _builder(builder)
    try:
        net = build(spec)
        net.load_state_dict(torch.load(folder / "head.pt", map_location="cpu", weights_only=True))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - builders raise their own types; one line for the user
        raise UserError(
            f"cannot build/load {folder} (arch {spec['arch']!r}): {str(exc).splitlines()[0]}"
        ) from None
    shape = tuple(spec.get("input_shape", DEFAULT_SHAPE))
    band = shape[-1]

    def stat(key: str) -> torch.Tensor | None:
        v = spec.get(key)
        if v is None:
            return None
        t = torch.tensor(v, dtype=torch.float32).reshape(-1)
        if t.numel() not in (1, band):
            raise UserError(f"{key} must be one value or one per mel band ({band})")
        return t

    return spec, LogMelClassifier(net.eval(), stat("feature_mean"), stat("feature_std")).eval()


def convert_logmel_cnn(
    folder: Path,
    features: Path | None,
    out_dir: Path,
    name: str | None,
    variants: tuple[str, ...],
    manifest: Path = DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    builder: str | Callable | None = None,
    default: str | None = None,
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    register_manifest: bool = True,
    latency_runs: int = 50,
) -> list[Result]:
    """Convert a log-mel CNN folder; eval rows are log-mel inputs of the model's input_shape."""
    torch.set_num_threads(1)
    folder = Path(folder)
    spec, model = load(folder, builder)
    shape = tuple(int(s) for s in spec.get("input_shape", DEFAULT_SHAPE))
    labels = list(spec["labels"])
    data = eval_data.load_eval(Path(features) if features else folder / eval_data.EVAL_NAME, labels)
    if tuple(data.test_x.shape[1:]) != shape[1:]:
        raise UserError(
            f"eval rows have shape {list(data.test_x.shape[1:])}, the model takes {list(shape[1:])}"
        )
    probe = data.test_x[:1]
    import tensorflow as tf

    from .torch2tf import check_close, tf_function

    fn = tf_function(model, [tf.TensorSpec(list(shape), tf.float32, name="logmel")])
    check_close(model, fn, [probe], atol=1e-4)

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.asarray(x, np.float32))).numpy()

    entry = ModelEntry(
        id=name or folder.name,
        description=f"compact log-mel {spec['arch']} ({spec.get('data', 'trained model')})",
        frontend="logmel",
        window_s=float(spec.get("window_s", 2.0)),
        labels=tuple(labels),
        head=NO_FILE,
        license=spec.get("license", "inherits the training corpora's terms"),
        extra={
            "training": training_provenance(spec),
            "conversion": {"command": command},
        },
    )
    return convert_whole(
        fn,
        "logmel",
        reference,
        data,
        name or folder.name,
        out_dir,
        variants,
        entry,
        "logmel-cnn",
        str(folder),
        manifest,
        keep_anyway,
        command,
        reports_dir,
        register_manifest,
        latency_runs,
        default,
    )
