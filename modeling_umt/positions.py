# Copyright 2026 The UMT-for-Transformers authors. Licensed under the Apache License, Version 2.0.
"""UMT's fixed sin-cos position tables: the student's token positions and the UTA heads' positions.

Its own module because both the encoder (`modeling_umt.UMTEmbeddings`) and the alignment heads
(`alignment.UMTAlignmentHeads`) read these tables, and neither should import the other.
"""

import torch
import torch.nn.functional as F


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """The Transformer sin-cos table, sin and cos interleaved: (num_positions, dim) float32.

    angle[p, j] = p / 10000 ** (2 * (j // 2) / dim); even columns take sin, odd columns cos. Computed in float64
    and cast once, as the official numpy code does, so the float32 table is bit-compatible with it.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


def build_position_embeddings(
    frames: int,
    grid: tuple[int, int],
    dim: int,
    rule: str = "interpolated",
    reference_frames: int = 8,
    reference_grid: int = 14,
) -> torch.Tensor:
    """Position embeddings for a (frames, grid_h, grid_w) token layout: (1, frames * grid_h * grid_w, dim) float32.

    `rule="direct"` is a sin-cos table over the flattened index (official pre-training and Stage 2).
    `rule="interpolated"` is the official fine-tuning rule: build the table for the reference layout
    (`reference_frames` x `reference_grid`^2), resize it bicubically in space, then linearly in time.
    """
    gh, gw = grid
    n = frames * gh * gw
    if rule == "direct" or (frames == reference_frames and (gh, gw) == (reference_grid, reference_grid)):
        return sinusoid_table(n, dim)[None]
    if rule != "interpolated":
        raise ValueError(f"`rule` must be 'interpolated' or 'direct', got {rule!r}.")
    table = sinusoid_table(reference_frames * reference_grid**2, dim)
    table = table.view(reference_frames, reference_grid, reference_grid, dim)  # (T0, P, P, D)
    if (gh, gw) != (reference_grid, reference_grid):
        table = F.interpolate(table.permute(0, 3, 1, 2), size=(gh, gw), mode="bicubic", align_corners=False)
        table = table.permute(0, 2, 3, 1)  # (T0, gh, gw, D)
    if frames != reference_frames:
        table = table.permute(1, 2, 3, 0).reshape(gh * gw, dim, reference_frames)  # time last for 1-D interpolation
        table = F.interpolate(table, size=frames, mode="linear", align_corners=False)
        table = table.view(gh, gw, dim, frames).permute(3, 0, 1, 2)  # (T, gh, gw, D)
    return table.reshape(1, n, dim).contiguous()


__all__ = ["build_position_embeddings", "sinusoid_table"]
