"""Video-text and image-text data for UMT Stage 2 and retrieval: sources, captions, tokenised batches.

Builds on `processors.datasets` (records -> lazy decoding with skipped-and-counted failures) and adds what the
vision-language stage needs:

* `records_from_webvid(source)`: WebVid-style tables (`videoid`, `contentUrl` or `page_dir`, `name`), local CSV / JSONL
  or a Hub dataset id, map-style or streamed. Videos come from a local copy (`video_root/page_dir/videoid.mp4`, or
  `video_root/videoid.mp4`), a mirror (`url_template="https://mirror/{page_dir}/{videoid}.mp4"`), or the table's
  own `contentUrl` -- the official WebVid host is gone, so local copies and mirrors are first-class.
* `records_from_image_text(source)`: CC3M-style image-text pairs (`image`/`url`/`path`, `caption`); images become
  1-frame videos (`ImageClipDecoder`).
* `load_retrieval_annotations(path)`: the official retrieval JSON (`[{"video": ..., "caption": str | [str]}]`) or a
  CSV (`video, caption`), with several captions per video, as MSRVTT / DiDeMo.
* `pre_text`: the official caption cleaning; `VideoTextCollator`: tokenised batches for the Trainer.

Canonical record columns: `video` (path / URL / {"bytes", "path"}), `caption` (str), `id` (int; captions of the same
video share it: the VTC / VTM positives).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from .datasets import DecodeStats, Records
from .video_io import VideoDecodeError, describe_source, fetch_url

__all__ = [
    "ImageClipDecoder",
    "RetrievalAnnotations",
    "VideoTextCollator",
    "decode_pairs",
    "load_retrieval_annotations",
    "pre_text",
    "records_from_image_text",
    "records_from_webvid",
]

_STRIP = re.compile(r"[,.'!?\"()*#:;~]")


def pre_text(text: str, max_words: int | None = None) -> str:
    """Official caption cleaning (`dataset/utils.py:pre_text`): lowercase; drop `,.'!?"()*#:;~`; `-` and `/` become
    spaces; `<person>` becomes `person`; whitespace collapsed; optionally cut to `max_words` words."""
    text = _STRIP.sub("", text.lower()).replace("-", " ").replace("/", " ").replace("<person>", "person")
    words = text.split()
    if max_words is not None:
        words = words[:max_words]
    return " ".join(words)


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------
def _load_table(source: str, split: str, streaming: bool, **kwargs: Any) -> Records:
    path = os.fspath(source)
    if os.path.isfile(path):
        extension = os.path.splitext(path)[1].lower()
        builder = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json"}.get(extension)
        if builder is None:
            raise ValueError(f"source {path!r} has extension {extension!r}; expected .csv, .tsv, .jsonl or .json")
        if extension == ".tsv":
            kwargs.setdefault("sep", "\t")
        return datasets.load_dataset(builder, data_files=path, split="train", streaming=streaming, **kwargs)
    return datasets.load_dataset(path, split=split, streaming=streaming, **kwargs)  # a Hub id or dataset folder


def _columns(records: Records) -> list[str]:
    if records.column_names is not None:
        return list(records.column_names)
    return list(next(iter(records)).keys())


def records_from_webvid(
    source: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    url_template: str | None = None,
    split: str = "train",
    streaming: bool = False,
    extension: str = "mp4",
    **load_kwargs: Any,
) -> Records:
    """Records from a WebVid-style table: `videoid`, `name` (the caption) and `contentUrl` and/or `page_dir`.

    Where each video is read from, first match wins:
      1. `video_root` given: `video_root/<page_dir>/<videoid>.<extension>` when the table has `page_dir`, else
         `video_root/<videoid>.<extension>` (a local copy).
      2. `url_template` given: formatted with the row (`{videoid}`, `{page_dir}`, `{contentUrl}`), e.g. a mirror.
      3. the row's `contentUrl`.
    Returns a Dataset (IterableDataset when streaming) with columns video, caption, id (= row number, unique).
    """
    records = _load_table(os.fspath(source), split, streaming, **load_kwargs)
    names = _columns(records)
    for required in ("videoid", "name"):
        if required not in names:
            raise ValueError(
                f"source {str(source)!r} has no {required!r} column; WebVid columns are videoid, "
                f"contentUrl / page_dir, name; got {names}"
            )
    if video_root is None and url_template is None and "contentUrl" not in names:
        raise ValueError(f"source {str(source)!r} has no contentUrl column: pass video_root= or url_template=")
    root = None if video_root is None else os.fspath(video_root)

    def to_canonical(row: dict, index: int) -> dict:
        if root is not None:
            parts = [root, str(row["page_dir"])] if row.get("page_dir") not in (None, "") else [root]
            video = os.path.join(*parts, f"{row['videoid']}.{extension}")
        elif url_template is not None:
            video = url_template.format(**{k: row.get(k) for k in ("videoid", "page_dir", "contentUrl")})
        else:
            video = row["contentUrl"]
        return {"video": video, "caption": str(row["name"]), "id": index}

    return records.map(to_canonical, with_indices=True, remove_columns=names)


_IMAGE_COLUMNS = ("image", "img", "url", "image_url", "path", "filepath", "jpg", "png")
_CAPTION_COLUMNS = ("caption", "text", "txt", "name", "sentence")


def records_from_image_text(
    source: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    split: str = "train",
    streaming: bool = False,
    **load_kwargs: Any,
) -> Records:
    """Records from an image-text table (CC3M / COCO style: an image path or URL and a caption), or a Hub dataset.

    Relative image paths are joined to `image_root` (default: the table's folder). Image columns that datasets
    decodes (`Image()` features) are kept undecoded as {"bytes", "path"}.
    Returns a Dataset (IterableDataset when streaming) with columns video (the image source), caption, id.
    """
    records = _load_table(os.fspath(source), split, streaming, **load_kwargs)
    names = _columns(records)
    lowered = {n.lower(): n for n in names}
    image = image_column or next((lowered[c] for c in _IMAGE_COLUMNS if c in lowered), None)
    caption = caption_column or next((lowered[c] for c in _CAPTION_COLUMNS if c in lowered), None)
    if image not in names or caption not in names:
        raise ValueError(
            f"source {str(source)!r}: cannot find the image / caption columns among {names}; pass "
            f"image_column= and caption_column="
        )
    if records.features is not None and isinstance(records.features.get(image), datasets.Image):
        records = records.cast_column(image, datasets.Image(decode=False))
    base = (
        os.fspath(image_root)
        if image_root is not None
        else (os.path.dirname(os.path.abspath(os.fspath(source))) if os.path.isfile(os.fspath(source)) else None)
    )

    def to_canonical(row: dict, index: int) -> dict:
        value = row[image]
        if isinstance(value, str) and base is not None and not value.startswith(("http://", "https://")):
            value = value if os.path.isabs(value) else os.path.join(base, value)
        return {"video": value, "caption": str(row[caption]), "id": index}

    return records.map(to_canonical, with_indices=True, remove_columns=names)


# --------------------------------------------------------------------------------------------------
# Decoding images as 1-frame videos
# --------------------------------------------------------------------------------------------------
class ImageClipDecoder:
    """Decode one image into a 1-frame clip: path / URL / bytes / {"bytes", "path"} -> float32 (1, 3, H', W').

    Same interface as `VideoClipDecoder` (`decode`, `stats`, call on an example), so `decode_pairs` attaches either.
    """

    def __init__(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor],
        stats: DecodeStats | None = None,
        url_timeout: float = 30.0,
        url_retries: int = 3,
    ):
        self.transform = transform
        self.stats = stats if stats is not None else DecodeStats()
        self.url_timeout, self.url_retries = url_timeout, url_retries
        self.num_frames = 1

    def decode(self, image: Any) -> torch.Tensor:
        """One image field -> float32 (1, 3, H', W'). Raises VideoDecodeError when it cannot be read."""
        from PIL import Image, UnidentifiedImageError

        source = image.get("bytes") or image.get("path") if isinstance(image, dict) else image
        if source is None:
            raise VideoDecodeError(describe_source(image), "the record has neither bytes nor a path")
        try:
            if isinstance(source, str) and source.startswith(("http://", "https://")):
                source = fetch_url(source, self.url_timeout, self.url_retries)
            handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
            with Image.open(handle) as img:
                array = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise VideoDecodeError(describe_source(source), str(error)) from error
        frames = torch.from_numpy(array.copy()).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
        return self.transform(frames)

    def __call__(self, example: dict) -> dict:
        try:
            pixel_values = self.decode(example["video"])
        except VideoDecodeError as error:
            self.stats.record_failure(error)
            pixel_values = None
        else:
            self.stats.record_success()
        out = {key: example[key] for key in ("caption", "id", "label") if key in example}
        out["pixel_values"] = pixel_values
        return out


class _DecodePairs:
    """`with_transform` function: decode each row's `video`, keep its other columns (caption, id); a row that fails
    is replaced by a random other row (as the official loaders), every failure counted in the decoder's stats."""

    MAX_CONSECUTIVE_FAILURES = 100

    def __init__(self, decoder, records: datasets.Dataset):
        self.decoder, self.records = decoder, records

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [{key: values[i] for key, values in batch.items()} for i in range(len(batch["video"]))]
        decoded = [self._decode(row) for row in rows]
        return {key: [out[key] for out in decoded] for key in decoded[0]}

    def _decode(self, row: dict) -> dict:
        for _ in range(self.MAX_CONSECUTIVE_FAILURES):
            try:
                pixel_values = self.decoder.decode(row["video"])
            except VideoDecodeError as error:
                self.decoder.stats.record_failure(error)
                row = self.records[int(torch.randint(len(self.records), (1,)).item())]
                continue
            self.decoder.stats.record_success()
            return {**{k: v for k, v in row.items() if k != "video"}, "pixel_values": pixel_values}
        raise VideoDecodeError(
            f"<{self.MAX_CONSECUTIVE_FAILURES} rows>", f"all failed to decode ({self.decoder.stats})"
        )


def decode_pairs(records: Records, decoder) -> Records:
    """Attach lazy decoding to video-text / image-text records, keeping `caption` and `id`.

    decoder: a `processors.datasets.VideoClipDecoder` or an `ImageClipDecoder`. Streaming records skip what fails to
    decode; map-style records serve a random other row in its place (see `processors.datasets.decode_videos`).
    Returns a dataset of {"pixel_values": (T, 3, H, W), "caption", "id"}.
    """
    if isinstance(records, datasets.IterableDataset):

        def decode(row: dict) -> dict:
            try:
                pixel_values = decoder.decode(row["video"])
            except VideoDecodeError as error:
                decoder.stats.record_failure(error)
                pixel_values = None
            else:
                decoder.stats.record_success()
            return {"pixel_values": pixel_values}

        return records.map(decode, remove_columns=["video"]).filter(lambda e: e["pixel_values"] is not None)
    if isinstance(records, datasets.Dataset):
        if len(records) == 0:
            raise ValueError("records is an empty dataset; there is nothing to decode")
        return records.with_transform(_DecodePairs(decoder, records))
    raise ValueError(f"records must be a datasets.Dataset or IterableDataset, got {type(records).__name__}")


# --------------------------------------------------------------------------------------------------
# Retrieval annotations (several captions per video)
# --------------------------------------------------------------------------------------------------
@dataclass
class RetrievalAnnotations:
    """A retrieval test / fine-tuning set.

    videos: V video sources; texts: T captions; txt2video: (T,) index of each caption's video;
    video2txt: V lists of caption indices.
    """

    videos: list[str]
    texts: list[str]
    txt2video: list[int]
    video2txt: list[list[int]]

    def records(self) -> datasets.Dataset:
        """One row per (video, caption) pair, `id` = the video's index (captions of a video are positives)."""
        return datasets.Dataset.from_dict(
            {"video": [self.videos[v] for v in self.txt2video], "caption": self.texts, "id": list(self.txt2video)}
        )

    def video_records(self) -> datasets.Dataset:
        """One row per video (for feature extraction), `id` = its index."""
        return datasets.Dataset.from_dict({"video": self.videos, "id": list(range(len(self.videos)))})


def load_retrieval_annotations(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    split: str | None = None,
    video_column: str | None = None,
    caption_column: str = "caption",
    limit: int | None = None,
) -> RetrievalAnnotations:
    """Read a retrieval annotation file.

    JSON: the official list `[{"video": "x.mp4", "caption": "..." or ["...", ...]}, ...]` (also JSON Lines).
    CSV: one row per (video, caption); rows of the same video are grouped. `split` keeps rows whose `split` column
    equals it (e.g. the synthetic dataset's "test"). Relative video paths are joined to `video_root` (default: the
    file's folder). `limit` keeps the first `limit` videos. `video_column` defaults to the first of "video", "path",
    "video_path", "filename" the rows have.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path {path!r} is not a file; expected a retrieval annotation .json / .jsonl / .csv")
    if path.endswith(".json"):
        with open(path) as handle:
            rows = json.load(handle)
    elif path.endswith(".jsonl"):
        with open(path) as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    elif path.endswith((".csv", ".tsv")):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t" if path.endswith(".tsv") else ","))
    else:
        raise ValueError(f"path {path!r}: expected a .json, .jsonl, .csv or .tsv annotation file")
    if not isinstance(rows, list) or (rows and not isinstance(rows[0], dict)):
        raise ValueError(f"path {path!r} must hold a list of objects with {video_column!r} and {caption_column!r}")
    if split is not None:
        rows = [row for row in rows if row.get("split") == split]
    if video_column is None:
        names = rows[0].keys() if rows else ()
        video_column = next((c for c in ("video", "path", "video_path", "filename") if c in names), "video")
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(path))
    index: dict[str, int] = {}
    videos: list[str] = []
    texts: list[str] = []
    txt2video: list[int] = []
    for row in rows:
        if video_column not in row or caption_column not in row:
            raise ValueError(f"path {path!r}: a row lacks {video_column!r} or {caption_column!r}: {row}")
        video = str(row[video_column])
        if not video.startswith(("http://", "https://")) and not os.path.isabs(video):
            video = os.path.join(root, video)
        if video not in index:
            if limit is not None and len(videos) >= limit:
                continue
            index[video] = len(videos)
            videos.append(video)
        captions = row[caption_column] if isinstance(row[caption_column], list) else [row[caption_column]]
        for caption in captions:
            texts.append(str(caption))
            txt2video.append(index[video])
    if not videos:
        raise ValueError(f"path {path!r} holds no (video, caption) rows" + (f" in split {split!r}" if split else ""))
    video2txt: list[list[int]] = [[] for _ in videos]
    for t, v in enumerate(txt2video):
        video2txt[v].append(t)
    return RetrievalAnnotations(videos, texts, txt2video, video2txt)


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------
class VideoTextCollator:
    """Batch decoded video-text (or image-text) examples for UMT Stage 2.

    Examples: {"pixel_values": (T, 3, H, W), "caption": str, ["id": int]}. Output: pixel_values (B, T, 3, H, W),
    input_ids / attention_mask (B, max_length) from `tokenizer` on `pre_text` captions (padded to max_length,
    truncated, as the official code), and ids (B,) when the examples have ids.
    """

    def __init__(self, tokenizer, max_length: int = 32, clean_captions: bool = True):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
        self.tokenizer, self.max_length, self.clean_captions = tokenizer, max_length, clean_captions

    def __call__(self, examples: Sequence[dict]) -> dict[str, Any]:
        good = [e for e in examples if e.get("pixel_values") is not None]
        if not good:
            raise VideoDecodeError(f"<batch of {len(examples)}>", "every clip of this batch failed to decode")
        captions = [pre_text(e["caption"]) if self.clean_captions else e["caption"] for e in good]
        text = self.tokenizer(
            captions, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        batch: dict[str, Any] = {
            "pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in good]),
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
        }
        if good[0].get("id") is not None:
            batch["ids"] = torch.as_tensor([int(e["id"]) for e in good], dtype=torch.long)
        return batch
