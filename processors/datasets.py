"""Video dataset sources built on 🤗 datasets, decoded lazily, with broken samples skipped and counted.

Two steps, so any source meets any decoding recipe:

1. `load_video_records(source, ...)` (or one of the `records_from_*` functions) returns a `datasets.Dataset`
   (or `IterableDataset` with `streaming=True`) whose rows hold *undecoded* videos in canonical columns:
   `video` (a path / URL string, or a `{"bytes", "path"}` dict from a `Video(decode=False)` column), and
   `label` (int) and/or `caption` (str) when the source has them.
2. `decode_videos(records, VideoClipDecoder(...))` attaches decoding: `with_transform` for a map-style
   dataset (decoded when indexed), a lazy `map` + `filter` for an iterable one. `VideoCollator` turns decoded
   examples into {"pixel_values": (B, T, C, H, W), "labels": (B,)} and/or "captions" for a DataLoader or the
   HF Trainer (with `remove_unused_columns=False`, since the raw `video` column feeds the transform).

A sample whose video cannot be decoded (`VideoDecodeError`) is skipped: the iterable path filters it out;
the map-style path serves a random other row that decodes in its place (as the official loaders do), so
indexing stays total and batches stay full. `DecodeStats` counts skips across DataLoader workers, logs a
running total with every skip, and raises `TooManyDecodeFailures` once more than `max_bad_fraction` of at
least `min_samples` attempts failed -- broken data stops the run instead of training on the few clips that
happen to decode.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Union

import datasets
import numpy as np
import pyarrow.compute
import torch

from .sampling import SAMPLING_RULES, sample_indices
from .transforms import EvalTransform
from .video_io import VideoDecodeError, VideoReader, describe_source

logger = logging.getLogger(__name__)
INDEX_COLUMN = "__index__"  # the sample index a seeded VideoClipDecoder derives its per-sample generator from

__all__ = [
    "VIDEO_EXTENSIONS",
    "DecodeStats",
    "TooManyDecodeFailures",
    "VideoClipDecoder",
    "VideoCollator",
    "decode_videos",
    "load_video_records",
    "records_from_folder",
    "records_from_hub",
    "records_from_table",
    "records_from_webdataset",
]

Records = Union[datasets.Dataset, datasets.IterableDataset]

VIDEO_EXTENSIONS = ("mp4", "avi", "webm", "mkv", "mov", "m4v", "mpg", "mpeg", "flv", "wmv", "gif")
VIDEO_COLUMN_NAMES = (
    "video",
    "path",
    "video_path",
    "filepath",
    "file",
    "filename",
    "url",
    "video_url",
    *VIDEO_EXTENSIONS,
)
LABEL_COLUMN_NAMES = ("label", "labels", "cls", "class", "target", "label_id")
CAPTION_COLUMN_NAMES = ("caption", "captions", "text", "txt", "sentence", "description")


class TooManyDecodeFailures(RuntimeError):
    """More than the allowed fraction of samples failed to decode: the data is mostly broken."""


class DecodeStats:
    """Decoded / skipped counters shared by the main process and every DataLoader worker.

    Each process writes only its own row of a shared-memory tensor (row 0: the main process, row 1 + id: a
    worker), so no lock is needed and the counts survive fork and spawn alike; totals sum the rows.

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
        self._counts = torch.zeros(self.MAX_PROCESSES, 2, dtype=torch.int64).share_memory_()  # [decoded, skipped]

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
        skipped, attempted = self.num_skipped, self.num_decoded + self.num_skipped
        logger.warning("skipped a sample: %s (%d of %d samples skipped so far)", error, skipped, attempted)
        if attempted >= self.min_samples and skipped / attempted > self.max_bad_fraction:
            raise TooManyDecodeFailures(
                f"{skipped} of {attempted} samples failed to decode ({skipped / attempted:.0%}), more than "
                f"max_bad_fraction={self.max_bad_fraction:.0%}; the data looks broken. Last failure: {error}"
            )

    def __repr__(self) -> str:
        return f"DecodeStats(decoded={self.num_decoded}, skipped={self.num_skipped})"


# --------------------------------------------------------------------------------------------------
# Sources -> records with canonical columns
# --------------------------------------------------------------------------------------------------


def _pick(names: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, required: bool) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"{what}_column {wanted!r} is not a column of the data; columns are {list(names)}")
        return wanted
    lowered = {name.lower(): name for name in names}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    if required:
        raise ValueError(f"cannot find the {what} column among {list(names)}; pass {what}_column=")
    return None


