"""Which windows are silence: RMS threshold first (free), the room's noise floor (optional, nearly
free), then an optional voice-activity check, and after inference the model's foreground score.

The fixed threshold must be low enough for a speaker across the room (about -60 dBFS) and then lets
a fan's or a street's steady hum through to the model. The noise floor follows the room instead: a
window has to stand `floor_margin_db` above the quietest frames heard over the last `floor_s`.

VAD options: `yamnet` reuses the AudioSet Speech score the YAMNet model computes anyway (so it gates
after inference, saving nothing but false positives); `silero` runs Silero VAD with onnxruntime before
inference, from the ONNX file shipped inside the `silero-vad` wheel (torch is never imported).

Other people talking across the room are speech to every check above (their level, their spectrum);
a model whose entry has a foreground head (trained on room copies with background talkers) scores
whether the window holds a foreground talker, and `background_threshold` gates on that score.
"""

from __future__ import annotations

import importlib.util
import math
from collections import deque
from pathlib import Path

import numpy as np

from .audio import MODEL_RATE
from .classifier import Classifier, Scores
from .errors import ConfigError, UserError
from .settings import GateSettings
from .speech_level import floor_db, frame_count, frame_energy_db


def rms(samples: np.ndarray) -> float:
    """Root mean square of float samples in [-1, 1]."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


class NoiseFloor:
    """The room's noise floor: the quietest window floor (speech_level.floor_db) of the last `seconds`.

    The window being judged counts too, so the first window of a stream already has a floor, and a
    window of steady hum sits at its own floor.
    """

    def __init__(self, seconds: float, hop_s: float) -> None:
        self._floors: deque[float] = deque(maxlen=max(1, math.ceil(seconds / hop_s)))
        self.rms = 0.0
        """The floor after the last update, as an RMS in [0, 1]."""

    def update(self, samples: np.ndarray) -> float:
        """Take in a window; the floor's RMS over the history including it."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size:
            self._floors.append(floor_db(frame_energy_db(x, frame_count(x.size))))
            self.rms = float(10.0 ** (min(self._floors) / 20.0))
        return self.rms


class Gate:
    """Decides for each window whether it is silence (`neutral`, no inference) or speech."""

    def __init__(self, settings: GateSettings, model: Classifier | None = None) -> None:
        self.settings = settings
        self._silero = SileroVad() if settings.vad == "silero" else None
        if settings.vad == "yamnet" and model is not None:
            has_speech = getattr(model, "has_speech_score", None)
            if has_speech is None:  # a model object without the property: ask it once
                probe = model.predict(np.zeros(int(model.window_samples), dtype=np.float32))
                has_speech = getattr(probe, "speech", None) is not None
            if not has_speech:
                raise ConfigError(
                    f"config key gate.vad=yamnet needs a model with a YAMNet speech score; "
                    f"model {model.id} has none (use gate.vad: silero or none)"
                )

    def threshold(self, floor_rms: float = 0.0) -> float:
        """The RMS below which a window is silence: rms_threshold, or floor_margin_db above the floor."""
        s = self.settings
        if s.floor_margin_db <= 0.0:
            return s.rms_threshold
        return max(s.rms_threshold, floor_rms * 10.0 ** (s.floor_margin_db / 20.0))

    def before_inference(self, samples: np.ndarray, level: float, floor_rms: float = 0.0) -> str | None:
        """Reason to gate ("rms", "floor" or "vad") before the model runs, or None to run it.

        floor_rms: the room's noise floor (NoiseFloor.update of this window); 0 = none known.
        """
        if level < self.settings.rms_threshold:
            return "rms"
        if level < self.threshold(floor_rms):
            return "floor"
        if self._silero is not None and self._silero.speech_prob(samples) < self.settings.vad_threshold:
            return "vad"
        return None

    def after_inference(self, prediction: Scores) -> str | None:
        """Reason to gate once the model has run ("vad": YAMNet Speech score below vad_threshold;
        "background": foreground score below background_threshold), or None."""
        if self.settings.vad == "yamnet":
            speech = prediction.speech
            if speech is not None and speech < self.settings.vad_threshold:
                return "vad"
        foreground = prediction.foreground
        if foreground is not None and foreground < self.settings.background_threshold:
            return "background"
        return None


def silero_model_path() -> Path:
    """The Silero VAD ONNX file inside an installed `silero-vad` wheel, found without importing it."""
    hint = "install it (`pip install --no-deps silero-vad`: only its ONNX file is used) or use gate.vad: none"
    try:
        spec = importlib.util.find_spec("silero_vad")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"gate.vad=silero needs the silero-vad package, which is not installed: {hint}")
    for root in spec.submodule_search_locations:
        for name in ("silero_vad.onnx", "silero_vad_16k_op15.onnx"):
            path = Path(root) / "data" / name
            if path.is_file():
                return path
    raise UserError(f"gate.vad=silero: no ONNX file under silero_vad/data/ of the installed package: {hint}")


class SileroVad:
    """Silero VAD v5 through onnxruntime: speech probability per 512-sample chunk at 16 kHz."""

    CHUNK = 512
    CONTEXT = 64

    def __init__(self, path: str | Path | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path else silero_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise UserError(f"cannot load Silero VAD {self.path}: {e}") from None
        names = {i.name for i in self._session.get_inputs()}
        if not {"input", "state", "sr"} <= names:
            raise UserError(f"unsupported Silero VAD in {self.path} (inputs {sorted(names)}; need v5)")

    def speech_prob(self, samples: np.ndarray) -> float:
        """Highest chunk speech probability in a window (state reset per window: windows overlap)."""
        x = np.asarray(samples, dtype=np.float32)
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, self.CONTEXT), dtype=np.float32)
        sr = np.array(MODEL_RATE, dtype=np.int64)
        best = 0.0
        for i in range(0, len(x) - self.CHUNK + 1, self.CHUNK):
            chunk = np.concatenate([context, x[None, i : i + self.CHUNK]], axis=1)
            out, state = self._session.run(None, {"input": chunk, "state": state, "sr": sr})
            context = chunk[:, -self.CONTEXT :]
            best = max(best, float(np.asarray(out).ravel()[0]))
        return best
