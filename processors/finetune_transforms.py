"""Fine-tuning augmentation and multi-view evaluation decoding (official_umt.md §4.3, §6.2).

Training, in the official order (`kinetics_sparse.py::_aug_frame`), on one clip uint8 (T, 3, H, W):

1. `VideoRandAugment` -- RandAugment `rand-m7-n4-mstd0.5-inc1`: 4 ops drawn with replacement from the 15
   "increasing" ops, each applied with probability 0.5 at magnitude ~ N(7, 0.5) out of 10. Every draw (op, magnitude,
   sign, apply-or-not) is made once per clip and applied to all frames, so the clip stays temporally consistent.
2. ImageNet normalisation (`processors.transforms.normalize`).
3. Random resized crop, area (0.08, 1), aspect (3/4, 4/3), bilinear without antialiasing (the official
   `F.interpolate(mode="bilinear", align_corners=False)` on the normalised float clip).
4. Horizontal flip with probability 0.5 (`flip_prob=0` for direction-sensitive data such as SSv2).
5. `VideoRandomErasing` -- probability 0.25, one box of 2 %-33 % of the frame filled with per-pixel N(0, 1) noise
   (the "pixel" mode, in normalised space), the same box in every frame (the official `cube=True`).

Evaluation: `processors.decoding.MultiViewClipDecoder` decodes a record into num_temporal_clips x num_spatial_crops
views with the saved `UMTVideoProcessor` (the official test rule: sparse clip c of n, short side resized, 1 or 3 crops
along the long side), so training-time evaluation and the pipeline share one pre-processing.

Deviations from the official code, all in RandAugment: ops run on uint8 tensors with torchvision instead of PIL
images; rotate / shear / translate use bilinear interpolation (torchvision has no bicubic for tensors; the official
scripts use PIL bicubic); shear is about the top-left corner as in PIL. Randomness comes from a `torch.Generator`
(or torch's global generator, seeded per DataLoader worker), not from Python's `random`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF

from .transforms import IMAGENET_MEAN, IMAGENET_STD, _check_clip, _pair, normalize, random_resized_crop_params

__all__ = [
    "RAND_AUGMENT_OPS",
    "FinetuneTrainTransform",
    "VideoRandAugment",
    "VideoRandomErasing",
    "parse_rand_augment",
]

MAX_LEVEL = 10.0
FILL = 128  # grey fill of the geometric ops (the official `_FILL`)

# The "increasing" op set of `rand-...-inc1`: every op gets stronger as the magnitude grows.
RAND_AUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand(1, dtype=torch.float64, generator=generator).item())


def _signed(value: float, generator: torch.Generator | None) -> float:
    """`value` with a random sign (the official `_randomly_negate`)."""
    return -value if _rand(generator) > 0.5 else value


def _affine(video: torch.Tensor, translate=(0.0, 0.0), shear=(0.0, 0.0), interpolation=InterpolationMode.BILINEAR):
    return tvF.affine(
        video, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear), interpolation=interpolation,
        fill=FILL, center=[0.0, 0.0],
    )  # fmt: skip


def _apply_op(name: str, video: torch.Tensor, level: float, generator, interpolation) -> torch.Tensor:
    """Apply RandAugment op `name` at `level` in [0, 10] to uint8 (T, 3, H, W); the level -> argument maps are the
    official `_*_level_to_arg` functions of the increasing variants."""
    frac = level / MAX_LEVEL
    if name == "AutoContrast":
        return tvF.autocontrast(video)
    if name == "Equalize":
        return tvF.equalize(video)
    if name == "Invert":
        return tvF.invert(video)
    if name == "Rotate":
        return tvF.rotate(video, _signed(frac * 30.0, generator), interpolation=interpolation, fill=FILL)
    if name == "PosterizeIncreasing":
        return tvF.posterize(video, 4 - int(frac * 4))
    if name == "SolarizeIncreasing":
        return tvF.solarize(video, 256 - int(frac * 256))
    if name == "SolarizeAdd":
        add = int(frac * 110)
        return torch.where(video < 128, (video.to(torch.int16) + add).clamp_(max=255).to(torch.uint8), video)
    if name.endswith("Increasing"):  # Color / Contrast / Brightness / Sharpness: enhance by 1 +- 0.9 * frac
        factor = 1.0 + _signed(frac * 0.9, generator)
        enhance = {
            "ColorIncreasing": tvF.adjust_saturation,
            "ContrastIncreasing": tvF.adjust_contrast,
            "BrightnessIncreasing": tvF.adjust_brightness,
            "SharpnessIncreasing": tvF.adjust_sharpness,
        }[name]
        return enhance(video, factor)
    if name in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(_signed(frac * 0.3, generator)))
        shear = (degrees, 0.0) if name == "ShearX" else (0.0, degrees)
        return _affine(video, shear=shear, interpolation=interpolation)
    if name in ("TranslateXRel", "TranslateYRel"):
        pct = _signed(frac * 0.45, generator)
        shift = (pct * video.shape[-1], 0.0) if name == "TranslateXRel" else (0.0, pct * video.shape[-2])
        return _affine(video, translate=shift, interpolation=interpolation)
    raise ValueError(f"op name must be one of {RAND_AUGMENT_OPS}, got {name!r}")


class VideoRandAugment:
    """RandAugment for a whole clip: `num_ops` ops drawn with replacement, each applied with probability `prob` at a
    magnitude drawn from N(magnitude, magnitude_std) clipped to [0, 10]. One set of draws per clip, applied to every
    frame (official `rand-m7-n4-mstd0.5-inc1`: magnitude 7, num_ops 4, magnitude_std 0.5).

    Call: uint8 (T, 3, H, W) [, generator] -> uint8 (T, 3, H, W).
    """

    def __init__(
        self,
        magnitude: float = 7.0,
        num_ops: int = 4,
        magnitude_std: float = 0.5,
        prob: float = 0.5,
        ops: Sequence[str] = RAND_AUGMENT_OPS,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    ):
        if not 0 <= magnitude <= MAX_LEVEL:
            raise ValueError(f"magnitude must be in [0, {MAX_LEVEL:g}], got {magnitude}")
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise ValueError(f"num_ops must be a non-negative integer, got {num_ops!r}")
        if magnitude_std < 0:
            raise ValueError(f"magnitude_std must be >= 0, got {magnitude_std}")
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        unknown = [op for op in ops if op not in RAND_AUGMENT_OPS]
        if unknown or not ops:
            raise ValueError(f"ops must be a non-empty subset of {RAND_AUGMENT_OPS}, got unknown {unknown}")
        self.magnitude, self.num_ops, self.magnitude_std, self.prob = magnitude, num_ops, magnitude_std, prob
        self.ops, self.interpolation = tuple(ops), interpolation

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(video)
        chosen = torch.randint(len(self.ops), (self.num_ops,), generator=generator).tolist()
        for index in chosen:
            if self.prob < 1.0 and _rand(generator) > self.prob:
                continue
            level = self.magnitude
            if self.magnitude_std > 0:
                level += self.magnitude_std * float(torch.randn(1, generator=generator, dtype=torch.float64).item())
            level = min(MAX_LEVEL, max(0.0, level))
            video = _apply_op(self.ops[index], video, level, generator, self.interpolation)
        return video

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(magnitude={self.magnitude}, num_ops={self.num_ops}, "
            f"magnitude_std={self.magnitude_std}, prob={self.prob}, ops={len(self.ops)})"
        )


def parse_rand_augment(spec: str | None) -> VideoRandAugment | None:
    """A timm-style policy string -> `VideoRandAugment`, e.g. "rand-m7-n4-mstd0.5-inc1" (the official value).

    Keys: m (magnitude), n (num_ops), mstd (magnitude std), p (per-op probability). Only the increasing op set is
    implemented, so `inc` must be 1 when given. None, "" or "none" turn RandAugment off.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    parts = spec.strip().split("-")
    if parts[0] != "rand":
        raise ValueError(f"rand_augment must look like 'rand-m7-n4-mstd0.5-inc1', got {spec!r}")
    kwargs: dict = {}
    for part in parts[1:]:
        key = next((k for k in ("mstd", "inc", "m", "n", "p") if part.startswith(k)), None)
        if key is None:
            raise ValueError(f"rand_augment {spec!r}: unknown key in {part!r} (expected m, n, mstd, p or inc)")
        value = part[len(key) :]
        try:
            if key == "m":
                kwargs["magnitude"] = float(value)
            elif key == "n":
                kwargs["num_ops"] = int(value)
            elif key == "mstd":
                kwargs["magnitude_std"] = float(value)
            elif key == "p":
                kwargs["prob"] = float(value)
            elif int(value) != 1:
                raise ValueError(f"rand_augment {spec!r}: only the increasing op set (inc1) is implemented")
        except ValueError as error:
            if "rand_augment" in str(error):
                raise
            raise ValueError(f"rand_augment {spec!r}: cannot read a number from {part!r}") from error
    return VideoRandAugment(**kwargs)