def _column_names(records: Records) -> list[str]:
    if records.column_names is not None:
        return list(records.column_names)
    return list(next(iter(records)).keys())  # an iterable dataset of unknown features: peek at one row


def _canonical(
    records: Records,
    video_column: str | None,
    label_column: str | None,
    caption_column: str | None,
    resolve: Callable[[str], str] | None = None,
) -> Records:
    """Rename the chosen columns to video / label / caption and drop the rest.

    Nested fields (webdataset's `json` member) are reached with dotted names, e.g. label_column="json.label".
    """
    names = _column_names(records)
    nested = records.features if records.features is not None else next(iter(records))  # a row when unknown
    names += [f"{key}.{sub}" for key, value in nested.items() if isinstance(value, dict) for sub in value]
    video = _pick(names, video_column, VIDEO_COLUMN_NAMES, "video", required=True)
    label = _pick(
        names, label_column, LABEL_COLUMN_NAMES + tuple(f"json.{n}" for n in LABEL_COLUMN_NAMES), "label", False
    )
    caption = _pick(
        names, caption_column, CAPTION_COLUMN_NAMES + tuple(f"json.{n}" for n in CAPTION_COLUMN_NAMES), "caption", False
    )
    chosen = {"video": video, "label": label, "caption": caption}
    chosen = {new: old for new, old in chosen.items() if old is not None}

    def get(row: dict, name: str) -> Any:
        if name in row:
            return row[name]
        outer, inner = name.split(".", 1)
        return row[outer][inner]

    if isinstance(records, datasets.IterableDataset) or resolve is not None:

        def to_canonical(row: dict) -> dict:
            out = {new: get(row, old) for new, old in chosen.items()}
            if resolve is not None and isinstance(out["video"], str):
                out["video"] = resolve(out["video"])
            return out

        original = _column_names(records)
        return records.map(to_canonical, remove_columns=[c for c in original if c not in chosen])
    for new, old in chosen.items():
        if old not in records.column_names:  # a nested field such as json.label: lift it into its own column
            outer, inner = old.split(".", 1)
            values = pyarrow.compute.struct_field(records.data.column(outer).combine_chunks(), inner)
            records = records.add_column(new, values.to_pylist())
            chosen[new] = new
    records = records.select_columns(list(chosen.values()))
    return records.rename_columns({old: new for new, old in chosen.items() if old != new})


def _resolver(base_dir: str) -> Callable[[str], str]:
    def resolve(path: str) -> str:
        if path.startswith(("http://", "https://")) or os.path.isabs(path):
            return path
        return os.path.join(base_dir, path)

    return resolve


def _filter_split(records: Records, split: str | None, split_column: str) -> Records:
    if split is None:
        return records
    names = _column_names(records)
    if split_column not in names:
        raise ValueError(
            f"split={split!r} was asked for but the data has no {split_column!r} column; columns are {names}"
        )
    return records.filter(lambda row: row[split_column] == split)


