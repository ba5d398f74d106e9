"""Video-text and image-text data for UMT Stage 2 and retrieval: sources, captions, tokenised batches.

Sources only: decoding is `processors.decoding.decode_videos` with a `VideoClipDecoder` (or `ImageClipDecoder`), the
same seeded per-sample pipeline as Stage 1. This module adds what the vision-language stage needs:

* `records_from_webvid(source)`: WebVid-style tables (`videoid`, `contentUrl` or `page_dir`, `name`), local CSV / JSONL
  or a Hub dataset id, map-style or streamed. Videos come from a local copy (`video_root/page_dir/videoid.mp4`, or
  `video_root/videoid.mp4`), a mirror (`url_template="https://mirror/{page_dir}/{videoid}.mp4"`), or the table's
  own `contentUrl` -- the official WebVid host is gone, so local copies and mirrors are first-class.
* `records_from_image_text(source)`: CC3M-style image-text pairs (`image`/`url`/`path`, `caption`); images become
  1-frame videos (`processors.decoding.ImageClipDecoder`).
* `load_retrieval_annotations(path)`: the official retrieval JSON (`[{"video": ..., "caption": str | [str]}]`) or a
  CSV (`video, caption`), with several captions per video, as MSRVTT / DiDeMo.
* `pre_text`: the official caption cleaning; `VideoTextCollator`: tokenised batches for the Trainer.

Canonical record columns: `video` (path / URL / {"bytes", "path"}), `caption` (str), `id` (int; captions of the same
video share it: the VTC / VTM positives).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from .collate import VideoCollator
from .datasets import _column_names
from .decoding import Records

__all__ = [
    "RetrievalAnnotations",
    "VideoTextCollator",
    "load_retrieval_annotations",
    "pre_text",
    "records_from_image_text",
    "records_from_webvid",
]

_STRIP = re.compile(r"[,.'!?\"()*#:;~]")


def _caption(value: Any) -> str | None:
    """A caption cell as text; None for a missing one (never the word "None"; `RowCheck(caption=True)` skips it)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


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
    names = _column_names(records)
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
        return {"video": video, "caption": _caption(row["name"]), "id": index}

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
    names = _column_names(records)
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
        return {"video": value, "caption": _caption(row[caption]), "id": index}

    return records.map(to_canonical, with_indices=True, remove_columns=names)


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
            if _caption(caption) is None or not str(caption).strip():
                raise ValueError(f"path {path!r}, row {rows.index(row) + 1}: the {caption_column!r} of video "
                                 f"{row[video_column]!r} is empty ({caption!r}); every caption must be text")
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
class VideoTextCollator(VideoCollator):
    """Batch decoded video-text (or image-text) samples for UMT Stage 2: `VideoCollator`, captions tokenised.

    Samples: {"pixel_values": (T, 3, H, W), "caption": str, ["id": int], ...}. Output: `VideoCollator`'s batch
    (pixel_values (B, T, 3, H, W), ids (B,) when the samples have ids, every other key) with the captions replaced
    by input_ids / attention_mask (B, max_length) from `tokenizer` on `pre_text` captions (padded to max_length,
    truncated, as the official code).
    """

    def __init__(self, tokenizer, max_length: int = 32, clean_captions: bool = True):
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")
        self.tokenizer, self.max_length, self.clean_captions = tokenizer, max_length, clean_captions

    def __call__(self, examples: Sequence[dict]) -> dict[str, Any]:
        batch = super().__call__(examples)
        captions = batch.pop(self.names.get("caption", "caption"), None)
        if captions is None:
            raise ValueError(f"samples must carry a 'caption' for VideoTextCollator; the batch has {sorted(batch)}")
        bad = [i for i, caption in enumerate(captions) if not isinstance(caption, str)]
        if bad:
            raise ValueError(f"every caption must be text, got {captions[bad[0]]!r} in sample {bad[0]} of this batch; "
                             f"validate the table with processors.rows.RowCheck(caption=True)")
        text = self.tokenizer(
            [pre_text(c) if self.clean_captions else c for c in captions],
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        batch.update(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
        return batch
