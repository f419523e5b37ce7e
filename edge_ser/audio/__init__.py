"""Audio in: microphone (sounddevice) and file sources, mixing to mono, resampling to 16 kHz."""
