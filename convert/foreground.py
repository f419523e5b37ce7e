"""Give a model entry a foreground head: the head of another entry on the same backbone and features.

A head trained on room copies with background talkers (`training --scene room+babble`) learns to
call a window without a foreground talker `neutral`, but it also names emotions differently from the
head chosen across corpora. The daemon can run both on one window's pooled features (a head costs a
fraction of a millisecond next to the encoder): the entry's own head names the emotion, the
foreground head's `neutral` probability feeds the gate (gate.background_threshold). Both heads must
read exactly the same features, so everything that makes those features is checked here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from artefact.manifest import write_entry
from edge_ser.errors import UserError
from edge_ser.labels import NEUTRAL
from edge_ser.manifest import ModelEntry, load_manifest

SAME_FEATURES = ("frontend", "sample_rate", "window_s", "labels", "pooling", "fused_pooling", "window_level")
"""Entry fields both heads' features (and outputs) depend on."""


def feature_mismatch(entry: ModelEntry, source: ModelEntry) -> str | None:
    """Why `source`'s head cannot read `entry`'s pooled features (None: it can)."""
    if entry.backbone is None or source.backbone is None:
        return "both entries need a backbone"
    if NEUTRAL not in entry.labels:
        return f"the entry's labels have no {NEUTRAL} (the foreground score is 1 - its probability)"
    for name in SAME_FEATURES:
        if getattr(entry, name) != getattr(source, name):
            return f"{name} differs ({getattr(entry, name)!r} vs {getattr(source, name)!r})"
    for role, a, b in (("backbone", entry.backbone, source.backbone),
                       ("fused_backbone", entry.fused_backbone, source.fused_backbone)):
        if (a is None) != (b is None) or (a is not None and a.sha256 != b.sha256):
            return f"the {role} files differ"
    if entry.head.input_dim != source.head.input_dim:
        return f"head input_dim differs ({entry.head.input_dim} vs {source.head.input_dim})"
    if entry.adaptation is not None:
        return "the entry adapts its features (model.adapt), which the foreground head was not trained on"
    return None


def attach(manifest: Path, model_id: str, source_id: str) -> ModelEntry:
    """Write `model_id`'s entry with `source_id`'s head as its foreground head; the new entry."""
    m = load_manifest(manifest)
    if model_id == source_id:
        raise UserError("--model and --from name the same entry; a head cannot gate itself")
    entry, source = m.get(model_id), m.get(source_id)
    why = feature_mismatch(entry, source)
    if why:
        raise UserError(f"{source_id}'s head cannot be {model_id}'s foreground head: {why}")
    new = dataclasses.replace(entry, foreground_head=source.head,
                              extra={**entry.extra, "foreground_from": source_id})
    write_entry(manifest, new)
    return new