def records_from_table(
    path: str | os.PathLike,
    split: str | None = None,
    streaming: bool = False,
    video_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
    column_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    split_column: str = "split",
    cache_dir: str | None = None,
) -> Records:
    """Records from a CSV (.csv / .tsv / .txt) or JSON Lines (.jsonl / .json) table of videos.

    Relative video paths are resolved against the table's folder; http(s) URLs are kept.

    Args:
        path: the table file.
        split: keep only rows whose `split_column` equals this (e.g. the synthetic dataset's "train").
        column_names: for header-less CSVs, the column names in order, e.g. ("video", "label") for the official
            `path label` lists (with delimiter=" ").
        delimiter: CSV separator; default "," (tab for .tsv).
        cache_dir: where datasets writes its Arrow cache (map-style only).
    Returns:
        Dataset (or IterableDataset when streaming) with columns video, [label], [caption].
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path {path!r} is not a file; expected a .csv, .tsv, .txt, .jsonl or .json table")
    extension = os.path.splitext(path)[1].lower()
    if extension in (".jsonl", ".json"):
        records = datasets.load_dataset(
            "json", data_files=path, split="train", streaming=streaming, cache_dir=cache_dir
        )
    elif extension in (".csv", ".tsv", ".txt"):
        options: dict[str, Any] = {"sep": delimiter or ("\t" if extension == ".tsv" else ",")}
        if column_names is not None:
            options.update(column_names=list(column_names), header=None)
        records = datasets.load_dataset(
            "csv", data_files=path, split="train", streaming=streaming, cache_dir=cache_dir, **options
        )
    else:
        raise ValueError(f"path {path!r} has extension {extension!r}; expected .csv, .tsv, .txt, .jsonl or .json")
    records = _filter_split(records, split, split_column)
    base_dir = os.path.dirname(os.path.abspath(path))
    return _canonical(records, video_column, label_column, caption_column, resolve=_resolver(base_dir))


def records_from_folder(
    root: str | os.PathLike, streaming: bool = False, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> Records:
    """Records from a folder with one sub-folder of videos per class: root/<class name>/<video>.

    Classes are the sorted sub-folder names; `label` is a `ClassLabel` whose `.names` give id -> name.

    Returns:
        Dataset (or IterableDataset when streaming) with columns video (absolute path), label.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"root {root!r} is not a directory; expected root/<class>/<video files>")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    suffixes = tuple(f".{ext.lower().lstrip('.')}" for ext in extensions)
    paths, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted(os.listdir(os.path.join(root, name))):
            if file.lower().endswith(suffixes):
                paths.append(os.path.join(root, name, file))
                labels.append(label)
    if not paths:
        raise ValueError(f"root {root!r} holds no video files ({', '.join(extensions)}) in class sub-folders")
    features = datasets.Features({"video": datasets.Value("string"), "label": datasets.ClassLabel(names=classes)})
    records = datasets.Dataset.from_dict({"video": paths, "label": labels}, features=features)
    return records.to_iterable_dataset() if streaming else records


def _undecoded(records: Records, video_column: str | None) -> Records:
    """Make the video column arrive as {"bytes", "path"} instead of being decoded by datasets (needs torchcodec)."""
    if isinstance(records, datasets.IterableDataset):
        return records.decode(False)
    for name, feature in records.features.items():
        if isinstance(feature, datasets.Video) and (video_column is None or name == video_column):
            records = records.cast_column(name, datasets.Video(decode=False))
    return records


def records_from_webdataset(
    shards: str | os.PathLike | Sequence[str | os.PathLike],
    streaming: bool = False,
    video_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
    cache_dir: str | None = None,
) -> Records:
    """Records from webdataset tar shards (members `<key>.mp4`, `<key>.json`, `<key>.txt`, `<key>.cls`, ...).

    The video member is read as raw bytes (`Video(decode=False)`) and decoded later by our decoder, so no
    torchcodec is needed. By default the label comes from `cls` or `json["label"]` and the caption from `txt` or
    `json["caption"]`.

    Args:
        shards: a tar path, a glob such as "data/train-*.tar", or a list of paths.
    Returns:
        Dataset (or IterableDataset when streaming) with columns video ({"bytes", "path"}), [label], [caption].
    """
    patterns = [os.fspath(shards)] if isinstance(shards, (str, os.PathLike)) else [os.fspath(s) for s in shards]
    files = sorted({file for pattern in patterns for file in glob.glob(pattern)})
    if not files:
        raise ValueError(f"shards {patterns!r} match no files; expected tar shards such as 'train-000000.tar'")
    records = datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", streaming=streaming, cache_dir=cache_dir
    )
    return _canonical(_undecoded(records, video_column), video_column, label_column, caption_column)


def records_from_hub(
    name: str,
    split: str = "train",
    streaming: bool = True,
    video_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
    **load_kwargs: Any,
) -> Records:
    """Records from a Hub dataset id (or a local folder `datasets.load_dataset` understands), streamed by default.

    Video features are read undecoded; `load_kwargs` go to `datasets.load_dataset` (e.g. `name=`, `revision=`).

    Returns:
        IterableDataset (Dataset when streaming=False) with columns video, [label], [caption].
    """
    records = datasets.load_dataset(name, split=split, streaming=streaming, **load_kwargs)
    return _canonical(_undecoded(records, video_column), video_column, label_column, caption_column)


