"""Builders of hostile audio files, shared by the property tests (tests/test_fuzz_audio.py, parameters
drawn by hypothesis) and the long fuzz run (scripts/fuzz_audio.py, parameters drawn by random.Random).

Every builder is a pure function of its parameters, so a failing case can be rebuilt from them.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

SUFFIXES = {"wav": ".wav", "flac": ".flac", "vorbis": ".ogg", "opus": ".opus", "mp3": ".mp3", "aiff": ".aiff",
            "float": ".wav"}
"""Valid base files that get truncated and corrupted, by kind, with their file endings."""

_SUBTYPES = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "vorbis": ("OGG", "VORBIS"),
             "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III"), "aiff": ("AIFF", "PCM_16"),
             "float": ("WAV", "FLOAT")}


def wav_bytes(*, tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, body: bytes = b"",
              byte_rate: int | None = None, block_align: int | None = None, data_size: int | None = None,
              riff_size: int | None = None) -> bytes:
    """A RIFF/WAVE file with a 16-byte fmt chunk whose every field can lie, over `body`."""
    align = block_align if block_align is not None else max(0, channels * bits // 8)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (byte_rate if byte_rate is not None else rate * align) & 0xFFFFFFFF, align & 0xFFFF,
                      bits & 0xFFFF)
    data = b"data" + struct.pack("<I", (len(body) if data_size is None else data_size) & 0xFFFFFFFF) + body
    size = 4 + len(fmt) + len(data) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size & 0xFFFFFFFF) + b"WAVE" + fmt + data


def base_file(kind: str, seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A valid file of a rising tone (every position sounds different)."""
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * (200 + 200 * t) * t)).astype(np.float32)
    container, subtype = _SUBTYPES[kind]
    out = io.BytesIO()
    sf.write(out, x, rate, format=container, subtype=subtype)
    return out.getvalue()


def mutate(data: bytes, *, cut: float | None = None, patches: list[tuple[float, bytes]] = ()) -> bytes:
    """`data` with byte ranges overwritten (at fractions of its length), then cut at a fraction of it."""
    out = bytearray(data)
    for at, patch in patches:
        i = int(at * len(out))
        out[i : i + len(patch)] = patch
    if cut is not None:
        out = out[: int(cut * len(out))]
    return bytes(out)


def float_wav(values: list[float], rate: int = 16000) -> bytes:
    """A float32 WAV holding exactly `values` (NaN, Inf, huge numbers included)."""
    out = io.BytesIO()
    sf.write(out, np.asarray(values, dtype=np.float32), rate, format="WAV", subtype="FLOAT")
    return out.getvalue()