class VideoRandomErasing:
    """Random erasing of one box per clip, the same box in every frame (official `RandomErasing(cube=True)`).

    With probability `prob` a box of area fraction in `area` and aspect ratio log-uniform in `aspect` (up to 100
    tries) is filled with per-pixel N(0, 1) noise (`mode="pixel"`, official) or zeros (`mode="const"`). Works on the
    normalised float clip, so N(0, 1) is noise at the data's own scale.

    Call: float (T, C, H, W) [, generator] -> float (T, C, H, W) (a new tensor; the input is not modified).
    """

    def __init__(
        self,
        prob: float = 0.25,
        area: Sequence[float] = (0.02, 1.0 / 3.0),
        aspect: Sequence[float] = (0.3, 1.0 / 0.3),
        mode: str = "pixel",
        max_tries: int = 100,
    ):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if not (len(area) == 2 and 0 < area[0] <= area[1] <= 1):
            raise ValueError(f"area must be (low, high) with 0 < low <= high <= 1, got {area!r}")
        if not (len(aspect) == 2 and 0 < aspect[0] <= aspect[1]):
            raise ValueError(f"aspect must be (low, high) with 0 < low <= high, got {aspect!r}")
        if mode not in ("pixel", "const"):
            raise ValueError(f"mode must be 'pixel' or 'const', got {mode!r}")
        self.prob, self.area, self.mode, self.max_tries = prob, tuple(area), mode, max_tries
        self.log_aspect = (math.log(aspect[0]), math.log(aspect[1]))

    def box(self, height: int, width: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int] | None:
        """(top, left, box_height, box_width) of the erased box, or None when no erasing happens this time."""
        if _rand(generator) >= self.prob:
            return None
        for _ in range(self.max_tries):
            target = (self.area[0] + (self.area[1] - self.area[0]) * _rand(generator)) * height * width
            ratio = math.exp(self.log_aspect[0] + (self.log_aspect[1] - self.log_aspect[0]) * _rand(generator))
            h, w = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(height - h + 1, (1,), generator=generator).item())
                left = int(torch.randint(width - w + 1, (1,), generator=generator).item())
                return top, left, h, w
        return None

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not torch.is_floating_point(video) or video.ndim != 4:
            raise ValueError(f"video must be a float tensor (T, C, H, W), got {video.dtype} {tuple(video.shape)}")
        box = self.box(video.shape[-2], video.shape[-1], generator)
        if box is None:
            return video
        top, left, h, w = box
        video = video.clone()
        region = video[..., top : top + h, left : left + w]
        if self.mode == "pixel":
            region.copy_(torch.randn(region.shape, generator=generator, dtype=video.dtype))
        else:
            region.zero_()
        return video


