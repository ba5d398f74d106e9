"""Batching decoded samples: the last step of the data flow, shared by every stage and task.

`VideoCollator` stacks every tensor key and keeps a list for everything else, so boxes, questions and answers reach
the trainer beside `pixel_values`. Which keys a batch has is decided from the whole batch: a key that some samples
carry and others lack is an error naming the key, never a silently dropped column.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .video_io import VideoDecodeError

__all__ = ["BATCH_NAMES", "VideoCollator"]

# Sample key -> batch key, as the models and the HF Trainer name their inputs.
BATCH_NAMES = {"label": "labels", "caption": "captions", "id": "ids"}


def _stack(values: list) -> Any:
    """Equal-shaped tensors / arrays -> one stacked tensor; numbers -> a tensor; anything else -> the list."""
    if all(isinstance(v, (torch.Tensor, np.ndarray)) for v in values):
        tensors = [torch.as_tensor(v) for v in values]
        if all(t.shape == tensors[0].shape for t in tensors):
            return torch.stack(tensors)
        return tensors  # e.g. a different number of boxes per sample
    if all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values):
        integral = all(isinstance(v, numbers.Integral) for v in values)
        return torch.as_tensor(np.array(values), dtype=torch.long if integral else torch.float32)
    return list(values)


class VideoCollator:
    """Batch decoded samples for a DataLoader or the HF Trainer.

    Every key of the samples goes into the batch, renamed by `names` (default `BATCH_NAMES`: label -> labels,
    caption -> captions, id -> ids): equal-shaped tensors are stacked (`pixel_values`: float32 (B, T, C, H, W)),
    numbers become a tensor (int64 for integers: `labels` (B,)), and everything else (captions, boxes of varying
    count, questions) stays a list of B. A key whose value is None in every sample is left out. Samples whose
    `pixel_values` is None (a failed `VideoClipDecoder.__call__` used directly) are dropped; `decode_videos`
    datasets never produce them.

    Args:
        names: sample key -> batch key.
        required: sample keys every sample must carry (e.g. ("label",) for fine-tuning), so a batch whose samples
            all lack one is an error, never a batch without it.

    Raises:
        VideoDecodeError: every sample of the batch had failed to decode.
        ValueError: some samples of the batch have a key that others lack, or a `required` key is missing (the
            message names the key).
    """

    def __init__(self, names: Mapping[str, str] | None = None, required: Sequence[str] = ()):
        self.names = dict(BATCH_NAMES if names is None else names)
        self.required = tuple(required)

    def __call__(self, examples: Sequence[dict]) -> dict[str, Any]:
        good = [example for example in examples if example.get("pixel_values") is not None]
        if not good:
            raise VideoDecodeError(f"<batch of {len(examples)}>", "every clip of this batch failed to decode")
        keys = list(dict.fromkeys(key for example in good for key in example))  # first-seen order, whole batch
        for key in self.required:
            missing = [i for i, example in enumerate(good) if example.get(key) is None]
            if missing:
                raise ValueError(f"key {key!r} is required but missing (or None) in samples {missing[:5]} of this "
                                 f"batch of {len(good)}")
        batch: dict[str, Any] = {}
        for key in keys:
            missing = [i for i, example in enumerate(good) if example.get(key) is None]
            if len(missing) == len(good):
                continue
            if missing:
                raise ValueError(
                    f"key {key!r} is in {len(good) - len(missing)} of the {len(good)} samples of this batch but "
                    f"missing (or None) in samples {missing[:5]}; every sample must carry it or none"
                )
            batch[self.names.get(key, key)] = _stack([example[key] for example in good])
        return batch
