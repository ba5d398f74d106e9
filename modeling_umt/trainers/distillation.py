"""Stage 1: `UMTDistillationTrainer`, unmasked token alignment of a video student with a frozen image teacher."""

from __future__ import annotations

from torch import nn

from .base import UMTTrainer
from .teacher_masking import TeacherMaskMixin


class UMTDistillationTrainer(TeacherMaskMixin, UMTTrainer):
    """Stage 1: align the unmasked tokens of a `UMTForPreTraining` student with a frozen image teacher.

    Each step: teacher(video) -> last-K features (K, B, N, D_t) and class-token attention (B, T, HW);
    mask from the attention (`mask_type="attention"`, official), or random / tube; student(video, mask) -> UTA loss.

    Args:
        teacher: a frozen `UMTTeacher` (kept outside `model`, so it is never optimised, saved or ZeRO-partitioned).
        mask_type: "attention" (semantic), "random" or "tube".
        mask_ratio: fraction of tokens dropped (0.8 in every official run), for videos and images alike.
        Other arguments are `transformers.Trainer`'s. Use AdamW betas (0.9, 0.95), weight decay 0.05 and a cosine
        schedule with warm-up through `TrainingArguments` (see `training_scripts/run_stage1.py`).

    Logged besides `loss`: `uta_layer_{i}` (per aligned layer, ascending block index) and `visible_ratio`.
    Evaluation reports the UTA loss only (there are no logits to compare).
    """

    def __init__(self, *args, teacher: nn.Module, mask_type: str = "attention", mask_ratio: float = 0.8, **kwargs):
        super().__init__(*args, **kwargs)
        self.setup_teacher_and_mask(teacher, mask_type, mask_ratio, mask_ratio, ratio_names=("mask_ratio",) * 2)

    def model_outputs(self, model, inputs):
        pixel_values = inputs["pixel_values"]
        mask, targets = self.teacher_targets(pixel_values, model.training)
        return model(pixel_values=pixel_values, bool_masked_pos=mask, teacher_features=targets)


__all__ = ["UMTDistillationTrainer"]
