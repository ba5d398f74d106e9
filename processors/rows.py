"""Table rows are validated once, when the dataset is built: `RowCheck`.

A source (`processors.datasets`, `processors.video_text`) yields rows with `video`, and `label` / `caption` where it
has them. `RowCheck(label=..., caption=...)` says what a stage needs and checks every row before anything is decoded:

* `video`: present (not empty).
* `caption` (Stage 2): present, not empty; a missing caption is never turned into the text "None".
* `label` (fine-tuning): an integer class id in range, or a class name of the label map. Without a label map the
  classes are inferred from the whole table, as transformers' example scripts infer a `ClassLabel`:
    - names (`cat`, `dog`): the label map is the sorted set of names;
    - ids (`0`, `1`, `2`): the classes are 0..K-1 with K the first id that no row has, so one typo `99` in a
      3-class table is a bad row, never a 100-class head; `1.7`, `abc` among ids, and negative ids are bad rows.
  The inferred map is logged and kept in `label_names` (scripts save it as the model's `id2label`).

A bad row is skipped and counted under its row number and reason in a `DecodeStats` (rows count from 1, the header
of a CSV not included), or, with `strict=True`, raises `BadRowError` naming the source, row, column and value.
Columns the stage does not check (`label` without `label=True`, `caption` without `caption=True`) are dropped, so a
hole in an unused column cannot break a batch.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

import datasets

from .decoding import DecodeStats, Records

logger = logging.getLogger(__name__)

__all__ = ["ROW_COLUMN", "BadRowError", "RowCheck"]

ROW_COLUMN = "__row__"  # a table's 1-based row number, added before its split is filtered and removed by RowCheck
_INTEGER = re.compile(r"[+-]?\d+")
_MISSING_WORDS = ("", "nan", "none", "null")
_LOGGED_ROWS = 20  # bad rows logged one by one; the rest only counted


class BadRowError(ValueError):
    """A table row that cannot be used, under `strict=True`; the message names source, row, column and value."""


def _kind(value: Any) -> tuple[str, Any]:
    """("missing" | "int" | "number" | "name", parsed value) of one label cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing", None
    if isinstance(value, bool):
        return "number", value
    if isinstance(value, numbers.Integral):
        return "int", int(value)
    if isinstance(value, numbers.Real):
        return ("int", int(value)) if float(value).is_integer() else ("number", value)
    text = str(value).strip()
    if text.lower() in _MISSING_WORDS:
        return "missing", None
    if _INTEGER.fullmatch(text):
        return "int", int(text)
    try:
        number = float(text)
    except ValueError:
        return "name", text
    return ("int", int(number)) if number.is_integer() else ("number", text)


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not isinstance(value, str) or bool(value.strip())