def load_video_records(source: str | os.PathLike | Sequence[str], kind: str | None = None, **kwargs: Any) -> Records:
    """Records from any supported source; `kind` is inferred when None.

    kind: "table" (a .csv / .tsv / .txt / .jsonl / .json file), "folder" (a directory of class sub-folders),
    "webdataset" (a .tar, a glob of .tar files, a list of them, or a directory holding .tar shards) or "hub" (a
    dataset id). `kwargs` go to the matching `records_from_*` function.
    """
    kinds = ("table", "folder", "webdataset", "hub")
    if kind is None:
        if not isinstance(source, (str, os.PathLike)):
            kind = "webdataset"
        else:
            path = os.fspath(source)
            if os.path.isfile(path):
                kind = "webdataset" if path.endswith(".tar") else "table"
            elif os.path.isdir(path):
                kind = "webdataset" if glob.glob(os.path.join(path, "*.tar")) else "folder"
            elif glob.glob(path):
                kind = "webdataset"
            else:
                kind = "hub"
    if kind == "webdataset" and isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        source = os.path.join(os.fspath(source), "*.tar")
    if kind == "table":
        return records_from_table(source, **kwargs)
    if kind == "folder":
        return records_from_folder(source, **kwargs)
    if kind == "webdataset":
        return records_from_webdataset(source, **kwargs)
    if kind == "hub":
        return records_from_hub(os.fspath(source), **kwargs)
    raise ValueError(f"kind must be one of {kinds} or None, got {kind!r}")


# --------------------------------------------------------------------------------------------------
# Decoding and batching
# --------------------------------------------------------------------------------------------------


