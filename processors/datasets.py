"""Video dataset sources built on 🤗 datasets: tables, class folders, webdataset shards, Hub streaming.

`load_video_records(source, ...)` (or one of the `records_from_*` functions) returns a `datasets.Dataset` (or
`IterableDataset` with `streaming=True`) whose rows hold *undecoded* videos in canonical columns: `video` (a path /
URL string, or a `{"bytes", "path"}` dict from a `Video(decode=False)` column), and `label` (int) and/or `caption`
(str) when the source has them. Sources never decode: `processors.decoding.decode_videos(records, decoder)` attaches
the one decoding pipeline (sampling, decoding, transforms; broken samples skipped and counted), and
`processors.collate.VideoCollator` batches the samples for a DataLoader or the HF Trainer (with
`remove_unused_columns=False`, since the raw `video` column feeds the decoder).
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute

from .decoding import Records
from .rows import ROW_COLUMN, RowCheck

__all__ = [
    "VIDEO_EXTENSIONS",
    "load_video_records",
    "records_from_files",
    "records_from_folder",
    "records_from_hub",
    "records_from_table",
    "records_from_webdataset",
    "table_columns",
]

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
    extra_columns: Sequence[str] = (),
) -> Records:
    """Rename the chosen columns to video / label / caption, keep `extra_columns` (boxes, questions, ...) and drop the
    rest.

    Nested fields (webdataset's `json` member) are reached with dotted names, e.g. label_column="json.label"; an extra
    column "json.boxes" arrives as "boxes".
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
    for column in extra_columns:
        old, new = _pick(names, column, (), "extra", required=True), column.rsplit(".", 1)[-1]
        if new in chosen:
            raise ValueError(f"extra_columns entry {column!r} would arrive as {new!r}, which is already {chosen[new]!r}")
        chosen[new] = old

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
    extra_columns: Sequence[str] = (),
    column_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    split_column: str = "split",
    cache_dir: str | None = None,
    check: RowCheck | None = None,
) -> Records:
    """Records from a CSV (.csv / .tsv / .txt) or JSON Lines (.jsonl / .json) table of videos.

    Relative video paths are resolved against the table's folder; http(s) URLs are kept.

    Args:
        path: the table file.
        split: keep only rows whose `split_column` equals this (e.g. the synthetic dataset's "train").
        extra_columns: more columns to keep beside video / label / caption (boxes, questions, answers, ...); they
            travel through decoding and collation with the clip.
        column_names: for header-less CSVs, the column names in order, e.g. ("video", "label") for the official
            `path label` lists (with delimiter=" ").
        delimiter: CSV separator; default "," (tab for .tsv).
        cache_dir: where datasets writes its Arrow cache (map-style only).
        check: validate every row now (`processors.rows.RowCheck`); bad rows are skipped and counted under their
            row number in the whole file (1 = the first row after a CSV header), or stop the build when strict.
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
    numbered = check is not None and isinstance(records, datasets.Dataset)
    if numbered:  # row numbers of the whole file, before the split is filtered
        records = records.add_column(ROW_COLUMN, np.arange(1, len(records) + 1, dtype=np.int64))
    records = _filter_split(records, split, split_column)
    base_dir = os.path.dirname(os.path.abspath(path))
    extra = (*extra_columns, ROW_COLUMN) if numbered else extra_columns
    records = _canonical(records, video_column, label_column, caption_column, _resolver(base_dir), extra)
    return records if check is None else check.apply(records, path)


def table_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV / TSV (its header) or JSON Lines table (its first row's keys), read cheaply."""
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8") as handle:
        if path.lower().endswith((".jsonl", ".json")):
            first = next((line for line in handle if line.strip()), "")
            try:
                row = json.loads(first) if first else {}
            except json.JSONDecodeError:
                return []  # a JSON document, not JSON Lines: datasets reads it; no cheap look
            return list(row) if isinstance(row, dict) else []
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
        return next(csv.reader(handle, delimiter=delimiter), [])


def _is_video(name: str, extensions: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(f".{ext.lower().lstrip('.')}" for ext in extensions))


def records_from_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike], streaming: bool = False,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> Records:
    """Records from video files without labels: a glob ("clips/*.mp4") or a list of paths (Stage 1; Stage 2 with
    captions).

    A caption file beside a video, with its name and a .txt extension (clip1.mp4 -> clip1.txt), gives its `caption`
    (stripped); the column is there when any video has one, None for the others (a `RowCheck(caption=True)` then
    skips and counts them). Files without a video extension are left out.

    Returns:
        Dataset (or IterableDataset when streaming) with columns video (absolute path) [, caption], sorted by path.
    """
    if isinstance(paths, (str, os.PathLike)):
        pattern = os.fspath(paths)
        paths = glob.glob(pattern)
        if not paths:
            raise ValueError(f"paths {pattern!r} match no files; expected a glob of videos such as 'clips/*.mp4'")
    files = sorted(os.path.abspath(os.fspath(p)) for p in paths if _is_video(os.fspath(p), extensions))
    if not files:
        raise ValueError(f"no video files ({', '.join(extensions)}) among the {len(paths)} paths given")
    captions = []
    for file in files:
        sidecar = os.path.splitext(file)[0] + ".txt"
        captions.append(Path(sidecar).read_text(encoding="utf-8").strip() if os.path.isfile(sidecar) else None)
    columns: dict[str, list] = {"video": files}
    if any(caption is not None for caption in captions):
        columns["caption"] = captions
    records = datasets.Dataset.from_dict(columns)
    return records.to_iterable_dataset() if streaming else records


