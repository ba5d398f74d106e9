"""The table of official checkpoint families, and how a checkpoint or a model finds its entry."""

from __future__ import annotations

from collections.abc import Iterable

from .base import ConversionError, Family, preview
from .detection_families import DETECTION
from .qa_families import VIDEO_QA
from .stage2_families import STAGE2_PRETRAINING, STAGE2_RETRIEVAL
from .vit_families import CLASSIFIER, STAGE1

__all__ = ["FAMILIES", "detect_family", "family_of_model"]

# Order does not matter: exactly one entry may match a checkpoint's keys.
FAMILIES: tuple[Family, ...] = (STAGE1, CLASSIFIER, STAGE2_PRETRAINING, STAGE2_RETRIEVAL, VIDEO_QA, DETECTION)

# Official checkpoints that are recognised but have no entry yet: (key prefix, what they are).
_NOT_YET: tuple[tuple[str, str], ...] = ()


def detect_family(keys: Iterable[str]) -> Family:
    """The one family whose `matches` accepts these official keys; ConversionError naming the keys otherwise."""
    keys = set(keys)
    for prefix, what in _NOT_YET:
        if any(k.startswith(prefix) for k in keys):
            raise ConversionError(f"This is {what}.")
    found = [family for family in FAMILIES if family.matches(keys)]
    if len(found) != 1:
        names = ", ".join(f.name for f in found) or "none"
        raise ConversionError(
            f"Unrecognised checkpoint (families matched: {names}): expected official UMT Stage-1 keys (encoder.*, "
            "clip_decoder.*), fine-tuned classifier keys (patch_embed.*, blocks.*, fc_norm.*, head.*), AVA detection keys "
            "(patch_embed.*, blocks.*, norm.*, head.*) or Stage-2 keys "
            f"(vision_encoder.*, text_encoder.*); found: {preview(keys)}."
        )
    return found[0]


def family_of_model(model) -> Family:
    """The family whose official layout `model` is written in by `to_official_state_dict`."""
    found = [family for family in FAMILIES if family.exports(model)]
    if len(found) != 1:
        raise ConversionError(
            f"`model` must be one of {sorted({f.architecture for f in FAMILIES})}, got {type(model).__name__}."
        )
    return found[0]
