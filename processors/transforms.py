"""Training and evaluation transforms on uint8 video clips (T, C, H, W), as in the official UMT pipelines.

Every random choice (crop box, flip) is drawn once per clip and applied to all of its frames in one
vectorised call, so the clip stays temporally consistent -- the model must see the same object move, not a
different crop per frame. Geometry runs on uint8 (as the official code, which crops and resizes PIL images or
uint8 tensors); `normalize` then produces the float32 tensor the model takes.

Randomness: pass a `torch.Generator` for reproducible draws; None uses torch's global generator (seeded per
DataLoader worker and by `transformers.set_seed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipTransform",
    "EvalTransform",
    "Stage1TrainTransform",
    "SampleTransform",
    "Stage2TrainTransform",
    "center_crop_box",
    "eval_views",
    "fixed_crop_offsets",
    "multi_scale_crop_params",
    "normalize",
    "random_resized_crop_params",
    "shortest_edge_size",
    "spatial_crop_boxes",
]

# ImageNet statistics: the official code normalises student *and* teacher inputs with these (not CLIP's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MULTI_SCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)


def _check_clip(video: torch.Tensor, name: str = "video") -> None:
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"{name} must be a torch tensor (T, 3, H, W), got {shape}")
    if video.dtype != torch.uint8:
        raise ValueError(f"{name} must be uint8 in [0, 255], got dtype {video.dtype}")


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or an (height, width) pair, got {size!r}")
    return pair


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand(1, dtype=torch.float64, generator=generator).item())


def normalize(
    video: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float32 `(video / 255 - mean) / std` with per-channel mean/std.

    Returns:
        float32 tensor of the input's shape.
    """
    if video.dtype != torch.uint8:
        raise ValueError(f"video must be uint8 in [0, 255], got dtype {video.dtype}")
    if video.ndim < 3 or video.shape[-3] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"video (..., C, H, W) must have C == len(mean) == len(std); got shape {tuple(video.shape)}, "
            f"mean {tuple(mean)}, std {tuple(std)}"
        )
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (video.to(torch.float32).div_(255.0) - mean_t) / std_t


def shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(new_height, new_width) that scales the short side to `shortest_edge`, the long side floored.

    Matches the official `get_resize_sizes` (`int(size * long / short)`).
    """
    if height <= width:
        return shortest_edge, int(shortest_edge * width / height)
    return int(shortest_edge * height / width), shortest_edge


def center_crop_box(height: int, width: int, crop_height: int, crop_width: int) -> tuple[int, int]:
    """(top, left) of the centred crop: `int(round((dim - crop) / 2))`, the official CenterCrop's rounding."""
    if crop_height > height or crop_width > width:
        raise ValueError(f"crop ({crop_height}, {crop_width}) is larger than the frame ({height}, {width})")
    return int(round((height - crop_height) / 2.0)), int(round((width - crop_width) / 2.0))


def fixed_crop_offsets(
    height: int, width: int, crop_height: int, crop_width: int, more_fix_crop: bool = True
) -> list[tuple[int, int]]:
    """The fixed (top, left) crop positions of GroupMultiScaleCrop: 5 (corners + centre) or 13 with `more_fix_crop`.

    Positions are multiples of a quarter of the free space, `step = (dim - crop) // 4`: corners, centre, then
    the four edge midpoints and the four quarter points. Order: as in the official `fill_fix_offset`.
    """
    h_step, w_step = (height - crop_height) // 4, (width - crop_width) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]  # (row, column) in units of (h_step, w_step)
    if more_fix_crop:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(row * h_step, column * w_step) for row, column in grid]


