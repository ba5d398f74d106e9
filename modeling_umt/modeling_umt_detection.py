# Copyright 2026 The UMT-for-Transformers authors. Licensed under the Apache License, Version 2.0.
"""UMT for spatio-temporal action detection (AVA): `UMTForVideoActionDetection`, the official ROI head.

The official `single_modality/action_detection` model (qa_and_detection.md §B): the encoder's final-LayerNorm tokens
become a (B, C, T', h, w) map, averaged over time to (B, C, h, w); each person box is pooled with
`torchvision.ops.roi_align` (7 x 7 bins, spatial scale 1 / patch, sampling ratio 0, `aligned=False`), then max-pooled
over its 7 x 7 bins to (C,), and a `Linear(C, num_labels)` (truncated normal x `head_init_scale`, no fc_norm, no
dropout) scores every action of every box independently (multi-label, sigmoid).

Frames need not be square: the sin-cos table is resized bicubically, frame by frame, to each input's token grid
(`config.position_embedding_type="interpolated"` with the reference layout the table was trained for), as the
official `interpolate_pos_embed_online`. Box jitter (training) and box enlargement (test) belong to the data code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_umt import UMTConfig, UMTDetectionConfig
from .losses import action_detection_loss
from .modeling_umt import UMTClassificationHead, UMTPreTrainedModel, UMTVideoModel

ROI_OUTPUT_SIZE = 7  # official ROIPoolingCfg.POOLER_RESOLUTION


@dataclass
class UMTActionDetectionOutput(ModelOutput):
    """Output of `UMTForVideoActionDetection`.

    loss: scalar, `action_detection_loss` (when labels were given).
    logits: (sum_i K_i, num_labels) action logits of every box, clip 0's boxes first.
    box_features: (sum_i K_i, D) the max-pooled ROI feature of every box (the head's input).
    hidden_states / attentions: as `UMTVideoModel`, on request.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    box_features: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def _check_boxes(boxes, batch_size: int) -> list[torch.Tensor]:
    if isinstance(boxes, torch.Tensor) or not isinstance(boxes, (list, tuple)) or len(boxes) != batch_size:
        got = type(boxes).__name__ if not isinstance(boxes, (list, tuple)) else f"{len(boxes)} entries"
        raise ValueError(f"`boxes` must be a list of {batch_size} (K_i, 4) xyxy tensors, one per clip; got {got}.")
    for i, b in enumerate(boxes):
        if not isinstance(b, torch.Tensor) or b.ndim != 2 or b.shape[-1] != 4:
            raise ValueError(f"`boxes[{i}]` must be a (K, 4) xyxy tensor, got {getattr(b, 'shape', type(b))}.")
    return list(boxes)


class UMTForVideoActionDetection(UMTPreTrainedModel):
    """UMT with the official AVA head (see the module docstring).

    Inputs: `pixel_values` (B, T, C, H, W) with H and W multiples of the patch size (any aspect ratio); `boxes`, a
    list of B float tensors (K_i, 4), xyxy in pixels of `pixel_values`; optional `labels` (sum_i K_i, num_labels)
    multi-hot (or a list of B (K_i, num_labels) tensors, as the collator keeps them).
    Output: `UMTActionDetectionOutput` (loss, logits (sum_i K_i, num_labels), box features, hidden states).
    """

    config_class = UMTDetectionConfig
    # the encoder of a classifier or Stage-1 checkpoint loads; their heads are not ours
    _keys_to_ignore_on_load_unexpected = [r"^umt\.pooler\.", r"^uta_heads\.", r"^umt\.uta_heads\."]

    def __init__(self, config: UMTConfig):
        if not isinstance(config, UMTDetectionConfig) or not config.use_final_norm:
            # the head reads final-norm tokens; a plain UMTConfig becomes the detector's own type (never edited in
            # place: other models may share it)
            fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "transformers_version")}
            config = UMTDetectionConfig(**{**fields, "use_final_norm": True})
        super().__init__(config)
        self.num_labels = config.num_labels
        self.umt = UMTVideoModel(config, add_pooling_layer=False)
        self.classifier = UMTClassificationHead(config.hidden_size, config.num_labels)
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` with the detector's own `auto_map` (config and `AutoModel`), so a saved
        folder loads through `AutoModel` here and with `trust_remote_code=True` elsewhere."""
        self.config.auto_map = {
            "AutoConfig": "configuration_umt.UMTDetectionConfig",
            "AutoModel": "modeling_umt_detection.UMTForVideoActionDetection",
        }
        return super(UMTPreTrainedModel, self).save_pretrained(save_directory, *args, **kwargs)

    def box_features(self, tokens: torch.Tensor, grid: tuple[int, int, int], boxes: list[torch.Tensor]) -> torch.Tensor:
        """Final-norm tokens (B, T'*h*w, D) on a (T', h, w) grid and B box tensors -> (sum K_i, D) ROI features."""
        t, h, w = grid
        fmap = tokens.view(tokens.shape[0], t, h, w, -1).permute(0, 4, 1, 2, 3).mean(2)  # (B, D, h, w)
        rois = torchvision.ops.roi_align(
            fmap,
            [b.to(device=fmap.device, dtype=fmap.dtype) for b in boxes],
            output_size=(ROI_OUTPUT_SIZE, ROI_OUTPUT_SIZE),
            spatial_scale=1.0 / self.config.patch_hw[0],
            sampling_ratio=0,
            aligned=False,
        )  # (sum K_i, D, 7, 7)
        return rois.amax(dim=(-2, -1))

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        boxes: list[torch.Tensor],
        labels: torch.Tensor | list[torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> UMTActionDetectionOutput:
        boxes = _check_boxes(boxes, pixel_values.shape[0])
        (ph, pw), tub = self.config.patch_hw, self.config.tubelet_size
        if self.config.patch_hw[0] != self.config.patch_hw[1]:
            raise ValueError(f"`patch_size` must be square for the ROI scale, got {self.config.patch_hw}.")
        outputs = self.umt(pixel_values, interpolate_pos_encoding=True, **kwargs)
        grid = (pixel_values.shape[1] // tub, pixel_values.shape[3] // ph, pixel_values.shape[4] // pw)
        features = self.box_features(outputs.last_hidden_state, grid, boxes)
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            if isinstance(labels, (list, tuple)):
                labels = torch.cat([torch.as_tensor(x).reshape(-1, self.num_labels) for x in labels]).to(logits.device)
            loss = action_detection_loss(logits, labels)
        return UMTActionDetectionOutput(
            loss=loss, logits=logits, box_features=features, hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = ["UMTForVideoActionDetection", "UMTActionDetectionOutput", "ROI_OUTPUT_SIZE"]
