"""Can the last tflite-runtime release (2.14, Oct 2023) load a file? Checked in a separate venv.

tflite-runtime 2.14 cannot live beside ai-edge-litert's numpy 2 in one environment, so the check
runs a throwaway interpreter: $EDGE_SER_TFLITE_RUNTIME_PY, else /tmp/tfl/bin/python. Create it with
  python3 -m venv /tmp/tfl && /tmp/tfl/bin/pip install tflite-runtime==2.14.0 'numpy<2'
(a cp311 manylinux x86_64/aarch64 wheel of 2.14.0 exists on PyPI; there is none for Python >= 3.12).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DEFAULT_PY = "/tmp/tfl/bin/python"

_PROBE = """
import sys, numpy as np
from tflite_runtime.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
d = it.get_input_details()[0]
if -1 in list(d.get("shape_signature", [])):
    it.resize_tensor_input(d["index"], [max(1, s) if s != -1 else 32000 for s in d["shape_signature"]])
it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
it.invoke()
print("ok")
"""


def check(path: str | Path) -> dict:
    """{"loads": True/False/None, "result": one line}; None when no tflite-runtime 2.14 is available."""
    py = os.environ.get("EDGE_SER_TFLITE_RUNTIME_PY", DEFAULT_PY)
    if not Path(py).is_file():
        return {
            "loads": None,
            "result": f"not checked: no tflite-runtime 2.14 interpreter at {py} "
            "(see convert/tflite214_check.py to create one)",
        }
    try:
        p = subprocess.run([py, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"loads": None, "result": f"not checked: {exc}"}
    if p.returncode == 0 and p.stdout.strip().endswith("ok"):
        return {"loads": True, "result": "loads and runs (tflite-runtime 2.14.0)"}
    err = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
    why = next((ln for ln in err if "Didn't find op" in ln), err[-1] if err else f"exit {p.returncode}")
    if "No module named" in why:
        return {"loads": None, "result": f"not checked: {why}"}
    return {"loads": False, "result": f"refused: {why[:200]}"}