def multi_scale_crop_params(
    height: int,
    width: int,
    output_size: int | Sequence[int] = 224,
    scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
    max_distort: int = 1,
    more_fix_crop: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Draw a Stage-1 GroupMultiScaleCrop box (official_umt.md §6.1).

    Candidate sides are `int(min(H, W) * s)` for each scale; a side within 3 px of the output size snaps to it.
    A (crop_h, crop_w) pair is drawn uniformly among pairs whose scale indices differ by at most `max_distort`,
    then a position uniformly among the `fixed_crop_offsets`. One deviation: when snapping would make the crop
    larger than the frame (short side 222-223 px for a 224 output), the crop is clipped to the frame instead of
    being padded with black as PIL does.

    Returns:
        (top, left, crop_height, crop_width).
    """
    out_h, out_w = _pair(output_size, "output_size")
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"scales must be a non-empty list of values in (0, 1], got {scales!r}")
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    crop_hs = [out_h if abs(side - out_h) < 3 else side for side in sides]
    crop_ws = [out_w if abs(side - out_w) < 3 else side for side in sides]
    pairs = [(h, w) for i, h in enumerate(crop_hs) for j, w in enumerate(crop_ws) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[_randint(len(pairs), generator)]
    crop_h, crop_w = max(1, min(crop_h, height)), max(1, min(crop_w, width))
    offsets = fixed_crop_offsets(height, width, crop_h, crop_w, more_fix_crop)
    top, left = offsets[_randint(len(offsets), generator)]
    return top, left, crop_h, crop_w


def random_resized_crop_params(
    height: int,
    width: int,
    scale: Sequence[float] = (0.5, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Draw an Inception-style random-resized-crop box (the torchvision RandomResizedCrop rule).

    Up to 10 tries: area fraction uniform in `scale`, aspect ratio log-uniform in `ratio`; if none fits, a
    centred crop of the whole frame with the aspect ratio clamped into `ratio`.

    Returns:
        (top, left, crop_height, crop_width).
    """
    if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
    if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {ratio!r}")
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = _randint(height - crop_h + 1, generator)
            left = _randint(width - crop_w + 1, generator)
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, int(round(height * ratio[1]))
    else:
        crop_h, crop_w = height, width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _maybe_flip(video: torch.Tensor, flip_prob: float, generator: torch.Generator | None) -> torch.Tensor:
    if flip_prob > 0 and float(torch.rand(1, generator=generator).item()) < flip_prob:
        return tvF.horizontal_flip(video)
    return video


class Stage1TrainTransform:
    """Stage-1 pre-training augmentation: GroupMultiScaleCrop + horizontal flip + ImageNet normalisation.

    Crop box from `multi_scale_crop_params` (scales 1, .875, .75, .66, max_distort 1, 13 fixed positions),
    bilinear resize to `size`, flip with probability `flip_prob` (the official scripts pass `--flip True`,
    i.e. 0.5), then `normalize`. Colour jitter is off in the official recipe and is not implemented.

    Call: uint8 (T, 3, H, W) [, generator] -> float32 (T, 3, size, size).
    """

    def __init__(
        self,
        size: int | Sequence[int] = 224,
        scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
        max_distort: int = 1,
        more_fix_crop: bool = True,
        flip_prob: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        self.size = _pair(size, "size")
        self.scales, self.max_distort, self.more_fix_crop = tuple(scales), max_distort, more_fix_crop
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.flip_prob, self.mean, self.std = flip_prob, tuple(mean), tuple(std)

    def crop(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The geometric part only: uint8 (T, 3, H, W) -> uint8 (T, 3, size, size), same box and flip for all frames."""
        _check_clip(video)
        top, left, crop_h, crop_w = multi_scale_crop_params(
            video.shape[-2], video.shape[-1], self.size, self.scales, self.max_distort, self.more_fix_crop, generator
        )
        video = tvF.resized_crop(
            video, top, left, crop_h, crop_w, list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=True
        )
        return _maybe_flip(video, self.flip_prob, generator)

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return normalize(self.crop(video, generator), self.mean, self.std)


class Stage2TrainTransform:
    """Stage-2 (vision-language) training augmentation: RandomResizedCrop + horizontal flip + normalisation.

    `random_resized_crop_params(scale=(0.5, 1))`, bicubic resize to `size`, flip with probability `flip_prob`,
    then `normalize` (official_umt.md §6.3; RandAugment is off there).

    Call: uint8 (T, 3, H, W) [, generator] -> float32 (T, 3, size, size).
    """

    def __init__(
        self,
        size: int | Sequence[int] = 224,
        scale: Sequence[float] = (0.5, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        flip_prob: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        self.size = _pair(size, "size")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.flip_prob, self.mean, self.std = flip_prob, tuple(mean), tuple(std)

    def crop(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The geometric part only: uint8 (T, 3, H, W) -> uint8 (T, 3, size, size), same box and flip for all frames."""
        _check_clip(video)
        top, left, crop_h, crop_w = random_resized_crop_params(
            video.shape[-2], video.shape[-1], self.scale, self.ratio, generator
        )
        video = tvF.resized_crop(
            video, top, left, crop_h, crop_w, list(self.size), interpolation=InterpolationMode.BICUBIC, antialias=True
        )
        return _maybe_flip(video, self.flip_prob, generator)

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return normalize(self.crop(video, generator), self.mean, self.std)


def spatial_crop_boxes(height: int, width: int, crop_height: int, crop_width: int, num_crops: int = 1) -> list[tuple[int, int]]:
    """(top, left) of each spatial test view: the centre crop, or `num_crops` evenly spaced crops along the long side.

    Official test rule: start = int(k * (long - crop) / (num_crops - 1)) along the long side; the short side is
    centred (the official code resizes it to the crop size, so there it needs no crop at all).
    """
    if crop_height > height or crop_width > width:
        raise ValueError(
            f"crop size ({crop_height}, {crop_width}) is larger than the resized frame ({height}, {width}); "
            "make the shortest edge >= the crop size"
        )
    top, left = center_crop_box(height, width, crop_height, crop_width)
    if num_crops == 1:
        return [(top, left)]
    if height > width:
        step = (height - crop_height) / (num_crops - 1)
        return [(int(k * step), left) for k in range(num_crops)]
    step = (width - crop_width) / (num_crops - 1)
    return [(top, int(k * step)) for k in range(num_crops)]


def eval_views(
    video: torch.Tensor,
    resize: int | Sequence[int] | None,
    crop_size: Sequence[int] | None,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    num_temporal_clips: int = 1,
    num_spatial_crops: int = 1,
    rescale_factor: float | None = 1 / 255,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> torch.Tensor:
    """The evaluation pre-processing, the one implementation behind `UMTVideoProcessor` and `EvalTransform`.

    Resize (antialiased) -> crop each spatial view -> rescale -> normalise, for `num_temporal_clips` clips given
    one after the other along the frame axis.

    Args:
        video: uint8 (num_temporal_clips * T, C, H, W).
        resize: an int S resizes the short side to S and the long side to `int(S * long / short)` (the official
            `Resize`); an (height, width) pair resizes to exactly that size; None keeps the frames' size.
        crop_size: (height, width) of each spatial view; None keeps the whole (resized) frame (one view per clip).
        num_spatial_crops: 1 for the centre crop, or crops along the long side (`spatial_crop_boxes`).
        rescale_factor: multiply by this (1 / 255: to [0, 1]); None leaves the values as they are.
        mean, std: per-channel normalisation after rescaling; None skips it.
    Returns:
        float32 (num_temporal_clips * num_spatial_crops, T, C, h, w), views clip-major: (clip 0, crop 0),
        (clip 0, crop 1), ..., (clip 1, crop 0), ...
    """
    if not isinstance(video, torch.Tensor) or video.ndim != 4:
        raise ValueError(f"video must be a torch tensor (T, C, H, W), got {getattr(video, 'shape', type(video))}")
    if video.shape[0] % num_temporal_clips:
        raise ValueError(
            f"video has {video.shape[0]} frames, not a multiple of num_temporal_clips={num_temporal_clips}"
        )
    if num_spatial_crops > 1 and crop_size is None:
        raise ValueError(f"num_spatial_crops={num_spatial_crops} needs a crop_size, got None")
    if min(video.shape[-2:]) < 1:
        raise ValueError(f"video frames must have a height and width >= 1, got {tuple(video.shape[-2:])}")
    if isinstance(resize, int):
        resized = shortest_edge_size(*video.shape[-2:], resize)
        if crop_size is not None and _crop_first(resized, _pair(tuple(crop_size), "crop_size"), num_spatial_crops):
            return _finish_views(
                _crop_then_resize(video, resized, _pair(tuple(crop_size), "crop_size"), interpolation,
                                  num_temporal_clips, num_spatial_crops), rescale_factor, mean, std,
            )  # fmt: skip
        if crop_size is None:  # the whole resized frames are the output
            _check_output_bytes(video, resized)
        video = tvF.resize(video, list(resized), interpolation=interpolation, antialias=True)
    elif resize is not None:
        video = tvF.resize(video, list(_pair(tuple(resize), "resize")), interpolation=interpolation, antialias=True)
    height, width = video.shape[-2:]
    out_h, out_w = (height, width) if crop_size is None else _pair(tuple(crop_size), "crop_size")
    boxes = spatial_crop_boxes(height, width, out_h, out_w, num_spatial_crops)
    # Crop before normalising: the float work is then done on the output pixels only.
    views = torch.stack(
        [
            clip[..., top : top + out_h, left : left + out_w]
            for clip in video.reshape(num_temporal_clips, -1, *video.shape[1:])
            for top, left in boxes
        ]
    )  # (clips * crops, T, C, out_h, out_w), clip-major
    return _finish_views(views, rescale_factor, mean, std)


# A resized frame more than this many times the pixels of its crops is cropped first (extreme aspect ratios): the
# full resized frame of a 16000 x 2 clip at shortest edge 224 would be 224 x 1792000 pixels per frame.
CROP_FIRST_RATIO = 4
# A resized clip kept whole (no crop) may not exceed this many bytes as float32 output.
MAX_EVAL_OUTPUT_BYTES = 1 << 31


def _crop_first(resized: tuple[int, int], crop: tuple[int, int], num_crops: int) -> bool:
    return resized[0] * resized[1] > CROP_FIRST_RATIO * crop[0] * crop[1] * num_crops


def _check_output_bytes(video: torch.Tensor, resized: tuple[int, int]) -> None:
    size = video.shape[0] * video.shape[1] * resized[0] * resized[1] * 4
    if size > MAX_EVAL_OUTPUT_BYTES:
        raise ValueError(
            f"resizing frames of {tuple(video.shape[-2:])} pixels to {resized} would take {size / 2**30:.1f} GiB for "
            f"{video.shape[0]} frames (limit {MAX_EVAL_OUTPUT_BYTES / 2**30:.0f} GiB); give a crop_size or an exact "
            "(height, width) resize"
        )


def _crop_then_resize(video, resized, crop, interpolation, num_temporal_clips: int, num_spatial_crops: int):
    """The views `eval_views` would cut from the resized frames, made by resizing only the source region under each
    view, so memory follows the output, not the resized frame. Pixels differ from the full resize only within the
    filter's reach of a view's edge (the antialiasing window is cut there)."""
    height, width = video.shape[-2:]
    (rh, rw), (out_h, out_w) = resized, crop
    sy, sx = height / rh, width / rw
    per_box = []
    for top, left in spatial_crop_boxes(rh, rw, out_h, out_w, num_spatial_crops):
        y0, x0 = int(top * sy), int(left * sx)
        y1, x1 = min(height, math.ceil((top + out_h) * sy)), min(width, math.ceil((left + out_w) * sx))
        th, tw = max(out_h, round((y1 - y0) / sy)), max(out_w, round((x1 - x0) / sx))
        region = tvF.resize(video[..., y0:y1, x0:x1], [th, tw], interpolation=interpolation, antialias=True)
        oy, ox = min(th - out_h, max(0, round(top - y0 / sy))), min(tw - out_w, max(0, round(left - x0 / sx)))
        per_box.append(region[..., oy : oy + out_h, ox : ox + out_w])
    views = torch.stack([b.reshape(num_temporal_clips, -1, *b.shape[1:]) for b in per_box], dim=1)
    return views.reshape(-1, *views.shape[2:])  # (clips * crops, T, C, out_h, out_w), clip-major


def _finish_views(views: torch.Tensor, rescale_factor, mean, std) -> torch.Tensor:
    """uint8 views -> float32, rescaled and normalised (the last step of `eval_views`)."""
    out = views.to(torch.float32)
    if rescale_factor is not None:
        out = out.div_(1.0 / rescale_factor)  # a division, as `normalize`: 1 / (1 / 255) is exactly 255.0
    if mean is not None and std is not None:
        channels = out.shape[-3]
        mean, std = ((v,) * channels if isinstance(v, (int, float)) else v for v in (mean, std))  # one for all channels
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have one value per channel ({out.shape[-3]})")
        out = (out - torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)) / torch.tensor(
            std, dtype=torch.float32
        ).view(-1, 1, 1)
    return out


class EvalTransform:
    """Deterministic evaluation transform: `eval_views` with one view, so exactly `UMTVideoProcessor`'s output.

    keep_aspect_ratio=True (Stage-1 fine-tuning validation): resize the short side to `shortest_edge`
    (bilinear), centre-crop `size`. keep_aspect_ratio=False (Stage-2 test): resize straight to `size` x `size`
    (bicubic), aspect ratio not kept. Then ImageNet normalisation.

    Call: uint8 (T, 3, H, W) [, generator (unused)] -> float32 (T, 3, size, size).
    """

    def __init__(
        self,
        size: int = 224,
        shortest_edge: int | None = None,
        keep_aspect_ratio: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        self.size = _pair(size, "size")
        self.shortest_edge = shortest_edge if shortest_edge is not None else min(self.size)
        if self.shortest_edge < max(self.size) and keep_aspect_ratio:
            raise ValueError(f"shortest_edge ({self.shortest_edge}) must be >= the crop size {self.size}")
        self.keep_aspect_ratio, self.mean, self.std = keep_aspect_ratio, tuple(mean), tuple(std)

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(video)
        if self.keep_aspect_ratio:
            views = eval_views(video, self.shortest_edge, self.size, InterpolationMode.BILINEAR, mean=self.mean,
                               std=self.std)  # fmt: skip
        else:
            views = eval_views(video, self.size, None, InterpolationMode.BICUBIC, mean=self.mean, std=self.std)
        return views[0]


class SampleTransform:
    """Base of transforms that see the whole sample dict, not only its clip.

    A decoder hands its transform the sample {"pixel_values": uint8 (T, 3, H, W), ...every other key of the record}
    and a generator (None: torch's global one). Subclass this when a transform must change more than the pixels,
    e.g. move boxes with the crop; wrap a clip-only transform in `ClipTransform`.

    Call: (sample: dict, generator) -> dict.
    """

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(sample, generator)")


class ClipTransform(SampleTransform):
    """A clip transform applied to `sample[key]` (default "pixel_values"); every other key is left as it is.

    Hook: a clip transform that must also update other keys (boxes, points) defines
    `transform_sample(sample, generator) -> dict`; it then receives the whole sample instead of the clip.

    Args:
        transform: uint8 (T, 3, H, W) [, generator] -> tensor; called without the generator when it is None, so
            transforms that take no generator work too.
    """

    def __init__(self, transform, key: str = "pixel_values"):
        if not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        self.transform, self.key = transform, key

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        hook = getattr(self.transform, "transform_sample", None)
        if hook is not None:
            return hook(sample, generator)
        if self.key not in sample:
            raise ValueError(f"sample has no {self.key!r} key to transform; its keys are {sorted(sample)}")
        clip = sample[self.key]
        return {**sample, self.key: self.transform(clip) if generator is None else self.transform(clip, generator)}

    def __repr__(self) -> str:
        return f"ClipTransform({self.transform!r}, key={self.key!r})"
