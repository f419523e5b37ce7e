"""`python -m convert vggish`: VGGish (+ head) -> one TFLite file, waveform [1, 32000] -> probs.

The graph: log-mel frontend (VGGish parameters, log offset 0.01) -> two 0.96 s examples of 96x64
-> VGGish (torchvggish layout: 6 conv + 4 max-pool, 3 dense, 128-d ReLU embedding; the PCA/8-bit
postprocessing is not applied) -> mean over examples -> head -> softmax. Real weights: a
torchvggish state_dict (.pth, e.g. vggish-10086976.pth; ends with a ReLU as torchvggish does) or
the TF-slim original (vggish_model.ckpt; no final ReLU, as published), given by path; tests use
narrow random VGGish models of the same layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artefact import eval_data, parity
from artefact.manifest import DEFAULT_MANIFEST, NO_FILE
from edge_ser.errors import UserError
from edge_ser.labels import EMOTIONS, NEUTRAL
from edge_ser.manifest import ModelEntry

from . import frontend_tf, head_model
from .waveform_export import Result, convert_whole

SAMPLES = 32000
PATCH = 96
EXAMPLES = frontend_tf.n_frames(SAMPLES) // PATCH  # 2 s -> 198 frames -> 2 examples
FULL = {"widths": (64, 128, 256, 256, 512, 512), "fc": (4096, 4096)}
TINY = {"widths": (4, 8, 8, 8, 16, 16), "fc": (32, 32)}
EMBEDDING_DIM = 128


class VGGish(nn.Module):
    """torchvggish's VGG: [N, 1, 96, 64] log-mel examples -> [N, 128] embeddings (same key names)."""

    def __init__(
        self,
        widths: tuple[int, ...] = FULL["widths"],
        fc: tuple[int, ...] = FULL["fc"],
        final_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
            c = w
            if i in (0, 1, 3, 5):
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(c * 6 * 4, fc[0]),
            nn.ReLU(),
            nn.Linear(fc[0], fc[1]),
            nn.ReLU(),
            nn.Linear(fc[1], EMBEDDING_DIM),
            # torchvggish ends with a ReLU; the TF-slim original's fc2 has no activation
            nn.ReLU() if final_relu else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # torchvggish flattens in TF's NHWC order, which its dense weights expect
        x = x.permute(0, 2, 3, 1).contiguous()
        return self.embeddings(x.flatten(1))


class VGGishClassifier(nn.Module):
    """Log-mel examples [N, 1, 96, 64] -> VGGish -> mean over examples -> head -> probs [1, n]."""

    def __init__(self, vggish: VGGish, head: nn.Module) -> None:
        super().__init__()
        self.vggish, self.head = vggish, head

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        return self.head(self.vggish(examples).mean(dim=0, keepdim=True))


_CONV_KEYS = (0, 3, 6, 8, 11, 13)
_FC_KEYS = (0, 2, 4)
_SLIM_CONV = ("conv1", "conv2", "conv3/conv3_1", "conv3/conv3_2", "conv4/conv4_1", "conv4/conv4_2")
_SLIM_FC = ("fc1/fc1_1", "fc1/fc1_2", "fc2")


def _from_state(state: dict[str, torch.Tensor], final_relu: bool, where: Path) -> VGGish:
    """A VGGish sized from the state_dict's shapes (so narrow test models load too)."""
    try:
        widths = tuple(int(state[f"features.{k}.weight"].shape[0]) for k in _CONV_KEYS)
        fc = tuple(int(state[f"embeddings.{k}.weight"].shape[0]) for k in _FC_KEYS[:2])
        model = VGGish(widths, fc, final_relu)
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise UserError(f"{where} is not a VGGish state_dict: {str(exc).splitlines()[0]}") from None
    return model.eval()


def slim_to_state(reader_get: Callable[[str], np.ndarray]) -> dict[str, torch.Tensor]:
    """TF-slim VGGish variables (vggish/conv1/weights, ...) -> torchvggish state_dict names/layouts."""
    state = {}
    for key, name in zip(_CONV_KEYS, _SLIM_CONV, strict=True):
        state[f"features.{key}.weight"] = torch.from_numpy(
            np.transpose(reader_get(f"vggish/{name}/weights"), (3, 2, 0, 1)).copy()
        )
        state[f"features.{key}.bias"] = torch.from_numpy(reader_get(f"vggish/{name}/biases").copy())
    for key, name in zip(_FC_KEYS, _SLIM_FC, strict=True):
        state[f"embeddings.{key}.weight"] = torch.from_numpy(reader_get(f"vggish/{name}/weights").T.copy())
        state[f"embeddings.{key}.bias"] = torch.from_numpy(reader_get(f"vggish/{name}/biases").copy())
    return state


def load_vggish(checkpoint: Path | None, random_tiny: bool, seed: int = 0) -> tuple[VGGish, str]:
    """(VGGish, source) from a torchvggish .pth, the TF-slim vggish_model.ckpt, or a random init."""
    torch.manual_seed(seed)
    if random_tiny:
        return VGGish(**TINY).eval(), "random-init narrow VGGish (tests)"
    if checkpoint is None:
        raise UserError("give --checkpoint PATH (torchvggish .pth or TF vggish_model.ckpt) or --random-tiny")
    checkpoint = Path(checkpoint)
    is_ckpt = Path(f"{checkpoint}.index").is_file()
    if not checkpoint.is_file() and not is_ckpt:
        raise UserError(f"checkpoint not found: {checkpoint}")
    if is_ckpt:  # TensorFlow checkpoint prefix (vggish_model.ckpt + .index + .data-*)
        import tensorflow as tf

        try:
            reader = tf.train.load_checkpoint(str(checkpoint))
            state = slim_to_state(lambda n: np.asarray(reader.get_tensor(n), np.float32))
        except Exception as exc:  # noqa: BLE001 - TF raises many types for a bad checkpoint
            raise UserError(
                f"{checkpoint} is not a VGGish TF checkpoint: {str(exc).splitlines()[0]}"
            ) from None
        return _from_state(state, False, checkpoint), str(checkpoint)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise UserError(f"cannot read {checkpoint}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise UserError(f"{checkpoint} is not a VGGish state_dict")
    state = {k: v for k, v in state.items() if not k.startswith("pproc")}
    return _from_state(state, True, checkpoint), str(checkpoint)


def build(
    checkpoint: Path | None, head_folder: Path | None, random_tiny: bool
) -> tuple[VGGishClassifier, list[str], str]:
    """The float classifier, its labels and where the weights came from."""
    vgg, source = load_vggish(checkpoint, random_tiny)
    if head_folder is not None:
        spec, head = head_model.load_float_model(head_folder)
        head_model.check_input_dim(spec, "vggish")
        labels = list(spec["labels"])
    elif random_tiny:
        labels = [*EMOTIONS, NEUTRAL]
        head = nn.Sequential(nn.Linear(EMBEDDING_DIM, len(labels)), nn.Softmax(dim=-1))
    else:
        raise UserError(
            "pass --head FOLDER: a trained head on VGGish embeddings (backbone vggish, input_dim 128)"
        )
    return VGGishClassifier(vgg, head.eval()).eval(), labels, source


def examples_np(waveform: np.ndarray) -> np.ndarray:
    """Float reference of the frontend: [SAMPLES] -> [EXAMPLES, 1, 96, 64]."""
    lm = frontend_tf.log_mel_np(waveform, frontend_tf.VGGISH_LOG_OFFSET)
    return lm[: EXAMPLES * PATCH].reshape(EXAMPLES, 1, PATCH, -1)


def tf_function(model: VGGishClassifier):
    """Concrete tf.function: waveform [1, SAMPLES] -> {"output_0": probs [1, n]}."""
    import tensorflow as tf

    from .torch2tf import translate

    net = translate(model)

    @tf.function(input_signature=[tf.TensorSpec([1, SAMPLES], tf.float32, name="waveform")], autograph=False)
    def fn(waveform):
        lm = frontend_tf.log_mel_tf(waveform, frontend_tf.VGGISH_LOG_OFFSET)
        ex = frontend_tf.patches_tf(lm, PATCH, PATCH, EXAMPLES)[..., None]  # NHWC [N, 96, 64, 1]
        return {"output_0": net(ex, nhwc=True)}

    return fn.get_concrete_function()


def synthetic_eval(reference, labels: list[str], n: int = 16) -> eval_data.EvalData:
    """Noisy tones labelled by the float model (random weights have no real test set)."""
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLES) / 16000.0
    xs = np.stack(
        [
            0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
            + rng.normal(0, 0.02, SAMPLES)
            for _ in range(n)
        ]
    ).astype(np.float32)
    y = np.concatenate([reference(x[None]) for x in xs]).argmax(1)
    return eval_data.EvalData(xs, xs, y, tuple(labels), "synthetic tones labelled by the float model")


def convert_vggish(
    checkpoint: Path | None,
    head_folder: Path | None,
    out_dir: Path,
    name: str,
    eval_path: Path | None,
    variants: tuple[str, ...],
    manifest: Path = DEFAULT_MANIFEST,
    keep_anyway: bool = False,
    random_tiny: bool = False,
    command: str = "",
    reports_dir: Path = parity.REPORTS_DIR,
    register_manifest: bool = True,
    latency_runs: int = 30,
) -> list[Result]:
    """Build, check the TF translation, convert each variant, report."""
    torch.set_num_threads(1)
    model, labels, source = build(checkpoint, head_folder, random_tiny)

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(examples_np(x[0]))).numpy()

    if eval_path is not None:
        data = eval_data.load_eval(eval_path, labels, SAMPLES)
    elif random_tiny:
        data = synthetic_eval(reference, labels)
    else:
        raise UserError("--eval NPZ is required for real weights (2 s test waveforms and labels)")
    fn = tf_function(model)
    got = fn(np.asarray(data.test_x[:1], np.float32))["output_0"].numpy()
    err = float(np.abs(got - reference(data.test_x[:1])).max())
    if err > 1e-3:
        raise UserError(
            f"TensorFlow translation of VGGish differs from torch by {err:.3g}; refusing to convert"
        )
    entry = ModelEntry(
        id=name,
        description=f"VGGish + head ({source})",
        frontend="waveform",
        window_s=SAMPLES / 16000,
        labels=tuple(labels),
        head=NO_FILE,
        license="VGGish Apache-2.0; head inherits the training corpora's terms",
        extra={"conversion": {"command": command, "source": source}},
    )
    return convert_whole(
        fn,
        "waveform",
        reference,
        data,
        name,
        out_dir,
        variants,
        entry,
        "vggish",
        source,
        manifest,
        keep_anyway,
        command,
        reports_dir,
        register_manifest,
        latency_runs,
    )
