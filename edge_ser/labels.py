"""The label set the daemon publishes."""

EMOTIONS: tuple[str, ...] = ("anger_disgust", "fear_surprise", "happiness", "sadness")
"""The four merged emotions of the paper's live system (section 3.5), in output order."""

NEUTRAL = "neutral"
"""Reported for silence (gated windows) and for neutral speech; never one of EMOTIONS."""

FOREGROUND = "foreground"
"""The other class of a binary foreground head (training --classes foreground): someone near the
microphone speaks in the window; its `neutral` is a pause, noise or other people talking."""

FOREGROUND_LABELS: tuple[str, ...] = (FOREGROUND, NEUTRAL)
"""Output order of a binary foreground head."""
