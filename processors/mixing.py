"""Batch mixing for video classification: Mixup / CutMix with label-smoothed soft targets (`VideoMixup`)."""

from __future__ import annotations

import math

import torch
from timm.data.mixup import mixup_target


class VideoMixup:
    """Mixup / CutMix for video batches with label-smoothed soft targets (official `datasets/mixup.py`, batch mode).

    For each batch, with probability `prob`: CutMix with probability `switch_prob` (when both are on), else Mixup.
    Mixup: lam ~ Beta(mixup_alpha, mixup_alpha); x = lam * x + (1 - lam) * x.flip(0). CutMix: lam ~
    Beta(cutmix_alpha, cutmix_alpha); one box of side sqrt(1 - lam) x (H, W) centred at a uniform point, clipped to
    the frame, the same box in every frame, filled from the flipped batch; lam is then corrected to the kept area.
    Targets: lam * smooth(y) + (1 - lam) * smooth(y.flip(0)). An alpha of 0 disables that mix; both 0 (or prob 0)
    leaves only label smoothing.

    Randomness comes from torch's global generator (seeded per step by `UMTFineTuningTrainer`). The targets are
    timm's `mixup_target`; the mixing itself stays here: timm's `Mixup` pastes the CutMix box into dims 2-3, which
    are (C, H) in the (B, T, C, H, W) layout, and draws from numpy's RNG, outside the step-seeded torch generator.

    Call: pixel_values (B, T, C, H, W), labels (B,) -> (mixed pixel_values (B, T, C, H, W), targets (B, K) float32,
    lam float). The input tensor is not modified.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        correct_lam: bool = True,
    ):
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0, got {value}.")
        for name, value in (("prob", prob), ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
            if not 0 <= value <= 1:
                raise ValueError(f"`{name}` must be in [0, 1], got {value}.")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing, self.correct_lam = prob, switch_prob, label_smoothing, correct_lam

    @property
    def active(self) -> bool:
        """Whether any mixing can happen (otherwise only label smoothing is applied)."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    @staticmethod
    def _beta(alpha: float) -> float:
        return float(torch.distributions.Beta(alpha, alpha).sample())

    def draw(self) -> tuple[float, bool]:
        """(lam, use_cutmix) for one batch; lam = 1 means no mixing."""
        if not self.active or float(torch.rand(())) >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = float(torch.rand(())) < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        return self._beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha), use_cutmix

    @staticmethod
    def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the CutMix box for `lam`: sides int(sqrt(1 - lam) * (H, W)), centre uniform."""
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        return top, bottom, left, right

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        if pixel_values.ndim != 5 or labels.shape != pixel_values.shape[:1]:
            raise ValueError(
                f"`pixel_values` must be (B, T, C, H, W) with `labels` (B,), got {tuple(pixel_values.shape)} and "
                f"{tuple(labels.shape)}."
            )
        lam, use_cutmix = self.draw()
        if lam < 1.0:
            if use_cutmix:
                top, bottom, left, right = self.cutmix_box(pixel_values.shape[-2], pixel_values.shape[-1], lam)
                pixel_values = pixel_values.clone()
                pixel_values[..., top:bottom, left:right] = pixel_values.flip(0)[..., top:bottom, left:right]
                if self.correct_lam:
                    area = (bottom - top) * (right - left)
                    lam = 1.0 - area / float(pixel_values.shape[-2] * pixel_values.shape[-1])
            else:
                pixel_values = pixel_values * lam + pixel_values.flip(0) * (1.0 - lam)
        return pixel_values, mixup_target(labels, self.num_classes, lam, self.label_smoothing), lam


__all__ = ["VideoMixup"]