class FinetuneTrainTransform:
    """The official fine-tuning training augmentation of one clip (see the module docstring for the order).

    Args:
        size: output crop (224 official).
        rand_augment: a `VideoRandAugment`, a policy string ("rand-m7-n4-mstd0.5-inc1", the default) or None.
        scale, ratio: random-resized-crop area and aspect ranges ((0.08, 1), (3/4, 4/3) official).
        flip_prob: horizontal flip probability; 0 for SSv2-like data whose labels name a direction.
        erase_prob: random-erasing probability (0.25 official; 0 disables it).

    Call: uint8 (T, 3, H, W) [, generator] -> float32 (T, 3, size, size), ImageNet-normalised.
    """

    def __init__(
        self,
        size: int | Sequence[int] = 224,
        rand_augment: VideoRandAugment | str | None = "rand-m7-n4-mstd0.5-inc1",
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        flip_prob: float = 0.5,
        erase_prob: float = 0.25,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        self.size = _pair(size, "size")
        self.rand_augment = parse_rand_augment(rand_augment) if isinstance(rand_augment, str) else rand_augment
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.scale, self.ratio, self.flip_prob = tuple(scale), tuple(ratio), flip_prob
        self.erasing = VideoRandomErasing(erase_prob) if erase_prob > 0 else None
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(video)
        if self.rand_augment is not None:
            video = self.rand_augment(video, generator)
        video = normalize(video, self.mean, self.std)
        top, left, h, w = random_resized_crop_params(video.shape[-2], video.shape[-1], self.scale, self.ratio, generator)
        video = tvF.resized_crop(
            video, top, left, h, w, list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=False
        )
        if self.flip_prob > 0 and _rand(generator) < self.flip_prob:
            video = tvF.horizontal_flip(video)
        if self.erasing is not None:
            video = self.erasing(video, generator)
        return video.contiguous()
