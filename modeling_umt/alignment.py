# Copyright 2026 The UMT-for-Transformers authors. Licensed under the Apache License, Version 2.0.
"""Unmasked Token Alignment (UTA) as one module: the heads that project the student's tokens into the teacher's
space, and everything between the encoder's intermediate layers and `losses.uta_loss`.

Both UTA users build it: `UMTForPreTraining` (Stage 1) and `UMTForVideoTextRetrieval` (Stage 2). Per step (official
§1.4):

    intermediates (K, B, N_vis, D)  ->  + sin-cos table at the visible positions  ->  head k  ->  (K, B, N_vis, D_t)
    teacher targets (K, B, N, D_t)  ->  visible tokens (K, B, N_vis, D_t)  ->  uta_loss(student, teacher)

Shapes: K aligned layers, B batch, N tokens of the full layout, N_vis visible tokens, D student width, D_t teacher
width.
"""

import torch
from torch import nn

from .configuration_umt import UMTConfig
from .losses import uta_loss
from .masking import gather_visible
from .positions import sinusoid_table


def visible_teacher_features(features: torch.Tensor, bool_masked_pos: torch.Tensor | None) -> torch.Tensor:
    """Teacher targets (K, B, N, D_t) -> (K, B, N_vis, D_t) for the tokens the mask keeps (all without a mask).

    The trainers call it right after masking, so the full-token targets can be freed before the student runs (at
    80% masking they are five times larger than what UTA reads); the models call it for targets not yet gathered."""
    if bool_masked_pos is None:
        return features
    return gather_visible(features, bool_masked_pos, name="bool_masked_pos")


class UMTAlignmentHead(nn.Module):
    """One alignment head (official `Linear_Decoder`): Linear(D -> D_teacher) -> LayerNorm -> optional L2."""

    def __init__(self, config: UMTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.uta_output_dim)
        self.norm = nn.LayerNorm(config.uta_output_dim, eps=config.uta_head_norm_eps)
        self.l2_normalize = config.uta_l2_normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.dense(x))
        return x / x.norm(dim=-1, keepdim=True) if self.l2_normalize else x


class UMTAlignmentHeads(nn.ModuleList):
    """The K alignment heads of UTA, one per aligned layer (`config.uta_layer_indices`, ascending).

    A `ModuleList` so checkpoints keep the keys `uta_heads.{k}.dense.*` / `uta_heads.{k}.norm.*` of the official
    layout. It also owns the sin-cos table added before the heads (over the full token layout, then gathered with
    the mask; a non-persistent buffer, never saved), the gather of the teacher targets and the call to `uta_loss`.

    forward(intermediates (K, B, N_vis, D), bool_masked_pos (B, N) or None) -> student features (K, B, N_vis, D_t).
    loss(student (K, B, N_vis, D_t), teacher (K, B, N or N_vis, D_t), bool_masked_pos) -> UTA loss.
    """

    def __init__(self, config: UMTConfig):
        super().__init__([UMTAlignmentHead(config) for _ in range(config.num_uta_layers)])
        self.hidden_size = config.hidden_size
        table = self.compute_position_embeddings(config.num_patches)
        self.register_buffer("position_embeddings", table, persistent=False)

    def compute_position_embeddings(self, num_tokens: int) -> torch.Tensor:
        """The (1, num_tokens, D) sin-cos table of the aligned tokens (the official UTA rule: a table over the
        flattened index, whatever rule the encoder's own positions follow)."""
        return sinusoid_table(num_tokens, self.hidden_size)[None]

    def positions(self, num_tokens: int) -> torch.Tensor:
        """(1, num_tokens, D) float32: the stored table for the configured layout, otherwise built for this one."""
        if num_tokens == self.position_embeddings.shape[1]:
            return self.position_embeddings
        return self.compute_position_embeddings(num_tokens).to(self.position_embeddings.device)

    def forward(self, intermediates: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        if intermediates.ndim != 4 or intermediates.shape[0] != len(self):
            raise ValueError(
                f"`intermediates` must be (K={len(self)}, batch, visible tokens, hidden), got "
                f"{tuple(intermediates.shape)}."
            )
        _, b, n_vis, _ = intermediates.shape
        n_all = n_vis if bool_masked_pos is None else bool_masked_pos.shape[1]
        positions = self.positions(n_all).to(intermediates.dtype).expand(b, -1, -1)
        if bool_masked_pos is not None:
            positions = gather_visible(positions, bool_masked_pos, name="bool_masked_pos")
        intermediates = intermediates + positions
        return torch.stack([head(intermediates[k]) for k, head in enumerate(self)])

    def loss(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """`uta_loss` between the head outputs `student` (K, B, N_vis, D_t) and the teacher targets, given for all
        tokens (K, B, N, D_t; gathered here with the mask) or already gathered (K, B, N_vis, D_t).
        reduction: "mean" -> scalar, "per_layer" -> (K,) (see `uta_loss`)."""
        if bool_masked_pos is not None and teacher.ndim == 4 and teacher.shape[2] != student.shape[2]:
            teacher = visible_teacher_features(teacher, bool_masked_pos)
        if teacher.shape != student.shape:
            raise ValueError(
                f"`teacher_features` must have shape {tuple(student.shape)} (or the full-token shape before "
                f"masking), got {tuple(teacher.shape)}."
            )
        return uta_loss(student, teacher, reduction=reduction)


__all__ = ["UMTAlignmentHead", "UMTAlignmentHeads", "visible_teacher_features"]
