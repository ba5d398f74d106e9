"""Token masks for UMT distillation: semantic (teacher-attention), random and tube.

Convention, as in the official code: a mask is bool (B, N) with True = masked (dropped) and False = visible;
video tokens are t-major (frame, then row, then column), N = T * HW. Every sample of a batch masks the same
number of tokens, so the visible tokens of a batch stack without padding (`gather_visible`).

Randomness comes from an optional `torch.Generator`: pass one for reproducible masks (it must live on the
device the mask is built on); without one the global RNG is used, as the official code does.
"""

from numbers import Real
from typing import Optional, Union

import torch


def _check_ratio(mask_ratio) -> float:
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, Real) or not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio={mask_ratio!r} must be a number in [0, 1)")
    return float(mask_ratio)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
    return value


def semantic_mask(cls_attention: torch.Tensor, mask_ratio: float,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """UMT's attention-guided mask: per frame, keep tokens drawn in proportion to the teacher's cls attention.

    Each frame keeps exactly N_vis = HW - int(HW * mask_ratio) tokens (40 of 196 at 0.8), drawn with
    `torch.multinomial` *without* replacement: a weighted random permutation, not top-k, so low-attention
    tokens are still sometimes kept. Only the first N_vis draws are made: without replacement the draw is an
    exponential race ranked by top-k, so they equal the first N_vis of the official full draw of HW (same
    generator state, same masks; see tests/test_masking.py), while needing only N_vis positive weights per frame.

    Args:
        cls_attention: (B, T, HW) non-negative weights per frame (`UMTTeacherOutput.cls_attention`); rows need
            not sum to 1. Images are T = 1.
        mask_ratio: fraction of each frame's tokens to mask, in [0, 1).
        generator: optional torch.Generator on cls_attention's device.

    Returns:
        bool (B, T*HW), True = masked, on cls_attention's device.
    """
    mask_ratio = _check_ratio(mask_ratio)
    if cls_attention.ndim != 3:
        raise ValueError(f"cls_attention must be (B, T, HW); got shape {tuple(cls_attention.shape)}")
    B, T, HW = cls_attention.shape
    num_visible = HW - int(HW * mask_ratio)  # official rounding: the masked count is floored
    weights = cls_attention.reshape(B * T, HW).float()
    keep = torch.multinomial(weights, num_visible, replacement=False, generator=generator)  # (B*T, N_vis)
    mask = torch.ones(B * T, HW, dtype=torch.bool, device=cls_attention.device)
    mask.scatter_(1, keep, False)
    return mask.view(B, T * HW)


def random_mask(batch: int, num_tokens: int, mask_ratio: float, generator: Optional[torch.Generator] = None,
                device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Uniform random mask: int(mask_ratio * num_tokens) masked tokens per sample, positions independent per sample.

    Returns bool (batch, num_tokens), True = masked, on `device` (default: the generator's device, else CPU).
    """
    mask_ratio = _check_ratio(mask_ratio)
    batch, num_tokens = _check_positive("batch", batch), _check_positive("num_tokens", num_tokens)
    device = device if device is not None else (generator.device if generator is not None else None)
    # The ranks of i.i.d. uniform noise are a uniform random permutation; its first entries are masked.
    order = torch.rand(batch, num_tokens, generator=generator, device=device).argsort(dim=1)
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool, device=order.device)
    return mask.scatter_(1, order[:, : int(mask_ratio * num_tokens)], True)


def tube_mask(batch: int, num_frames: int, tokens_per_frame: int, mask_ratio: float,
              generator: Optional[torch.Generator] = None,
              device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Tube mask (VideoMAE): one random per-frame pattern, int(mask_ratio * HW) masked, repeated on every frame.

    Returns bool (batch, num_frames * tokens_per_frame), True = masked, t-major.
    """
    num_frames = _check_positive("num_frames", num_frames)
    _check_positive("tokens_per_frame", tokens_per_frame)
    per_frame = random_mask(batch, tokens_per_frame, mask_ratio, generator, device)  # (B, HW)
    return per_frame.unsqueeze(1).expand(-1, num_frames, -1).reshape(per_frame.shape[0], -1)


def gather_visible(tokens: torch.Tensor, mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Keep the visible tokens: (..., B, N, C) with mask (B, N) -> (..., B, N_vis, C), order preserved.

    The one gather of the project: the student's tokens (B, N, D), the UTA position table and the teacher targets
    (K, B, N, C) all go through it. It is the official `x[~mask].reshape(B, -1, C)`, extended to leading axes.
    The mask is moved to the tokens' device. `name` is the argument name the caller's users know (for errors).
    Raises ValueError unless the mask is bool (B, N) matching `tokens` and every sample keeps the same number of
    tokens (so the visible tokens stack without padding).
    """
    if mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError(f"{name} must be bool (B, N); got {mask.dtype} of shape {tuple(mask.shape)}")
    if tokens.ndim < 3:
        raise ValueError(f"tokens must be (..., B, N, C); got shape {tuple(tokens.shape)}")
    if tokens.shape[-3:-1] != mask.shape:
        raise ValueError(
            f"`{name}` must have shape (batch, num_tokens) = {tuple(tokens.shape[-3:-1])}: tokens must be "
            f"(..., B, N, C) with (B, N) the mask's shape; got tokens {tuple(tokens.shape)} and mask "
            f"{tuple(mask.shape)}."
        )
    mask = mask.to(tokens.device)
    visible = (~mask).sum(dim=1)
    if mask.shape[0] and bool((visible != visible[0]).any()):
        raise ValueError(
            f"`{name}` must mask the same number of tokens in every sample, so the visible tokens stack without "
            f"padding; a different number of tokens is visible per sample: {visible.tolist()}."
        )
    return tokens[..., ~mask, :].reshape(*tokens.shape[:-3], mask.shape[0], -1, tokens.shape[-1])


__all__ = ["gather_visible", "random_mask", "semantic_mask", "tube_mask"]
