"""Decoding: one sample dict in, one model-ready sample dict out, for every stage and every source.

A record from any source (`processors.datasets`, `processors.video_text`) is a dict with a `video` field (a path,
URL, bytes, `{"bytes", "path"}` dict or already-decoded frames) and any other keys (label, caption, id, boxes,
questions, ...). `VideoClipDecoder` opens the video, samples frame indices with a `processors.sampling` rule, decodes
them and runs a transform on the whole sample; every key other than `video` travels through unchanged, so
annotations stay beside their pixels. Images are 1-frame videos (`ImageClipDecoder`), and the multi-view test of
fine-tuning (`MultiViewClipDecoder`) is the same decoder with several clips and a view-making transform.

`decode_videos(records, decoder)` attaches decoding lazily to a 🤗 datasets object. A sample whose video cannot be
decoded (`VideoDecodeError`) is skipped: the iterable path filters it out; the map-style path serves a random other
row in its place (as the official loaders do), so indexing stays total and batches stay full. `DecodeStats` counts
skips across DataLoader workers, logs a running total with every skip, and raises `TooManyDecodeFailures` once more
than `max_bad_fraction` of at least `min_samples` attempts failed -- broken data stops the run instead of training on
the few clips that happen to decode.

Seeded decoding: with `seed=`, each sample's frame sampling and augmentation draw from a generator seeded by
(seed, epoch, sample index), so a clip looks the same whichever process, worker or resumed run decodes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Union

import datasets
import numpy as np
import torch

from .sampling import SAMPLING_RULES, sample_indices
from .transforms import ClipTransform, EvalTransform, SampleTransform
from .video_io import (
    DEFAULT_URL_DEADLINE, DEFAULT_URL_MAX_BYTES, DEFAULT_URL_RETRIES, DEFAULT_URL_TIMEOUT, VideoDecodeError, VideoReader,
    describe_source,
)

logger = logging.getLogger(__name__)

__all__ = [
    "INDEX_COLUMN",
    "ROW_SKIP_REASONS",
    "DecodeStats",
    "ImageClipDecoder",
    "MultiViewClipDecoder",
    "PreloadedVideoClips",
    "TooManyDecodeFailures",
    "VideoClipDecoder",
    "decode_videos",
]

INDEX_COLUMN = "__index__"  # the sample index a seeded VideoClipDecoder derives its per-sample generator from
_NOT_PASSED = ("video", INDEX_COLUMN)  # record keys the decoder consumes; every other key travels on

Records = Union[datasets.Dataset, datasets.IterableDataset]

# Why a table row is skipped before decoding (`processors.rows.RowCheck`), counted beside decode failures.
ROW_SKIP_REASONS = ("missing video", "missing caption", "missing label", "label not an integer", "label out of range",
                    "unknown class name",
                    # lines of the AVA CSVs (processors.detection)
                    "wrong column count", "missing value", "bad number", "bad box")
DECODE_FAILED = "video failed to decode"


class TooManyDecodeFailures(RuntimeError):
    """More than the allowed fraction of samples failed to decode: the data is mostly broken."""


class DecodeStats:
    """Decoded / skipped counters shared by the main process and every DataLoader worker.

    Each process writes only its own row of a shared-memory tensor (row 0: the main process, row 1 + id: a
    worker), so no lock is needed and the counts survive fork and spawn alike; totals sum the rows. Besides decode
    failures it counts table rows skipped before decoding, by reason (`ROW_SKIP_REASONS`, `record_row_skip`);
    `summary()` is the one line every script ends with: "decoded N, skipped M (reason: count, ...)".

    Args:
        max_bad_fraction: raise `TooManyDecodeFailures` when skipped / attempted exceeds this...
        min_samples: ...once at least this many samples were attempted (a few early failures are noise).
    """

    MAX_PROCESSES = 257

    def __init__(self, max_bad_fraction: float = 0.5, min_samples: int = 16):
        if not 0 <= max_bad_fraction <= 1:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        self.max_bad_fraction = max_bad_fraction
        self.min_samples = min_samples
        # [decoded, skipped (decode failures), served by a substitute, one column per ROW_SKIP_REASONS entry]
        self._counts = torch.zeros(self.MAX_PROCESSES, 3 + len(ROW_SKIP_REASONS), dtype=torch.int64).share_memory_()

    @staticmethod
    def _row() -> int:
        worker = torch.utils.data.get_worker_info()
        return 0 if worker is None else 1 + worker.id % (DecodeStats.MAX_PROCESSES - 1)

    @property
    def num_decoded(self) -> int:
        """Samples decoded so far, all processes together."""
        return int(self._counts[:, 0].sum())

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far because their video failed to decode, all processes together."""
        return int(self._counts[:, 1].sum())

    @property
    def num_rows_skipped(self) -> int:
        """Table rows skipped before decoding (bad label, missing caption, ...), all processes together."""
        return int(self._counts[:, 3:].sum())

    def skipped_by_reason(self) -> dict[str, int]:
        """{reason: count} of every skip so far (decode failures under "video failed to decode"), zeros left out."""
        counts = self._counts.sum(0).tolist()
        pairs = [(DECODE_FAILED, counts[1]), *zip(ROW_SKIP_REASONS, counts[3:])]
        return {reason: int(count) for reason, count in pairs if count}

    def summary(self) -> str:
        """One line: "decoded N, skipped M (reason: count, ...)"."""
        reasons = self.skipped_by_reason()
        detail = f" ({', '.join(f'{reason}: {count}' for reason, count in reasons.items())})" if reasons else ""
        return f"decoded {self.num_decoded}, skipped {sum(reasons.values())}{detail}"

    def record_row_skip(self, reason: str, message: str, log: bool = True) -> None:
        """Count one table row skipped before decoding for `reason` (one of `ROW_SKIP_REASONS`); log `message`."""
        if reason not in ROW_SKIP_REASONS:
            raise ValueError(f"reason must be one of {ROW_SKIP_REASONS}, got {reason!r}")
        self._counts[self._row(), 3 + ROW_SKIP_REASONS.index(reason)] += 1
        if log:
            logger.warning("skipped a row: %s", message)

    def record_substitute(self) -> None:
        """A skipped sample was served by a random substitute (map-style datasets): the substitute is counted as
        decoded, and is left out of the attempts the bad fraction is measured on."""
        self._counts[self._row(), 2] += 1

    def record_substitute_failure(self, error: Exception) -> None:
        """A random substitute for an already skipped row failed too: logged, not counted as another skip."""
        logger.warning("a substitute sample failed to decode too (not counted as another skip): %s", error)

    def reset(self) -> None:
        """Zero the counters (e.g. between an evaluation and the next)."""
        self._counts.zero_()

    def record_success(self) -> None:
        """Count one decoded sample."""
        self._counts[self._row(), 0] += 1

    def record_failure(self, error: Exception) -> None:
        """Count one skipped sample, log it with the running total, and stop if the data is mostly broken.

        `error` (usually a VideoDecodeError) should name the source; it is logged as is.
        """
        self._counts[self._row(), 1] += 1
        skipped = self.num_skipped
        attempted = self.num_decoded + skipped - int(self._counts[:, 2].sum())  # samples asked for
        logger.warning("skipped a sample: %s (%d of %d samples skipped so far)", error, skipped, attempted)
        if attempted >= self.min_samples and skipped / attempted > self.max_bad_fraction:
            raise TooManyDecodeFailures(
                f"{skipped} of {attempted} samples failed to decode ({skipped / attempted:.0%}), more than "
                f"max_bad_fraction={self.max_bad_fraction:.0%}; the data looks broken. Last failure: {error}"
            )

    def __repr__(self) -> str:
        return f"DecodeStats({self.summary()})"


