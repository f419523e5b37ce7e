"""Conversion toolkit: trained models -> the small TFLite/ONNX files the daemon loads, with parity checks.

Run as `python -m convert <subcommand>` (see convert/README.md). Needs the [convert] extra.
"""
