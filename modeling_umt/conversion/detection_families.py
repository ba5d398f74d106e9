"""The AVA action-detection family (qa_and_detection.md §B, "Checkpoints"): the official
`single_modality/action_detection` model saved as `{'model', 'optimizer', 'epoch', 'scaler', 'args'}` with keys
`patch_embed.*`, `blocks.*`, `norm.*` (the final LayerNorm the ROI head reads) and `head.*`; no `fc_norm` and no
`pos_embed` (the sin-cos table is not saved). Ours: `UMTForVideoActionDetection`."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..configuration_umt import UMTDetectionConfig
from ..modeling_umt_detection import UMTForVideoActionDetection
from .base import ConversionError, Family, Settings, majority_dim
from .keymap import norm_key_map, vit_key_map
from .vit_families import _drop_path, backbone_pattern, infer_vit, name_labels

__all__ = ["DETECTION", "is_detection_checkpoint"]


def is_detection_checkpoint(keys: set[str]) -> bool:
    """Official detection keys: a ViT with a final `norm`, a `head`, and no `fc_norm` (a classifier has `fc_norm` and
    an identity final norm, so no `norm.*` keys)."""
    return "patch_embed.proj.weight" in keys and "head.weight" in keys and "norm.weight" in keys and (
        "fc_norm.weight" not in keys)


def _infer_detection(sd: Mapping[str, torch.Tensor], settings: Settings) -> dict:
    layout = "the official AVA model is built for 8 frames x 224 px (its position table's reference layout)"
    kwargs = infer_vit(sd, "", settings, frames=8, image_size=224, layout_why=layout, saved_vision=settings.saved)
    num_labels = majority_dim(sd, [("head.weight", 0), ("head.bias", 0)], "number of actions")
    patch = kwargs["patch_size"]
    if kwargs["image_size"] % patch:
        raise ConversionError(f"`--image_size {kwargs['image_size']}` is not a multiple of the patch size {patch}.")
    kwargs.update(
        num_labels=num_labels, use_final_norm=True, position_embedding_type="interpolated",
        # the official table is built for the model's own frames x (image / patch)^2 and resized per input
        pos_embed_reference_frames=kwargs["num_frames"], pos_embed_reference_grid=kwargs["image_size"] // patch,
        initializer_type="trunc_normal",
        drop_path_rate=_drop_path(settings, kwargs["hidden_size"], kwargs["num_hidden_layers"]),
    )
    settings.log(f"  position table reference = {kwargs['num_frames']} frames x {kwargs['image_size'] // patch}^2 "
                 "(resized bicubically, frame by frame, to every input as official)")
    return name_labels(kwargs, settings, num_labels, "AVA column i is action id i + 1")


def _detection_map(config: UMTDetectionConfig):
    return (vit_key_map(config.num_hidden_layers, config.qkv_bias, "", "umt.", final_norm=True)
            + norm_key_map("head", "classifier"))


DETECTION = Family(
    name="ava-detection", description="official AVA action-detection model", architecture="UMTForVideoActionDetection",
    config_class=UMTDetectionConfig, model_class=UMTForVideoActionDetection,
    matches=is_detection_checkpoint,
    key_pattern=re.compile("|".join([backbone_pattern(""), r"head\.(weight|bias)"])),
    infer_config=_infer_detection, key_map=_detection_map,
    flags=("model_size", "num_frames", "image_size", "num_attention_heads", "label_file"),
)