class VideoClipDecoder:
    """Decode one record into a model-ready sample: open -> sample frame indices -> decode -> transform.

    Args:
        num_frames: frames per clip (T).
        sampling: a `processors.sampling` rule: "tsn" (Stage-1 pre-training), "sparse_train" (fine-tuning),
            "sparse_test" (evaluation), "rand" (Stage-2 training), "middle" (Stage-2 evaluation).
        transform: a clip transform, uint8 (T, 3, H, W) [, generator] -> float32 (T, 3, H', W') such as
            `Stage1TrainTransform(224)` (applied to `pixel_values` by a `ClipTransform`), or a
            `SampleTransform` that receives the whole sample (to move boxes with the crop); default
            `EvalTransform(224)`.
        backend: "auto" (decord, then PyAV), "decord", "pyav" or "image" (still images as 1-frame videos).
        url_timeout, url_retries, url_deadline, url_max_bytes: for http(s) sources, each socket read's timeout, the
            retries (with exponential back-off), the whole download's deadline in seconds and its size cap in bytes
            (`processors.video_io.fetch_url`); a download past either is a failed sample like any unreadable video.
        stats: counters for skipped samples; a new `DecodeStats()` by default (read it back as `.stats`).
        seed: when set, each sample's frame sampling and augmentation draw from a generator seeded by
            (seed, epoch, sample index) instead of the global one; `set_epoch` moves to the next epoch's draws.
            `decode_videos` adds the sample index column this needs.
        num_clips: temporal test views: clip c of `num_clips` with the "sparse_test" rule, decoded one after the
            other along the frame axis (num_clips * T frames) for a view-making transform.

    Call on one record (dict with "video" and any other keys) -> the same dict without "video", with
    "pixel_values": the transformed clip, or None when the video failed to decode (counted in `stats`).
    """

    def __init__(
        self,
        num_frames: int = 8,
        sampling: str = "sparse_test",
        transform: Callable | SampleTransform | None = None,
        backend: str = "auto",
        stats: DecodeStats | None = None,
        url_timeout: float = DEFAULT_URL_TIMEOUT,
        url_retries: int = DEFAULT_URL_RETRIES,
        url_deadline: float = DEFAULT_URL_DEADLINE,
        url_max_bytes: int = DEFAULT_URL_MAX_BYTES,
        seed: int | None = None,
        num_clips: int = 1,
    ):
        if sampling not in SAMPLING_RULES:
            raise ValueError(f"sampling must be one of {SAMPLING_RULES}, got {sampling!r}")
        for name, value in (("num_frames", num_frames), ("num_clips", num_clips)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_clips > 1 and sampling != "sparse_test":
            raise ValueError(f"num_clips={num_clips} needs sampling='sparse_test' (the multi-clip test), got {sampling!r}")
        self.num_frames, self.sampling, self.backend, self.num_clips = num_frames, sampling, backend, num_clips
        self.transform = transform if transform is not None else EvalTransform(224)
        self.sample_transform = (
            self.transform if isinstance(self.transform, SampleTransform) else ClipTransform(self.transform)
        )
        self.stats = stats if stats is not None else DecodeStats()
        self.url_timeout, self.url_retries = url_timeout, url_retries
        self.url_deadline, self.url_max_bytes = url_deadline, url_max_bytes
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s per-sample draws (only matters with a `seed`)."""
        self.epoch = int(epoch)

    def generator_for(self, index: Any) -> torch.Generator | None:
        """The per-sample generator for sample `index` in the current epoch, or None (global RNG) without a seed."""
        if self.seed is None or index is None:
            return None
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, int(index))) % (2**63))

    def open(self, video: Any) -> VideoReader:
        """A `VideoReader` on one record's video field (datasets' `{"bytes", "path"}` dicts included)."""
        source = video.get("bytes") or video.get("path") if isinstance(video, dict) else video
        if source is None:
            raise VideoDecodeError(describe_source(video), "the record has neither bytes nor a path")
        return VideoReader(source, self.backend, timeout=self.url_timeout, retries=self.url_retries,
                           deadline=self.url_deadline, max_bytes=self.url_max_bytes)

    def frame_indices(self, video_length: int, generator: torch.Generator | None = None) -> np.ndarray:
        """Frame indices of one sample: (num_clips * num_frames,), clip 0's first."""
        return np.concatenate(
            [
                sample_indices(self.sampling, self.num_frames, video_length, generator, clip, self.num_clips)
                for clip in range(self.num_clips)
            ]
        )

    def read(self, video: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """One video field -> the sampled frames, uint8 (num_clips * T, 3, H, W). Raises VideoDecodeError."""
        try:
            with self.open(video) as reader:
                return reader.get_frames(self.frame_indices(reader.num_frames, generator))
        except VideoDecodeError as error:
            if isinstance(video, dict) and video.get("bytes") and video.get("path"):
                # In-memory bytes are described as "<N bytes>"; the member name says which sample it was.
                raise VideoDecodeError(f"{video['path']!r} ({error.source})", error.cause) from error
            raise

    def decode_sample(self, record: dict, generator: torch.Generator | None = None) -> dict:
        """One record -> its sample: every key but "video" (and the index column) kept, "pixel_values" added and
        the transform applied to the whole sample. Raises VideoDecodeError when the video cannot be read."""
        sample = {key: value for key, value in record.items() if key not in _NOT_PASSED}
        sample["pixel_values"] = self.read(record["video"], generator)
        return self.sample_transform(sample, generator)

    def decode(self, video: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """One video field -> its transformed clip (`pixel_values` of `decode_sample`)."""
        return self.decode_sample({"video": video}, generator)["pixel_values"]

    def __call__(self, record: dict) -> dict:
        try:
            sample = self.decode_sample(record, self.generator_for(record.get(INDEX_COLUMN)))
        except VideoDecodeError as error:
            self.stats.record_failure(error)
            sample = {key: value for key, value in record.items() if key not in _NOT_PASSED}
            sample["pixel_values"] = None
        else:
            self.stats.record_success()
        return sample


class ImageClipDecoder(VideoClipDecoder):
    """A `VideoClipDecoder` for still images: each image is a 1-frame video, -> float32 (1, 3, H', W').

    Same decoding, seeding and failure counting as videos (`backend="image"`, `num_frames=1`).
    """

    def __init__(self, transform: Callable | SampleTransform, **kwargs: Any):
        super().__init__(num_frames=1, sampling="middle", transform=transform, backend="image", **kwargs)


class _ProcessorViews:
    """Clip transform of the multi-view test: `processor.views(...)`, (V, T, 3, H, W); squeezed when V is 1."""

    def __init__(self, processor: Any, num_temporal_clips: int, num_spatial_crops: int, squeeze_single_view: bool):
        self.processor, self.clips, self.crops = processor, num_temporal_clips, num_spatial_crops
        self.squeeze_single_view = squeeze_single_view

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        views = self.processor.views(video, self.clips, self.crops)
        return views[0] if self.squeeze_single_view and views.shape[0] == 1 else views


class MultiViewClipDecoder(VideoClipDecoder):
    """Decode one record into evaluation views with a `UMTVideoProcessor` (official multi-view test, §6.2).

    The same decoder as training: `num_temporal_clips` clips sampled with the processor's frame rule, decoded in one
    read, then `processor.views` (its size / crop / normalisation) makes clips x crops views.

    Args:
        processor: the `UMTVideoProcessor` that will be saved with the model.
        num_frames: frames per clip (T).
        num_temporal_clips, num_spatial_crops: views per video, V = clips x crops (4 x 3 for Kinetics).
        squeeze_single_view: with V = 1, give (T, 3, H, W) instead of (1, T, 3, H, W).
        kwargs: `VideoClipDecoder`'s (stats, backend, ...).

    `decode(video)` -> float32 (V, T, 3, H, W), views clip-major as `UMTVideoProcessor` orders them. Batches from
    `VideoCollator` are then (B, V, T, 3, H, W), which `UMTFineTuningTrainer` evaluates by averaging the per-view
    softmax.
    """

    def __init__(
        self,
        processor: Any,
        num_frames: int = 8,
        num_temporal_clips: int = 1,
        num_spatial_crops: int = 1,
        squeeze_single_view: bool = True,
        **kwargs: Any,
    ):
        for name, value in (("num_temporal_clips", num_temporal_clips), ("num_spatial_crops", num_spatial_crops)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        views = _ProcessorViews(processor, num_temporal_clips, num_spatial_crops, squeeze_single_view)
        sampling = getattr(processor, "frame_sampling", "sparse_test")
        super().__init__(num_frames, sampling, views, num_clips=num_temporal_clips, **kwargs)
        self.processor = processor
        self.num_temporal_clips, self.num_spatial_crops = num_temporal_clips, num_spatial_crops

    @property
    def num_views(self) -> int:
        return self.num_temporal_clips * self.num_spatial_crops


class _DecodeOrSubstitute:
    """`with_transform` function of a map-style dataset: decode each row; replace a broken one by a random other.

    Replacing, as the official loaders do, keeps indexing total and batches full, so `len()` and epoch-based
    schedules stay valid. The asked-for row that fails is counted (and can stop the run) in the decoder's
    `DecodeStats`; a substitute that fails too is logged but not counted again, so skips count broken rows served.
    """

    MAX_CONSECUTIVE_FAILURES = 100

    def __init__(self, decoder: VideoClipDecoder, records: datasets.Dataset):
        self.decoder, self.records = decoder, records

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [{key: values[i] for key, values in batch.items()} for i in range(len(batch["video"]))]
        decoded = [self._decode(row) for row in rows]
        return {key: [out[key] for out in decoded] for key in decoded[0]}

    def _decode(self, row: dict) -> dict:
        generator = self.decoder.generator_for(row.get(INDEX_COLUMN))
        for attempt in range(self.MAX_CONSECUTIVE_FAILURES):
            try:
                sample = self.decoder.decode_sample(row, generator)
            except VideoDecodeError as error:
                if attempt == 0:
                    self.decoder.stats.record_failure(error)
                else:
                    self.decoder.stats.record_substitute_failure(error)
                # Without a seed: torch's global generator, seeded per DataLoader worker and by transformers.set_seed.
                row = self.records[int(torch.randint(len(self.records), (1,), generator=generator).item())]
                continue
            self.decoder.stats.record_success()
            if attempt:
                self.decoder.stats.record_substitute()
            return sample
        raise TooManyDecodeFailures(
            f"{self.MAX_CONSECUTIVE_FAILURES} videos in a row failed to decode; the data looks broken "
            f"({self.decoder.stats})"
        )


def decode_videos(records: Records, decoder: VideoClipDecoder) -> Records:
    """Attach lazy decoding to records from any source (`processors.datasets`, `processors.video_text`).

    IterableDataset (streaming): `map(decoder)` then a filter, so iteration yields exactly the clips that decode
    and skips the rest. Map-style Dataset: `with_transform`; indexing decodes, and a row whose video fails is
    replaced by a random other row that decodes (as the official loaders do), so batches stay full and `len()`
    stays true. Either way every failure is counted and logged in `decoder.stats`. For an exact evaluation that
    must not repeat clips, iterate a streaming / `records.to_iterable_dataset()` version.

    Returns:
        a dataset of samples {"pixel_values": (T, 3, H, W) float32, every other column of the records}.
    """
    if isinstance(records, datasets.IterableDataset):
        consumed = ["video"]
        if decoder.seed is not None:
            records = records.map(lambda example, i: {INDEX_COLUMN: i}, with_indices=True)
            consumed.append(INDEX_COLUMN)
        decoded = records.map(decoder, remove_columns=consumed)
        return decoded.filter(lambda example: example["pixel_values"] is not None)
    if isinstance(records, datasets.Dataset):
        if len(records) == 0:
            raise ValueError("records is an empty dataset; there is nothing to decode")
        if decoder.seed is not None and INDEX_COLUMN not in records.column_names:
            records = records.add_column(INDEX_COLUMN, np.arange(len(records), dtype=np.int64))
        return records.with_transform(_DecodeOrSubstitute(decoder, records))
    raise ValueError(f"records must be a datasets.Dataset or IterableDataset, got {type(records).__name__}")


class PreloadedVideoClips(torch.utils.data.Dataset):
    """A map-style dataset that decodes every video of `records` once and keeps its frames in memory (uint8), then
    serves samples exactly as `decode_videos(records, decoder)` would: the same `decoder` samples and transforms the
    kept frames at every access, with its per-sample generator when it has a seed.

    For small datasets on CPU, where decoding every clip at every step costs more than the model (the synthetic
    evidence run). Memory: videos x frames x 3 x H x W bytes (4,000 clips of 16 frames at 32 px: 200 MB). Videos that
    fail to decode are counted in `decoder.stats` and left out.

    Item: {"pixel_values": float32 (T, 3, H', W'), every other column of the records}.
    """

    def __init__(self, records, decoder: VideoClipDecoder):
        self.decoder = decoder
        self.rows: list[dict] = []
        for row in records:
            try:
                with decoder.open(row["video"]) as reader:
                    frames = reader.get_frames(list(range(reader.num_frames)))
            except VideoDecodeError as error:
                decoder.stats.record_failure(error)
                continue
            decoder.stats.record_success()
            self.rows.append({**row, "video": frames})
        if not self.rows:
            raise ValueError("records holds no video that decodes; nothing to preload")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.decoder.decode_sample(self.rows[index], self.decoder.generator_for(index))
