"""Checks of what a model's `forward` receives, in one place: each raises one ValueError naming the argument, what it
got and what was expected, before any reshape can fail obscurely.

- `check_pixel_values`: a floating tensor (B, T, C, H, W) with B >= 1 and T >= 1.
- `check_token_mask`: `bool_masked_pos` a bool tensor (B, N) that keeps at least one token per sample.
- `check_text_inputs`: `input_ids` an integer tensor (B, L) with B, L >= 1, and an `attention_mask` of the same shape
  (bool or integer 0/1) that keeps at least one token per row.
"""

from __future__ import annotations

import torch


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:120]


def check_pixel_values(pixel_values, name: str = "pixel_values") -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor (batch, frames, channels, height, width), got "
                         f"{_describe(pixel_values)}.")
    if not pixel_values.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor (normalised pixels), got {_describe(pixel_values)}.")
    if pixel_values.ndim == 5 and (pixel_values.shape[0] == 0 or pixel_values.shape[1] == 0):
        raise ValueError(f"`{name}` must hold at least one clip of at least one frame, got {_describe(pixel_values)}.")


def check_token_mask(mask, num_tokens: int | None = None, name: str = "bool_masked_pos") -> None:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"`{name}` must be a bool torch.Tensor (batch, num_tokens), got {_describe(mask)}.")
    if mask.dtype != torch.bool:
        raise ValueError(f"`{name}` must be a bool tensor (True = token dropped), got {_describe(mask)}; convert it "
                         "with `.bool()` if its values are 0/1.")
    if mask.ndim == 2 and mask.shape[1] > 0 and bool(mask.all(dim=1).any()):
        raise ValueError(f"`{name}` drops every token of sample {int(mask.all(dim=1).nonzero()[0])}: at least one "
                         "token must stay visible.")


def check_text_inputs(input_ids, attention_mask=None) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise ValueError(f"`input_ids` must be an integer torch.Tensor (batch, length), got {_describe(input_ids)}.")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool or input_ids.is_complex():
        raise ValueError(f"`input_ids` must be an integer tensor of token ids, got {_describe(input_ids)}.")
    if input_ids.ndim != 2 or 0 in input_ids.shape:
        raise ValueError(f"`input_ids` must be (batch, length) with batch, length >= 1, got {_describe(input_ids)}.")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(f"`attention_mask` must be a torch.Tensor like `input_ids`, got {_describe(attention_mask)}.")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"`attention_mask` must have the shape of `input_ids` {tuple(input_ids.shape)}, got "
                         f"{_describe(attention_mask)}.")
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise ValueError(f"`attention_mask` must be bool or integer (1 = token, 0 = padding), got "
                         f"{_describe(attention_mask)}.")
    empty = (attention_mask == 0).all(dim=1)
    if bool(empty.any()):
        raise ValueError(f"`attention_mask` masks every token of row {int(empty.nonzero()[0])}: each text needs at "
                         "least one token.")


__all__ = ["check_pixel_values", "check_text_inputs", "check_token_mask"]
