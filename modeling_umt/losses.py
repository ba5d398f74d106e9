"""UMT losses, one function per equation of the paper.

`uta_loss` is Unmasked Token Alignment (Stage 1 and Stage 2). VTC, VTM and MLM arrive with the Stage-2 model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def uta_loss(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Unmasked Token Alignment: mean(2 - 2 cos(student, teacher)) over layers, batch and visible tokens.

    student, teacher: (K, B, N_vis, D) features of the same visible tokens (the teacher's gathered with the mask).
    Both sides are L2-normalised here (idempotent for the Stage-1 heads, which already normalise), which makes
    2 - 2 cos the squared distance of unit vectors, as the official `clip_loss_type='l2'`.
    reduction: "mean" -> scalar; "per_layer" -> (K,) mean per aligned layer (their mean is the scalar loss).
    """
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(
            f"`student` and `teacher` must both be (K, B, N_vis, D); got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}."
        )
    cos = (F.normalize(student.float(), dim=-1) * F.normalize(teacher.float(), dim=-1)).sum(-1)  # (K, B, N_vis)
    per_token = 2.0 - 2.0 * cos
    if reduction == "per_layer":
        return per_token.flatten(1).mean(1)
    if reduction == "mean":
        return per_token.mean()
    raise ValueError(f"`reduction` must be 'mean' or 'per_layer', got {reduction!r}.")


__all__ = ["uta_loss"]
