"""The label set the daemon publishes."""

EMOTIONS: tuple[str, ...] = ("anger_disgust", "fear_surprise", "happiness", "sadness")
"""The four merged emotions of the paper's live system (section 3.5), in output order."""

NEUTRAL = "neutral"
"""Reported for silence (gated windows) and for neutral speech; never one of EMOTIONS."""
