"""The one interface every inference runtime implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """A loaded model file: named float inputs in, named outputs out.

    Implementations: backends/tflite.py (ai_edge_litert, tflite_runtime fallback) and
    backends/onnx.py (onnxruntime). Both accept inputs of a variable length where the model allows
    it (the TFLite backend resizes its input tensor and re-allocates only when the shape changes).
    """

    path: str
    """The file this backend was loaded from."""

    def input_names(self) -> list[str]:
        """Names of the model inputs, in order."""
        ...

    def output_names(self) -> list[str]:
        """Names of the model outputs, in order."""
        ...

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name."""
        ...