class VideoClipDecoder:
    """Decode one record's video into a model-ready clip: read -> sample `num_frames` -> transform.

    Args:
        num_frames: frames per clip (T).
        sampling: a `processors.sampling` rule: "tsn" (Stage-1 pre-training), "sparse_train" (fine-tuning),
            "sparse_test" (evaluation), "rand" (Stage-2 training), "middle" (Stage-2 evaluation).
        transform: uint8 (T, 3, H, W) -> float32 (T, 3, H', W'), e.g. `Stage1TrainTransform(224)`; default
            `EvalTransform(224)`.
        backend: "auto" (decord, then PyAV), "decord" or "pyav".
        stats: counters for skipped samples; a new `DecodeStats()` by default (read it back as `.stats`).
        seed: when set, each sample's frame sampling and augmentation draw from a generator seeded by
            (seed, epoch, sample index) instead of the global one, so a clip looks the same whichever process,
            worker or resumed run decodes it; `set_epoch` (or `DecoderEpochCallback` with the Trainer) moves
            to the next epoch's draws. `decode_videos` adds the sample index column this needs.

    Call on one example (dict with "video" and optional "label" / "caption") -> {"pixel_values": (T, 3, H', W')
    or None when the video failed to decode, "label", "caption"}; the failure is counted in `stats`.
    """

    def __init__(
        self,
        num_frames: int = 8,
        sampling: str = "sparse_test",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        backend: str = "auto",
        stats: DecodeStats | None = None,
        url_timeout: float = 30.0,
        url_retries: int = 3,
        seed: int | None = None,
    ):
        if sampling not in SAMPLING_RULES:
            raise ValueError(f"sampling must be one of {SAMPLING_RULES}, got {sampling!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.num_frames, self.sampling, self.backend = num_frames, sampling, backend
        self.transform = transform if transform is not None else EvalTransform(224)
        self.stats = stats if stats is not None else DecodeStats()
        self.url_timeout, self.url_retries = url_timeout, url_retries
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s per-sample draws (only matters with a `seed`)."""
        self.epoch = int(epoch)

    def generator_for(self, index: Any) -> torch.Generator | None:
        """The per-sample generator for sample `index` in the current epoch, or None (global RNG) without a seed."""
        if self.seed is None or index is None:
            return None
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, int(index))) % (2**63))

    @staticmethod
    def _source(video: Any) -> Any:
        # datasets' Video(decode=False) gives {"bytes": b"..." or None, "path": "..."}.
        if isinstance(video, dict):
            return video.get("bytes") or video.get("path")
        return video

    def decode(self, video: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """One video field -> float32 clip (T, 3, H', W'). Raises VideoDecodeError when it cannot be read.

        `generator` drives the random frame sampling and augmentation (None: torch's global generator)."""
        source = self._source(video)
        if source is None:
            raise VideoDecodeError(describe_source(video), "the record has neither bytes nor a path")
        try:
            with VideoReader(source, self.backend, timeout=self.url_timeout, retries=self.url_retries) as reader:
                indices = sample_indices(self.sampling, self.num_frames, reader.num_frames, generator=generator)
                frames = reader.get_frames(indices)
        except VideoDecodeError as error:
            if isinstance(video, dict) and video.get("bytes") and video.get("path"):
                # In-memory bytes are described as "<N bytes>"; the member name says which sample it was.
                raise VideoDecodeError(f"{video['path']!r} ({error.source})", error.cause) from error
            raise
        return self.transform(frames) if generator is None else self.transform(frames, generator)

    def __call__(self, example: dict) -> dict:
        try:
            pixel_values = self.decode(example["video"], self.generator_for(example.get(INDEX_COLUMN)))
        except VideoDecodeError as error:
            self.stats.record_failure(error)
            pixel_values = None
        else:
            self.stats.record_success()
        out = {key: example[key] for key in ("label", "caption") if key in example}
        out["pixel_values"] = pixel_values
        return out


class _DecodeOrSubstitute:
    """`with_transform` function of a map-style dataset: decode each row; replace a broken one by a random other.

    Replacing, as the official loaders do, keeps indexing total and batches full, so `len()` and epoch-based
    schedules stay valid. Every failure is counted (and can stop the run) in the decoder's `DecodeStats`.
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
        for _ in range(self.MAX_CONSECUTIVE_FAILURES):
            try:
                pixel_values = self.decoder.decode(row["video"], generator)
            except VideoDecodeError as error:
                self.decoder.stats.record_failure(error)
                # torch's global generator: seeded per DataLoader worker and by transformers.set_seed.
                row = self.records[int(torch.randint(len(self.records), (1,), generator=generator).item())]
                continue
            self.decoder.stats.record_success()
            return {**{key: row[key] for key in ("label", "caption") if key in row}, "pixel_values": pixel_values}
        raise TooManyDecodeFailures(
            f"{self.MAX_CONSECUTIVE_FAILURES} videos in a row failed to decode; the data looks broken "
            f"({self.decoder.stats})"
        )


def decode_videos(records: Records, decoder: VideoClipDecoder) -> Records:
    """Attach lazy decoding to records from `load_video_records`.

    IterableDataset (streaming): `map(decoder)` then a filter, so iteration yields exactly the clips that decode
    and skips the rest. Map-style Dataset: `with_transform`; indexing decodes, and a row whose video fails is
    replaced by a random other row that decodes (as the official loaders do), so batches stay full and `len()`
    stays true. Either way every failure is counted and logged in `decoder.stats`. For an exact evaluation that
    must not repeat clips, iterate a streaming / `records.to_iterable_dataset()` version.

    Returns:
        a dataset of examples {"pixel_values": (T, 3, H, W) float32, ["label"], ["caption"]}.
    """
    if isinstance(records, datasets.IterableDataset):
        if decoder.seed is not None:
            records = records.map(lambda example, i: {INDEX_COLUMN: i}, with_indices=True)
        return records.map(decoder).filter(lambda example: example["pixel_values"] is not None)
    if isinstance(records, datasets.Dataset):
        if len(records) == 0:
            raise ValueError("records is an empty dataset; there is nothing to decode")
        if decoder.seed is not None and INDEX_COLUMN not in records.column_names:
            records = records.add_column(INDEX_COLUMN, np.arange(len(records), dtype=np.int64))
        return records.with_transform(_DecodeOrSubstitute(decoder, records))
    raise ValueError(f"records must be a datasets.Dataset or IterableDataset, got {type(records).__name__}")


class VideoCollator:
    """Batch decoded examples for a DataLoader or the HF Trainer.

    Output: {"pixel_values": float32 (B, T, C, H, W)} plus "labels": int64 (B,) when the examples have labels and
    "captions": list[str] (B) when they have captions. Examples whose pixel_values is None (a failed
    `VideoClipDecoder.__call__` used directly) are dropped; `decode_videos` datasets never produce them.

    Raises:
        VideoDecodeError: every example of the batch had failed to decode.
    """

    def __call__(self, examples: Sequence[dict]) -> dict[str, Any]:
        good = [example for example in examples if example.get("pixel_values") is not None]
        if not good:
            raise VideoDecodeError(f"<batch of {len(examples)}>", "every clip of this batch failed to decode")
        batch: dict[str, Any] = {"pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in good])}
        if good[0].get("label") is not None:
            batch["labels"] = torch.as_tensor(np.array([e["label"] for e in good]), dtype=torch.long)
        if good[0].get("caption") is not None:
            batch["captions"] = [e["caption"] for e in good]
        return batch
