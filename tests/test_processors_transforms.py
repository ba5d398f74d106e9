"""Training transforms: official crop geometry, one crop and flip per clip, ImageNet normalisation."""

import itertools

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as tvF

from processors.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    Stage1TrainTransform,
    Stage2TrainTransform,
    center_crop_box,
    fixed_crop_offsets,
    multi_scale_crop_params,
    normalize,
    random_resized_crop_params,
)


def textured_clip(num_frames=4, height=72, width=96, seed=0):
    """A clip whose frames are the same random image: any per-frame difference after a transform is a bug."""
    image = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8))
    return image.expand(num_frames, -1, -1, -1).contiguous()


def test_fixed_crop_offsets_are_the_13_official_positions():
    # 340 x 256 frame, 224 crop: w_step = 116 // 4 = 29, h_step = 32 // 4 = 8; (top, left) pairs.
    expected = [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58),
                (16, 0), (16, 116), (32, 58), (0, 58), (8, 29), (8, 87), (24, 29), (24, 87)]  # fmt: skip
    assert fixed_crop_offsets(256, 340, 224, 224) == expected
    assert fixed_crop_offsets(256, 340, 224, 224, more_fix_crop=False) == expected[:5]


def test_multi_scale_crop_draws_exactly_the_official_size_pairs_and_positions():
    # min side 256: sides int(256 s) = 256, 224, 192, 168 for s = 1, .875, .75, .66; |i - j| <= 1.
    sides = [256, 224, 192, 168]
    expected_pairs = {(sides[i], sides[j]) for i, j in itertools.product(range(4), repeat=2) if abs(i - j) <= 1}
    generator = torch.Generator().manual_seed(0)
    seen_pairs, seen_offsets = set(), set()
    for _ in range(2000):
        top, left, h, w = multi_scale_crop_params(256, 340, 224, generator=generator)
        assert (top, left) in fixed_crop_offsets(256, 340, h, w)
        seen_pairs.add((h, w))
        seen_offsets.add((h, w, top, left))
    assert seen_pairs == expected_pairs
    assert len(seen_offsets) > 100  # positions vary, not just sizes


def test_multi_scale_crop_snaps_sizes_within_3_pixels():
    # min side 226: int(226 * 1) = 226 is within 3 px of 224 and snaps; int(226 * .875) = 197 does not.
    generator = torch.Generator().manual_seed(0)
    sizes = {multi_scale_crop_params(226, 300, 224, generator=generator)[2] for _ in range(500)}
    assert sizes == {224, 197, 169, 149}


def test_random_resized_crop_respects_scale_and_ratio():
    generator = torch.Generator().manual_seed(0)
    for _ in range(500):
        top, left, h, w = random_resized_crop_params(120, 160, (0.5, 1.0), (3 / 4, 4 / 3), generator)
        assert 0 <= top <= 120 - h and 0 <= left <= 160 - w
        assert 0.5 - 0.02 <= h * w / (120 * 160) <= 1.0
        assert 3 / 4 - 0.03 <= w / h <= 4 / 3 + 0.03


@pytest.mark.parametrize("transform_class", [Stage1TrainTransform, Stage2TrainTransform])
def test_every_frame_of_a_clip_gets_the_same_crop_and_flip(transform_class):
    clip = textured_clip()
    transform = transform_class(size=32)
    outputs = [transform.crop(clip, torch.Generator().manual_seed(seed)) for seed in range(12)]
    for out in outputs:
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[t]) for t in range(1, 4))
    # The clips differ from seed to seed (crops and flips really are random).
    assert len({out[0].numpy().tobytes() for out in outputs}) > 6


@pytest.mark.parametrize("transform_class", [Stage1TrainTransform, Stage2TrainTransform])
def test_clip_transform_equals_the_same_transform_applied_frame_by_frame(transform_class):
    # Frames differ here; the clip result must equal cropping each frame with the clip's box.
    frames = torch.stack([textured_clip(1, seed=seed)[0] for seed in range(3)])
    out = transform_class(size=24, flip_prob=0.0).crop(frames, torch.Generator().manual_seed(5))
    for t in range(3):
        single = transform_class(size=24, flip_prob=0.0).crop(frames[t : t + 1], torch.Generator().manual_seed(5))
        assert torch.equal(out[t], single[0])


@pytest.mark.parametrize("transform_class", [Stage1TrainTransform, Stage2TrainTransform])
def test_flip_mirrors_the_same_crop(transform_class):
    clip = textured_clip()
    kept = transform_class(size=32, flip_prob=0.0).crop(clip, torch.Generator().manual_seed(1))
    flipped = transform_class(size=32, flip_prob=1.0).crop(clip, torch.Generator().manual_seed(1))
    assert torch.equal(flipped, tvF.horizontal_flip(kept))


def test_stage1_crop_is_the_official_box_resized_bilinearly():
    clip = textured_clip(height=60, width=80)
    top, left, h, w = multi_scale_crop_params(60, 80, 32, generator=torch.Generator().manual_seed(3))
    box = clip[..., top : top + h, left : left + w].float()
    reference = torch.nn.functional.interpolate(
        box, size=(32, 32), mode="bilinear", antialias=True, align_corners=False
    )
    out = Stage1TrainTransform(size=32, flip_prob=0.0).crop(clip, torch.Generator().manual_seed(3))
    assert (out.float() - reference.round().clamp(0, 255)).abs().max() <= 1


def test_normalize_uses_imagenet_statistics():
    video = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize(video)
    assert out.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[1, :, 0, 0], (1 - mean) / std)


@pytest.mark.parametrize(
    "transform", [Stage1TrainTransform(size=40), Stage2TrainTransform(size=40), EvalTransform(size=40)]
)
def test_transforms_return_normalised_float32_clips(transform):
    out = transform(textured_clip(num_frames=3, height=50, width=70))
    assert out.shape == (3, 3, 40, 40) and out.dtype == torch.float32
    assert -2.2 < out.min() < 0 < out.max() < 2.7  # normalised range of uint8 input


def test_eval_transform_resizes_short_side_and_centre_crops():
    clip = textured_clip(num_frames=2, height=40, width=61)
    out = EvalTransform(size=32, shortest_edge=40)(clip)
    # Short side already 40 -> no resize; centre crop top = round(8 / 2) = 4, left = round(29 / 2) = 14 (14.5 -> 14).
    assert center_crop_box(40, 61, 32, 32) == (4, 14)
    torch.testing.assert_close(out, normalize(clip[..., 4:36, 14:46]))


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="uint8"):
        Stage1TrainTransform(size=32)(torch.zeros(2, 3, 40, 40))
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        Stage2TrainTransform(size=32)(torch.zeros(3, 40, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match="flip_prob"):
        Stage1TrainTransform(flip_prob=2)
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop_params(10, 10, scale=(0.9, 0.1))