def records_from_folder(
    root: str | os.PathLike, streaming: bool = False, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> Records:
    """Records from a folder with one sub-folder of videos per class, root/<class name>/<video>, or from a flat
    folder of videos, root/<video> (no labels: Stages 1 and 2; see `records_from_files` for captions).

    Classes are the sorted sub-folder names; `label` is a `ClassLabel` whose `.names` give id -> name.

    Returns:
        Dataset (or IterableDataset when streaming) with columns video (absolute path), label; for a flat folder,
        those of `records_from_files`.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"root {root!r} is not a directory; expected root/<class>/<video files> or root/<videos>")
    flat = [entry.path for entry in os.scandir(root) if entry.is_file() and _is_video(entry.name, extensions)]
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if flat:
        if any(_is_video(f, extensions) for name in classes for f in os.listdir(os.path.join(root, name))):
            raise ValueError(f"root {root!r} holds videos both directly and in sub-folders; use either class "
                             f"sub-folders (root/<class>/<video>) or one flat folder of videos")
        return records_from_files(flat, streaming=streaming, extensions=extensions)
    suffixes = tuple(f".{ext.lower().lstrip('.')}" for ext in extensions)
    paths, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted(os.listdir(os.path.join(root, name))):
            if file.lower().endswith(suffixes):
                paths.append(os.path.join(root, name, file))
                labels.append(label)
    if not paths:
        raise ValueError(f"root {root!r} holds no video files ({', '.join(extensions)}), neither directly nor in "
                         f"class sub-folders")
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
    extra_columns: Sequence[str] = (),
    cache_dir: str | None = None,
) -> Records:
    """Records from webdataset tar shards (members `<key>.mp4`, `<key>.json`, `<key>.txt`, `<key>.cls`, ...).

    The video member is read as raw bytes (`Video(decode=False)`) and decoded later by our decoder, so no
    torchcodec is needed. By default the label comes from `cls` or `json["label"]` and the caption from `txt` or
    `json["caption"]`; `extra_columns` keeps more members or `json` fields (e.g. "json.boxes").

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
    return _canonical(
        _undecoded(records, video_column), video_column, label_column, caption_column, extra_columns=extra_columns
    )


def records_from_hub(
    name: str,
    split: str = "train",
    streaming: bool = True,
    video_column: str | None = None,
    label_column: str | None = None,
    caption_column: str | None = None,
    extra_columns: Sequence[str] = (),
    **load_kwargs: Any,
) -> Records:
    """Records from a Hub dataset id (or a local folder `datasets.load_dataset` understands), streamed by default.

    Video features are read undecoded; `extra_columns` keeps more columns beside video / label / caption;
    `load_kwargs` go to `datasets.load_dataset` (e.g. `name=`, `revision=`).

    Returns:
        IterableDataset (Dataset when streaming=False) with columns video, [label], [caption].
    """
    records = datasets.load_dataset(name, split=split, streaming=streaming, **load_kwargs)
    return _canonical(
        _undecoded(records, video_column), video_column, label_column, caption_column, extra_columns=extra_columns
    )


def load_video_records(
    source: str | os.PathLike | Sequence[str], kind: str | None = None, check: RowCheck | None = None, **kwargs: Any
) -> Records:
    """Records from any supported source; `kind` is inferred when None.

    kind: "table" (a .csv / .tsv / .txt / .jsonl / .json file), "folder" (a directory of class sub-folders, or of
    videos), "files" (a glob of video files such as "clips/*.mp4"), "webdataset" (a .tar, a glob of .tar files, a
    list of them, or a directory holding .tar shards) or "hub" (a dataset id). `check` validates every row
    (`processors.rows.RowCheck`); `kwargs` go to the matching `records_from_*` function.
    """
    kinds = ("table", "folder", "files", "webdataset", "hub")
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
                matches = glob.glob(path)
                kind = "files" if all(_is_video(m, VIDEO_EXTENSIONS) for m in matches) else "webdataset"
            else:
                kind = "hub"
    if kind == "webdataset" and isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        source = os.path.join(os.fspath(source), "*.tar")
    if kind == "table":
        return records_from_table(source, check=check, **kwargs)
    builders = {"folder": records_from_folder, "files": records_from_files, "webdataset": records_from_webdataset,
                "hub": lambda name, **kw: records_from_hub(os.fspath(name), **kw)}
    if kind not in builders:
        raise ValueError(f"kind must be one of {kinds} or None, got {kind!r}")
    records = builders[kind](source, **kwargs)
    return records if check is None else check.apply(records, os.fspath(source) if kind != "webdataset" else source)
