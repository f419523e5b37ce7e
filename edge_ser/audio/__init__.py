"""Audio in: microphone (sounddevice) and file sources, mixing to mono, resampling to MODEL_RATE.

MODEL_RATE is the one definition of the sample rate of everything after the source (windows, gate,
frontends, models); `to_samples` is the one seconds -> samples conversion at that rate.
"""

MODEL_RATE = 16000
"""Sample rate of everything after the source: windows, gate, models (Hz)."""


def to_samples(seconds: float) -> int:
    """Seconds at MODEL_RATE as a whole number of samples (rounded to the nearest)."""
    return int(round(seconds * MODEL_RATE))
