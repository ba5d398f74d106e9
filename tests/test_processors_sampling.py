"""Frame-index rules against values computed by hand from the official formulas (official_umt.md §6)."""

import numpy as np
import pytest
import torch

from processors.sampling import (
    middle_indices,
    multi_clip_indices,
    rand_indices,
    sample_indices,
    sparse_test_indices,
    sparse_train_indices,
    tsn_indices,
)


def draws(rule, num_frames, video_length, count=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rule(num_frames, video_length, rng) for _ in range(count)])  # (count, num_frames)


# ---------------------------------------------------------------- Stage 1 pre-training: TSN (§6.1)


def test_tsn_draws_one_frame_per_equal_segment():
    # 100 frames, 8 segments: avg = 12, frame i in [12 i, 12 i + 12).
    samples = draws(tsn_indices, 8, 100)
    for i in range(8):
        assert set(samples[:, i]) == set(range(12 * i, 12 * i + 12))


def test_tsn_length_equal_to_num_frames_gives_every_frame():
    assert tsn_indices(8, 8, np.random.default_rng(0)).tolist() == list(range(8))


def test_tsn_short_video_falls_back_to_zeros():
    assert tsn_indices(8, 5, np.random.default_rng(0)).tolist() == [0] * 8


# ---------------------------------------------------------------- Stage 1 fine-tuning: sparse (§6.2)


def test_sparse_train_segment_bounds_are_inclusive_and_round_half_to_even():
    # 6 frames, 2 clips: seg = 2.5, bounds round(0, 2.5, 5) = (0, 2, 5) -- 2.5 rounds to 2, not 3.
    samples = draws(sparse_train_indices, 2, 6)
    assert set(samples[:, 0]) == {0, 1, 2}
    assert set(samples[:, 1]) == {2, 3, 4, 5}


def test_sparse_train_on_100_frames():
    # seg = 99 / 8 = 12.375, bounds [0, 12, 25, 37, 50, 62, 74, 87, 99].
    bounds = [0, 12, 25, 37, 50, 62, 74, 87, 99]
    samples = draws(sparse_train_indices, 8, 100, count=800)
    for i in range(8):
        assert set(samples[:, i]) == set(range(bounds[i], bounds[i + 1] + 1))


def test_sparse_test_single_clip_hand_computed():
    # shift = int(12.375 / 2) = 6 on top of the bounds above.
    assert sparse_test_indices(8, 100).tolist() == [6, 18, 31, 43, 56, 68, 80, 93]


def test_sparse_test_four_clips_hand_computed():
    # duration = 12.375 / 5 = 2.475, shifts int(2.475 * (c + 1)) = 2, 4, 7, 9.
    expected = [
        [2, 14, 27, 39, 52, 64, 76, 89],
        [4, 16, 29, 41, 54, 66, 78, 91],
        [7, 19, 32, 44, 57, 69, 81, 94],
        [9, 21, 34, 46, 59, 71, 83, 96],
    ]
    assert multi_clip_indices(8, 100, 4).tolist() == expected
    assert [sparse_test_indices(8, 100, c, 4).tolist() for c in range(4)] == expected


def test_sparse_test_short_video_repeats_frames():
    # seg = 0.5: bounds round(0.5 i) = 0, 0, 1, 2, 2, 2, 3, 4 (half to even), shift int(0.25) = 0.
    assert sparse_test_indices(8, 5).tolist() == [0, 0, 1, 2, 2, 2, 3, 4]


@pytest.mark.parametrize("num_frames", [1, 4, 8, 16])
@pytest.mark.parametrize("video_length", [1, 2, 7, 16, 33, 300])
@pytest.mark.parametrize("num_clips", [1, 2, 4])
def test_sparse_test_matches_the_formula_written_as_a_loop(num_frames, video_length, num_clips):
    seg = max(0.0, (video_length - 1) / num_frames)
    for clip in range(num_clips):
        expected = [
            min(int(np.round(seg * i)) + int(seg / (num_clips + 1) * (clip + 1)), video_length - 1)
            for i in range(num_frames)
        ]
        assert sparse_test_indices(num_frames, video_length, clip, num_clips).tolist() == expected