class RowCheck:
    """What every row of a stage's table must hold; `apply(records, source)` checks, skips or stops, and counts.

    Args:
        label: rows need a valid class label (fine-tuning); the `label` column becomes int64 ids.
        caption: rows need a caption (Stage 2).
        label_names: the label map (class names by id, e.g. from `read_label_file`); None: inferred from the table.
        strict: raise `BadRowError` at the first bad row instead of skipping it.
        stats: where skips are counted by reason (the decoders' `DecodeStats`, so one line reports both).

    After `apply`, `label_names` holds the label map used (given or inferred).
    """

    def __init__(self, *, label: bool = False, caption: bool = False, label_names: Sequence[str] | None = None,
                 strict: bool = False, stats: DecodeStats | None = None):
        self.label, self.caption, self.strict = label, caption, strict
        self.label_names = None if label_names is None else [str(name) for name in label_names]
        self.stats = stats if stats is not None else DecodeStats()
        self._named, self._label2id = False, {}

    # ---- one row -----------------------------------------------------------------------------------------------
    def _label_problem(self, value: Any) -> tuple[str, str, int | None]:
        """(reason or "", detail, class id) of one label cell against `label_names`."""
        kind, parsed = _kind(value)
        names = self.label_names
        if kind == "missing":
            return "missing label", f"the label is empty (got {value!r})", None
        if isinstance(value, str) and value.strip() in self._label2id:
            return "", "", self._label2id[value.strip()]
        if kind == "int":
            if 0 <= parsed < len(names):
                return "", "", parsed
            return "label out of range", f"label {value!r} is outside the class ids 0..{len(names) - 1}", None
        if kind == "number":
            return "label not an integer", f"label {value!r} is not an integer class id", None
        if self._named:
            return "unknown class name", f"label {value!r} is not one of the {len(names)} classes {names[:5]}...", None
        return "label not an integer", f"label {value!r} is not an integer class id (the other labels are ids)", None

    def _problem(self, row: dict) -> tuple[str, str, str, int | None]:
        """(column, reason, detail, class id); reason "" for a good row."""
        if not _present(row.get("video")) and not isinstance(row.get("video"), dict):
            return "video", "missing video", f"the video path is empty (got {row.get('video')!r})", None
        if self.caption and not _present(row.get("caption")):
            return "caption", "missing caption", f"the caption is empty (got {row.get('caption')!r})", None
        if self.label:
            reason, detail, label = self._label_problem(row.get("label"))
            return "label", reason, detail, label
        return "", "", "", None

    def reject(self, source: str, number: int, column: str, reason: str, detail: str, unit: str = "row") -> None:
        """One bad row: raise `BadRowError` under `strict`, else count it under `reason` (one of
        `processors.decoding.ROW_SKIP_REASONS`) and log it. The message reads "<source>, <unit> <number>, column
        <column>: <detail>" (`unit` "line" for files read line by line, such as the AVA CSVs)."""
        message = f"{source}, {unit} {number}, column {column!r}: {detail}"
        if self.strict:
            raise BadRowError(f"{message}; fix the {unit} or drop --strict_data to skip and count bad rows")
        self.stats.record_row_skip(reason, message, log=self.stats.num_rows_skipped < _LOGGED_ROWS)

    # ---- the label map ---------------------------------------------------------------------------------------------
    def _set_names(self, names: Sequence[str], named: bool) -> None:
        self.label_names, self._named = [str(n) for n in names], named
        self._label2id = {name: i for i, name in enumerate(self.label_names)} if named else {}

    def _infer_names(self, values: list, source: str) -> None:
        kinds = [_kind(value) for value in values]
        ids = [parsed for kind, parsed in kinds if kind == "int"]
        names = [str(value).strip() for value, (kind, _) in zip(values, kinds) if kind in ("name", "number")]
        if len(names) > len(ids):  # class names: every non-empty cell is one (as a ClassLabel would be built)
            found = sorted({str(value).strip() for value, (kind, _) in zip(values, kinds) if kind != "missing"})
            self._set_names(found, named=True)
            logger.info("Built a label map of %d classes from the 'label' column of %s (sorted): %s", len(found), source,
                        dict(enumerate(found)))
            return
        present = set(ids)
        count = 0
        while count in present:
            count += 1
        if count == 0 and ids:
            raise ValueError(
                f"{source}: the 'label' column holds class ids but none is 0 (smallest {min(ids)}); "
                f"ids count from 0 -- renumber them or pass --label_map"
            )
        beyond = sorted(i for i in present if i >= count)
        self._set_names([f"LABEL_{i}" for i in range(count)], named=False)
        if not ids:
            return  # every label is empty: every row is skipped, and `apply` says none is usable
        logger.info("Inferred %d classes (ids 0..%d) from the 'label' column of %s%s", count, count - 1, source,
                    f"; ids {beyond[:5]} lie beyond a gap and are bad rows (pass --label_map if they are real)"
                    if beyond else "")

    # ---- a whole source --------------------------------------------------------------------------------------------
    def _check_columns(self, names: Sequence[str], source: str) -> None:
        if self.caption and "caption" not in names:
            raise ValueError(
                f"{source} gives no captions (columns: {[n for n in names if n != ROW_COLUMN]}), and this stage needs "
                f"one per video: use a CSV/JSONL table with video and caption columns, or, for a folder of videos, a "
                f"caption file beside each video with the same name and a .txt extension (clip1.mp4 -> clip1.txt)"
            )
        if self.label and "label" not in names:
            raise ValueError(
                f"{source} gives no labels (columns: {[n for n in names if n != ROW_COLUMN]}), and this stage needs a "
                f"class per video: use class sub-folders (root/<class>/<video>) or a table with a 'label' column"
            )

    def apply(self, records: Records, source: str) -> Records:
        """Check every row of `records` (from `source`, named in messages); returns the good rows, with `label` as
        int ids when `label=True`, and without the columns this check does not need."""
        source = str(source)
        names = list(records.column_names or next(iter(records)).keys())
        self._check_columns(names, source)
        unused = [c for c, used in (("label", self.label), ("caption", self.caption)) if c in names and not used]
        feature = (records.features or {}).get("label") if self.label else None
        folder_names = None  # a ClassLabel's own names, when a given label map must renumber them
        if self.label and isinstance(feature, datasets.ClassLabel):
            if self.label_names is None:
                self.label_names = list(feature.names)
            elif list(feature.names) != self.label_names:
                folder_names, feature = list(feature.names), None  # ids by name through the label map
        if self.label and self.label_names is not None:
            self._set_names(self.label_names, named=True)
        drop = unused + ([ROW_COLUMN] if ROW_COLUMN in names else [])
        if isinstance(records, datasets.IterableDataset):
            return self._apply_streaming(records, source, drop)
        if len(records) == 0:  # e.g. a split with no rows: nothing to check or infer
            return records.remove_columns(drop) if drop else records
        if self.label and self.label_names is None:
            self._infer_names(records["label"], source)
        columns = [c for c in ("video", "caption", "label", ROW_COLUMN) if c in names]
        if "video" in columns and not isinstance(records.features.get("video"), datasets.Value):
            columns.remove("video")  # bytes / struct columns (webdataset) are not read here; the decoder checks them
        table = {c: records[c] for c in columns}
        if folder_names is not None:
            table["label"] = [None if v is None else folder_names[v] for v in table["label"]]
        keep, labels = [], []
        for i in range(len(records)):
            row = {c: table[c][i] for c in columns}
            row.setdefault("video", "<bytes>")
            column, reason, detail, label = self._problem(row)
            if reason:
                self.reject(source, row.get(ROW_COLUMN, i + 1), column, reason, detail)
                continue
            keep.append(i)
            labels.append(label)
        if not keep:
            raise ValueError(f"{source}: none of its {len(records)} rows is usable ({self.stats.summary()})")
        skipped = len(records) - len(keep)
        if skipped:
            logger.warning("%s: skipped %d of %d rows (%s)", source, skipped, len(records), self.stats.summary())
            records = records.select(keep)
        if self.label and not isinstance(feature, datasets.ClassLabel):
            records = records.remove_columns("label").add_column("label", labels)
        if self.caption and records.features["caption"] != datasets.Value("string"):
            records = records.cast_column("caption", datasets.Value("string"))  # a number caption is its text
        return records.remove_columns(drop) if drop else records

    def _apply_streaming(self, records: datasets.IterableDataset, source: str, drop: list[str]) -> Records:
        if self.label and self.label_names is None:
            raise ValueError(f"{source} is streamed: its classes cannot be inferred from the whole table; pass "
                             f"--label_map (class names by id)")

        def keep(row: dict, index: int) -> bool:
            column, reason, detail, label = self._problem(row)
            if reason:
                self.reject(source, row.get(ROW_COLUMN, index + 1), column, reason, detail)
                return False
            return True

        def encode(row: dict) -> dict:
            return {"label": self._problem(row)[3]}

        records = records.filter(keep, with_indices=True)
        if self.label:
            records = records.map(encode)
        return records.remove_columns(drop) if drop else records
