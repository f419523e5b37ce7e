"""edge-ser: speech emotion recognition daemon for small Linux machines."""

__version__ = "0.1.0"