# ---------------------------------------------------------------- Stage 2: rand / middle (§6.3)


def test_rand_never_draws_the_last_frame_of_an_interval():
    # 16 frames, 8 intervals of 2 frames: range(start, end - 1) holds only `start`.
    for seed in range(20):
        assert rand_indices(8, 16, np.random.default_rng(seed)).tolist() == [0, 2, 4, 6, 8, 10, 12, 14]


def test_rand_on_100_frames_draws_from_start_to_end_minus_two():
    # edges linspace(0, 100, 9).astype(int) = [0, 12, 25, 37, 50, 62, 75, 87, 100].
    edges = [0, 12, 25, 37, 50, 62, 75, 87, 100]
    samples = draws(rand_indices, 8, 100, count=800)
    for i in range(8):
        assert set(samples[:, i]) == set(range(edges[i], edges[i + 1] - 1))


def test_rand_falls_back_to_sorted_distinct_frames_when_an_interval_is_too_short():
    # 10 frames, 8 intervals: edges [0, 1, 2, 3, 5, 6, 7, 8, 10] leave empty ranges.
    for seed in range(20):
        indices = rand_indices(8, 10, np.random.default_rng(seed))
        assert len(set(indices.tolist())) == 8 and (np.diff(indices) > 0).all() and indices.max() < 10


def test_rand_and_middle_pad_short_videos_with_the_last_index():
    assert rand_indices(8, 3, np.random.default_rng(0)).tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    assert middle_indices(8, 3).tolist() == [0, 1, 2, 2, 2, 2, 2, 2]


def test_middle_hand_computed():
    # (start + end - 1) // 2 with the edges above.
    assert middle_indices(8, 100).tolist() == [5, 18, 30, 43, 55, 68, 80, 93]


# ---------------------------------------------------------------- generators and validation


@pytest.mark.parametrize("rule", [tsn_indices, sparse_train_indices, rand_indices])
def test_random_rules_are_reproducible_with_numpy_and_torch_generators(rule):
    a = rule(8, 300, np.random.default_rng(7))
    assert np.array_equal(a, rule(8, 300, np.random.default_rng(7)))
    b = rule(8, 300, torch.Generator().manual_seed(7))
    assert np.array_equal(b, rule(8, 300, torch.Generator().manual_seed(7)))
    torch.manual_seed(3)
    c = rule(8, 300)
    torch.manual_seed(3)
    assert np.array_equal(c, rule(8, 300))
    # Different seeds give different draws (on 300 frames a collision of all 8 is practically impossible).
    assert not np.array_equal(a, rule(8, 300, np.random.default_rng(8)))


@pytest.mark.parametrize("rule", ["tsn", "sparse_train", "sparse_test", "rand", "middle"])
@pytest.mark.parametrize("video_length", [1, 5, 8, 9, 64, 1000])
def test_every_rule_returns_valid_int64_indices(rule, video_length):
    indices = sample_indices(rule, 8, video_length, generator=np.random.default_rng(0))
    assert indices.dtype == np.int64 and indices.shape == (8,)
    assert indices.min() >= 0 and indices.max() < video_length
    assert (np.diff(indices) >= 0).all()


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="video_length"):
        sparse_test_indices(8, 0)
    with pytest.raises(ValueError, match="num_frames"):
        tsn_indices(0, 10)
    with pytest.raises(ValueError, match="clip_index"):
        sparse_test_indices(8, 100, clip_index=4, num_clips=4)
    with pytest.raises(ValueError, match="rule"):
        sample_indices("uniform", 8, 100)
    with pytest.raises(ValueError, match="generator"):
        rand_indices(8, 100, generator=42)
