"""Frame-index rules of the official UMT data pipelines (reference/official_umt.md §6).

Every function is pure: it maps (num_frames, video_length[, clip]) and, for the random rules, a generator
to an int64 numpy array of 0-based frame indices of length `num_frames` (the multi-clip helper returns
(num_clips, num_frames)). Indices are always valid for the video: 0 <= index < video_length.

Randomness: pass a `numpy.random.Generator` or a `torch.Generator` for reproducible draws. With None the
draws come from torch's global generator, which DataLoader seeds differently in every worker and
`transformers.set_seed` seeds for the whole run -- unlike numpy's global state, which forked workers share.

| rule                   | official source (all under the official repository)          | used for               |
|------------------------|--------------------------------------------------------------|------------------------|
| `tsn_indices`          | single_modality/datasets/mae.py `_sample_train_indices`      | Stage-1 pre-training   |
| `sparse_train_indices` | single_modality/datasets/kinetics_sparse.py `_get_seq_frames` | fine-tuning, train     |
| `sparse_test_indices`  | the same, with a clip index                                   | fine-tuning, val / test |
| `rand_indices`         | multi_modality/dataset/video_utils.py `get_frame_indices`    | Stage-2 training       |
| `middle_indices`       | the same, sample="middle"                                     | Stage-2 evaluation     |
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = [
    "SAMPLING_RULES",
    "Generator",
    "middle_indices",
    "multi_clip_indices",
    "rand_indices",
    "sample_indices",
    "sparse_test_indices",
    "sparse_train_indices",
    "tsn_indices",
]

Generator = Union[np.random.Generator, torch.Generator, None]

SAMPLING_RULES = ("tsn", "sparse_train", "sparse_test", "rand", "middle")


def _check_lengths(num_frames: int, video_length: int) -> None:
    for name, value in (("num_frames", num_frames), ("video_length", video_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _integers(low: np.ndarray, high: np.ndarray, generator: Generator) -> np.ndarray:
    """One uniform integer in [low[i], high[i]) for each i (high > low elementwise)."""
    low, high = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)
    if isinstance(generator, np.random.Generator):
        return generator.integers(low, high).astype(np.int64)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a numpy.random.Generator, a torch.Generator or None, got {type(generator).__name__}"
        )
    # float64 uniforms are exact enough for any frame count below 2**52.
    uniform = torch.rand(low.shape, dtype=torch.float64, generator=generator).numpy()
    return np.minimum(low + np.floor(uniform * (high - low)).astype(np.int64), high - 1)


def _permutation(n: int, generator: Generator) -> np.ndarray:
    if isinstance(generator, np.random.Generator):
        return generator.permutation(n).astype(np.int64)
    return torch.randperm(n, generator=generator).numpy().astype(np.int64)


def tsn_indices(num_frames: int, video_length: int, generator: Generator = None) -> np.ndarray:
    """Stage-1 pre-training: TSN sparse sampling, one random frame per equal segment (official_umt.md §6.1).

    `avg = video_length // num_frames`; frame i is `i * avg + randint(avg)`. When the video is shorter than
    `num_frames` (avg == 0) every index is 0, as in the official code. (The official code's other fallback,
    sorted random draws, needs `video_length > num_frames` together with avg == 0, which cannot happen in
    sparse mode where the skip length is 1, so it is never taken.)

    Returns:
        int64 array (num_frames,), non-decreasing.
    """
    _check_lengths(num_frames, video_length)
    average = video_length // num_frames
    if average == 0:
        return np.zeros(num_frames, dtype=np.int64)
    starts = np.arange(num_frames, dtype=np.int64) * average
    return starts + _integers(np.zeros(num_frames), np.full(num_frames, average), generator)


def _segment_bounds(num_frames: int, video_length: int) -> tuple[np.ndarray, float]:
    # seg = (len - 1) / clip_len; segment i spans [round(seg*i), round(seg*(i+1))]. np.round rounds half to
    # even, as the official `int(np.round(...))` does -- Python's round() would agree, math.floor(x+.5) not.
    segment = max(0.0, float(video_length - 1) / num_frames)
    starts = np.round(segment * np.arange(num_frames + 1)).astype(np.int64)
    return starts, segment


def sparse_train_indices(num_frames: int, video_length: int, generator: Generator = None) -> np.ndarray:
    """Stage-1 fine-tuning, training: one random frame in each of `num_frames` segments (official_umt.md §6.2).

    With `seg = (video_length - 1) / num_frames`, frame i is `randint(round(seg*i), round(seg*(i+1)))`, both ends
    included, clipped to `video_length - 1`.

    Returns:
        int64 array (num_frames,), non-decreasing.
    """
    _check_lengths(num_frames, video_length)
    bounds, _ = _segment_bounds(num_frames, video_length)
    drawn = _integers(bounds[:-1], bounds[1:] + 1, generator)  # randint(a, b) includes b
    return np.minimum(drawn, video_length - 1)


def sparse_test_indices(num_frames: int, video_length: int, clip_index: int = 0, num_clips: int = 1) -> np.ndarray:
    """Stage-1 fine-tuning, validation and multi-view test: clip `clip_index` of `num_clips` (official_umt.md §6.2).

    Frame i is `round(seg*i) + int(seg / (num_clips + 1) * (clip_index + 1))`, clipped to `video_length - 1`,
    with `seg = (video_length - 1) / num_frames`. Validation is clip 0 of 1 (the middle of each segment).

    Returns:
        int64 array (num_frames,), non-decreasing.
    """
    _check_lengths(num_frames, video_length)
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
    if not isinstance(clip_index, (int, np.integer)) or not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index must be an integer in [0, {num_clips}), got {clip_index!r}")
    bounds, segment = _segment_bounds(num_frames, video_length)
    shift = int(segment / (num_clips + 1) * (clip_index + 1))
    return np.minimum(bounds[:-1] + shift, video_length - 1)


def _interval_ranges(num_frames: int, video_length: int) -> tuple[np.ndarray, np.ndarray]:
    # min(T, vlen) intervals with integer edges linspace(0, vlen, n + 1).astype(int); each range is
    # (edge_i, edge_{i+1} - 1) as in the official code.
    count = min(num_frames, video_length)
    edges = np.linspace(0, video_length, num=count + 1).astype(np.int64)
    return edges[:-1], edges[1:] - 1


def _pad_with_last(indices: np.ndarray, num_frames: int) -> np.ndarray:
    if len(indices) < num_frames:  # short video: repeat the last index, as the official code does
        indices = np.concatenate([indices, np.full(num_frames - len(indices), indices[-1], dtype=np.int64)])
    return indices


def rand_indices(num_frames: int, video_length: int, generator: Generator = None) -> np.ndarray:
    """Stage-2 training ("rand"): one random frame per interval (official_umt.md §6.3).

    The video is cut into `min(num_frames, video_length)` intervals `[start, end)` with
    `linspace(0, video_length, n + 1).astype(int)`, and frame i is drawn from `range(start, end - 1)` -- the
    official `end - 1` is an exclusive bound, so the last frame of each interval is never drawn. If some
    interval is too short for that (end - start <= 1), the official code falls back to the sorted first n of a
    random permutation of all frames. Short videos are padded with their last index up to `num_frames`.

    Returns:
        int64 array (num_frames,), non-decreasing.
    """
    _check_lengths(num_frames, video_length)
    starts, ends = _interval_ranges(num_frames, video_length)
    if np.all(ends > starts):
        indices = _integers(starts, ends, generator)  # range(start, end - 1) with end - 1 == ends here
    else:
        indices = np.sort(_permutation(video_length, generator)[: len(starts)])
    return _pad_with_last(indices, num_frames)


def middle_indices(num_frames: int, video_length: int) -> np.ndarray:
    """Stage-2 evaluation ("middle"): frame `(start + end - 1) // 2` of each interval (official_umt.md §6.3).

    Intervals as in `rand_indices`; short videos are padded with their last index.

    Returns:
        int64 array (num_frames,), non-decreasing.
    """
    _check_lengths(num_frames, video_length)
    starts, ends = _interval_ranges(num_frames, video_length)
    return _pad_with_last((starts + ends) // 2, num_frames)


def multi_clip_indices(num_frames: int, video_length: int, num_clips: int) -> np.ndarray:
    """All `num_clips` temporal test views of `sparse_test_indices`.

    Returns:
        int64 array (num_clips, num_frames); row c is clip c.
    """
    return np.stack([sparse_test_indices(num_frames, video_length, c, num_clips) for c in range(num_clips)])


def sample_indices(
    rule: str,
    num_frames: int,
    video_length: int,
    generator: Generator = None,
    clip_index: int = 0,
    num_clips: int = 1,
) -> np.ndarray:
    """Dispatch to a rule by name: "tsn", "sparse_train", "sparse_test", "rand" or "middle".

    `generator` is used by the random rules, `clip_index` / `num_clips` by "sparse_test".

    Returns:
        int64 array (num_frames,).
    """
    if rule == "tsn":
        return tsn_indices(num_frames, video_length, generator)
    if rule == "sparse_train":
        return sparse_train_indices(num_frames, video_length, generator)
    if rule == "sparse_test":
        return sparse_test_indices(num_frames, video_length, clip_index, num_clips)
    if rule == "rand":
        return rand_indices(num_frames, video_length, generator)
    if rule == "middle":
        return middle_indices(num_frames, video_length)
    raise ValueError(f"rule must be one of {SAMPLING_RULES}, got {rule!r}")
