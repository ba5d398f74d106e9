"""`TeacherMaskMixin`: the frozen teacher and the token mask, shared by Stage 1 and Stage 2.

Per batch: teacher(pixel_values) -> last-K targets (K, B, N, D_t) and class-token attention (B, T, HW); a mask
(B, T*HW), True = dropped, from that attention (semantic, official) or random / tube; the targets gathered to the
visible tokens right away, so the full-token targets are freed before the student runs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..alignment import visible_teacher_features
from ..masking import random_mask, semantic_mask, tube_mask

MASK_TYPES = ("attention", "random", "tube")


class TeacherMaskMixin:
    """Holds `teacher` (frozen, kept outside the model: never optimised, saved or ZeRO-partitioned), `mask_type` and
    the mask ratios for videos (T > 1) and images (T = 1). Call `setup_teacher_and_mask` from `__init__` after the
    Trainer's own `__init__` (it needs `self.args.device`)."""

    teacher: nn.Module | None = None
    mask_type: str = "attention"
    video_mask_ratio: float = 0.8
    image_mask_ratio: float = 0.8

    def setup_teacher_and_mask(
        self, teacher: nn.Module | None, mask_type: str, video_mask_ratio: float, image_mask_ratio: float,
        ratio_names: tuple[str, str] = ("video_mask_ratio", "image_mask_ratio"),
    ) -> None:  # fmt: skip
        """Validate the settings (`ratio_names`: the caller's argument names, for errors) and freeze the teacher."""
        if mask_type not in MASK_TYPES:
            raise ValueError(f"`mask_type` must be 'attention', 'random' or 'tube', got {mask_type!r}.")
        for name, ratio in zip(ratio_names, (video_mask_ratio, image_mask_ratio)):
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {ratio}.")
        if teacher is not None:
            teacher = teacher.to(self.args.device).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.teacher = teacher
        self.mask_type, self.video_mask_ratio, self.image_mask_ratio = mask_type, video_mask_ratio, image_mask_ratio

    def make_mask(
        self, cls_attention: torch.Tensor | None, grid: tuple[int, int, int] | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """(B, T*HW) bool mask, True = dropped, from the (B, T, HW) teacher attention (semantic masking) or, for
        random / tube masks, from `grid` = (B, T, HW) alone (the attention is not needed and may be None); the ratio
        depends on T (1 = image)."""
        if cls_attention is None and (grid is None or self.mask_type == "attention"):
            raise ValueError(
                f"`cls_attention` is None; mask_type {self.mask_type!r} needs "
                + ("the teacher's class-token attention." if self.mask_type == "attention" else "it or `grid`.")
            )
        b, t, hw = cls_attention.shape if cls_attention is not None else grid
        device = cls_attention.device if cls_attention is not None else device
        ratio = self.image_mask_ratio if t == 1 else self.video_mask_ratio
        if self.mask_type == "attention":
            return semantic_mask(cls_attention, ratio)
        if self.mask_type == "random":
            return random_mask(b, t * hw, ratio, device=device)
        return tube_mask(b, t, hw, ratio, device=device)

    def teacher_targets(
        self, pixel_values: torch.Tensor, training: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(mask (B, N) or None, visible teacher targets (K, B, N_vis, D_t) or None) for a batch; (None, None)
        without a teacher. Records `visible_ratio` when `training`."""
        if self.teacher is None:
            mask = targets = None
        else:
            semantic = self.mask_type == "attention"  # only semantic masking needs the class-token attention
            with torch.no_grad():
                target = self.teacher(pixel_values, return_cls_attention=semantic)
            grid = (pixel_values.shape[0], pixel_values.shape[1], self.teacher.num_patches)
            mask = self.make_mask(target.cls_attention, grid=grid, device=pixel_values.device)
            targets = visible_teacher_features(target.hidden_states, mask)
            del target  # only the visible tokens' targets stay alive through the student's forward and backward
        if training:
            self.record({"visible_ratio": 1.0 if mask is None else (~mask).float().mean().item()})
        return mask, targets


__all__ = ["MASK_TYPES", "TeacherMaskMixin"]
