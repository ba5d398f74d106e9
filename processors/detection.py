"""Action detection data (AVA layout): boxes travel with the clip through the sample dict.

- Box geometry as the official AlphAction fork (`alphaction/structures/bounding_box.py`, qa_and_detection.md §B):
  `extend_boxes` (test-time enlargement, (0.1, 0.05)), `jitter_boxes` (training jitter, (0.2, 0.1, 0.1, 0.05)), and
  `boxes_to_normalized` (pixels -> [0, 1] with the official +1 on x2 / y2).
- AVA files: the annotation CSV (video_id, timestamp, x1, y1, x2, y2 normalised, action_id, person_id), person
  proposals with scores (CSV: video_id, timestamp, x1, y1, x2, y2, [action_id,] score; kept at score >= 0.8 as
  official), excluded timestamps, and the label-map pbtxt; `records_from_ava` groups them into one record per
  keyframe: {"video", "video_id", "timestamp", "boxes" (K, 4) normalised xyxy, "labels" (K, num_labels) multi-hot,
  "box_scores" (K,)}. Every CSV line is checked once through a `processors.rows.RowCheck` (`check=`): a bad line is
  skipped and counted by reason, or, strict (the default without a check), raises `BadRowError` naming the file,
  line, column and value. An empty person_id is a bad line; a 7-column annotation file has person_id None.
- `DetectionTrainTransform` / `DetectionEvalTransform`: `SampleTransform`s that resize the short side (256), crop
  (training only) or pad to the patch multiple (test, as the official collator), flip, normalise with the Detectron
  mean / std on 0-255 values, and move the boxes with the pixels; `DetectionCollator` pads a batch to one size and
  keeps boxes and labels as per-clip lists.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as tvF

from .collate import VideoCollator
from .rows import RowCheck
from .transforms import SampleTransform, shortest_edge_size

__all__ = [
    "AVA_MEAN", "AVA_STD", "AVA_PROPOSAL_THRESHOLD", "DetectionCollator", "DetectionEvalTransform",
    "DetectionTrainTransform", "boxes_to_normalized", "extend_boxes", "jitter_boxes", "keyframe_clip", "make_image_key",
    "read_ava_annotations", "read_ava_exclusions", "read_ava_label_map", "read_ava_proposals", "records_from_ava",
]

AVA_MEAN = (122.7717, 115.9465, 102.9801)  # official TransformsCfg.PIXEL_MEAN, RGB, on 0-255 values
AVA_STD = (57.375, 57.375, 57.375)
AVA_PROPOSAL_THRESHOLD = 0.8  # official detector-box score threshold at test
TEST_EXTEND = (0.1, 0.05)  # official `test_ext`
TRAIN_JITTER = (0.2, 0.1, 0.1, 0.05)  # official `random_aug(jitter_x_out, jitter_x_in, jitter_y_out, jitter_y_in)`
_INTEGER = re.compile(r"[+-]?\d+")
_ANNOTATION_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id")
_PROPOSAL_COLUMNS = {7: ("video_id", "timestamp", "x1", "y1", "x2", "y2", "score"),
                     8: ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score")}


# ---- box geometry ----------------------------------------------------------------------------------------------------
def _check_boxes(boxes: torch.Tensor, name: str = "boxes") -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"`{name}` must be (K, 4) xyxy, got shape {tuple(boxes.shape)}.")
    return boxes


def extend_boxes(boxes: torch.Tensor, size: tuple[int, int], scale: Sequence[float] = TEST_EXTEND) -> torch.Tensor:
    """Official test-time enlargement: pad x by scale[0] * (x2 - x1 + 1) / 2 and y by scale[1] * (y2 - y1 + 1) / 2 on
    each side, then clamp to [0, W - 1] x [0, H - 1]. boxes (K, 4) xyxy pixels; size (height, width)."""
    boxes = _check_boxes(boxes)
    h, w = size
    sx, sy = (scale[0], scale[0]) if len(scale) < 2 else (scale[0], scale[1])
    pad_x = sx * (boxes[:, 2] - boxes[:, 0] + 1) / 2
    pad_y = sy * (boxes[:, 3] - boxes[:, 1] + 1) / 2
    out = torch.stack([boxes[:, 0] - pad_x, boxes[:, 1] - pad_y, boxes[:, 2] + pad_x, boxes[:, 3] + pad_y], dim=1)
    out[:, 0::2] = out[:, 0::2].clamp(0, w - 1)
    out[:, 1::2] = out[:, 1::2].clamp(0, h - 1)
    return out


def jitter_boxes(boxes: torch.Tensor, size: tuple[int, int], generator: torch.Generator | None = None,
                 jitter: Sequence[float] = TRAIN_JITTER) -> torch.Tensor:
    """Official training jitter: each side moves by a uniform fraction of the box size (x out/in, y out/in, i.e.
    x1 += w * U(-x_out, x_in), x2 += w * U(-x_in, x_out), likewise y with h = y2 - y1 + 1), then x1, y1 are clamped to
    [0, W - 2] / [0, H - 2] and x2, y2 to at most W - 1 / H - 1 and at least x1 + 1 / y1 + 1. size (height, width)."""
    boxes = _check_boxes(boxes)
    h, w = size
    x_out, x_in, y_out, y_in = jitter
    k = boxes.shape[0]

    def u(low: float, high: float) -> torch.Tensor:
        return torch.rand(k, generator=generator) * (high - low) + low

    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    x1 = (boxes[:, 0] + bw * u(-x_out, x_in)).clamp(0, w - 2)
    y1 = (boxes[:, 1] + bh * u(-y_out, y_in)).clamp(0, h - 2)
    x2 = torch.maximum((boxes[:, 2] + bw * u(-x_in, x_out)).clamp(max=w - 1), x1 + 1)
    y2 = torch.maximum((boxes[:, 3] + bh * u(-y_in, y_out)).clamp(max=h - 1), y1 + 1)
    return torch.stack([x1, y1, x2, y2], dim=1)


def boxes_to_normalized(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixels -> [0, 1] as the official evaluation writes them (`data/ava_eval.py`): +1 on x2 / y2, divide by the
    width / height, clip to [0, 1]. size (height, width)."""
    boxes = _check_boxes(boxes).clone()
    h, w = size
    boxes[:, 2:] += 1
    boxes[:, 0::2] /= w
    boxes[:, 1::2] /= h
    return boxes.clamp(0, 1)


# ---- AVA files -------------------------------------------------------------------------------------------------------
def make_image_key(video_id: str, timestamp) -> str:
    """The AVA frame key "video_id,TTTT" (timestamp as a 4-digit integer)."""
    return f"{video_id},{int(timestamp):04d}"


def read_ava_label_map(path: str | os.PathLike) -> dict[int, str]:
    """The AVA label-map pbtxt (`item { name: "..." id: N }`, `id:` or `label_id:`) -> {action id: name}.

    The label map defines the classes, so a bad line is never skipped: it raises a ValueError naming the file, the
    line and what was expected."""
    names, name = {}, None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            where = f"{path}, line {number}"
            if line.startswith("name:"):
                parts = line.split('"')
                if len(parts) < 3:
                    raise ValueError(f"{where}: expected a quoted name (name: \"ride (e.g., a bike)\"), got {line!r}")
                name = parts[1]
            elif line.startswith(("id:", "label_id:")):
                if name is None:
                    raise ValueError(f"{where}: an id line comes before its name line: {line!r}")
                value = line.split(":", 1)[1].strip()
                if not _INTEGER.fullmatch(value):
                    raise ValueError(f"{where}: expected an integer action id (id: 12), got {value!r} in {line!r}")
                if int(value) in names:
                    raise ValueError(f"{where}: action id {int(value)} is given twice ({names[int(value)]!r} and "
                                     f"{name!r})")
                names[int(value)] = name
                name = None
    if not names:
        raise ValueError(f"{path}: no `name` / `id` items found; expected an AVA label-map pbtxt.")
    return names


# The AVA CSVs are read line by line; each line is checked once. A bad line (wrong column count, an empty cell, a cell
# that is not the number expected, a box outside [0, 1]) goes to a `processors.rows.RowCheck`: skipped and counted
# by reason, or, with `strict`, a `BadRowError` naming the file, line, column and value. No check: strict.


class _BadCell(Exception):
    def __init__(self, column: str, reason: str, detail: str):
        super().__init__(detail)
        self.column, self.reason, self.detail = column, reason, detail


class _Line:
    """One CSV line with named cells; each getter raises `_BadCell` naming the column, its value and what it needs."""

    def __init__(self, cells: list[str], names: Sequence[str]):
        self.cells, self.names = cells, names

    def text(self, name: str) -> str:
        i = self.names.index(name)
        value = self.cells[i].strip()
        if not value:
            raise _BadCell(name, "missing value", f"{name} (column {i + 1}) is empty; expected a value")
        return value

    def integer(self, name: str) -> int:
        value = self.text(name)
        if not _INTEGER.fullmatch(value) or int(value) < 0:
            raise _BadCell(name, "bad number", f"{name} (column {self.names.index(name) + 1}) is {value!r}; "
                                               f"expected an integer >= 0")
        return int(value)

    def number(self, name: str) -> float:
        value = self.text(name)
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise _BadCell(name, "bad number", f"{name} (column {self.names.index(name) + 1}) is {value!r}; "
                                               f"expected a finite number")
        return number

    def key(self) -> str:
        return make_image_key(self.text("video_id"), self.integer("timestamp"))

    def box(self) -> tuple[float, float, float, float]:
        box = tuple(self.number(name) for name in ("x1", "y1", "x2", "y2"))
        for name, value in zip(("x1", "y1", "x2", "y2"), box):
            if not 0.0 <= value <= 1.0:
                raise _BadCell(name, "bad box", f"{name} (column {self.names.index(name) + 1}) is {value!r}; AVA "
                                                f"boxes are normalised to [0, 1] (box {box})")
        if box[2] < box[0] or box[3] < box[1]:
            raise _BadCell("x2" if box[2] < box[0] else "y2", "bad box",
                           f"the box {box} ends before it starts; expected x1 <= x2 and y1 <= y2")
        return box


def _read_lines(path, check: RowCheck | None, widths: dict[int, Sequence[str]], parse: Callable[[_Line], object]):
    """`parse` of every non-empty line of the CSV at `path` with one of the column counts of `widths`, in order; bad
    lines go to `check` (None: `RowCheck(strict=True)`)."""
    check = check if check is not None else RowCheck(strict=True)
    expected = " or ".join(f"{n} ({', '.join(names)})" for n, names in widths.items())
    with open(path, newline="") as f:
        reader = csv.reader(f)
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            names = widths.get(len(cells))
            if names is None:
                check.reject(path, reader.line_num, "*", "wrong column count",
                             f"expected {expected} columns, got {len(cells)}: {cells}", unit="line")
                continue
            try:
                yield parse(_Line(cells, names))
            except _BadCell as bad:
                check.reject(path, reader.line_num, bad.column, bad.reason, bad.detail, unit="line")


def read_ava_exclusions(path: str | os.PathLike | None, check: RowCheck | None = None) -> set[str]:
    """Excluded timestamps (CSV: video_id, timestamp) -> a set of image keys (empty for None). Bad lines: `check`."""
    if path is None:
        return set()
    return set(_read_lines(path, check, {2: ("video_id", "timestamp")}, _Line.key))


def read_ava_annotations(path: str | os.PathLike, class_ids: Iterable[int] | None = None,
                         check: RowCheck | None = None) -> dict[str, list]:
    """The AVA annotation CSV (video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]) -> {image key: [(box,
    action_id, person_id), ...]}; rows whose action is not in `class_ids` are left out (None: keep all).

    person_id is an integer >= 0; an 8-column line with an empty person_id is a bad line ("missing value"), never a
    made-up id. A 7-column file has no person_id column: its person_id is None. Bad lines go to `check` (None:
    strict, the first one raises `BadRowError` naming the file, line, column and value)."""
    keep = None if class_ids is None else {int(c) for c in class_ids}

    def parse(line: _Line) -> tuple:
        key, box, action = line.key(), line.box(), line.integer("action_id")
        return key, box, action, line.integer("person_id") if "person_id" in line.names else None

    out: dict[str, list] = defaultdict(list)
    widths = {7: _ANNOTATION_COLUMNS[:7], 8: _ANNOTATION_COLUMNS}
    for key, box, action, person in _read_lines(path, check, widths, parse):
        if keep is None or action in keep:
            out[key].append((box, action, person))
    return dict(out)


def read_ava_proposals(path: str | os.PathLike, threshold: float = AVA_PROPOSAL_THRESHOLD,
                       check: RowCheck | None = None) -> dict[str, list]:
    """Person proposals (CSV: video_id, timestamp, x1, y1, x2, y2, [action_id,] score; normalised) with score >=
    `threshold` (official 0.8) -> {image key: [(box, score), ...]}, highest score first. The optional action_id
    column is not read (detectors leave it empty). Bad lines go to `check` (None: strict)."""
    out: dict[str, list] = defaultdict(list)
    for key, box, score in _read_lines(path, check, _PROPOSAL_COLUMNS,
                                       lambda line: (line.key(), line.box(), line.number("score"))):
        if score >= threshold:
            out[key].append((box, score))
    return {k: sorted(v, key=lambda item: -item[1]) for k, v in out.items()}


def records_from_ava(
    annotations: str | os.PathLike | Mapping[str, list],
    video_template: str,
    label_ids: Sequence[int],
    proposals: str | os.PathLike | None = None,
    exclusions: str | os.PathLike | set[str] | None = None,
    proposal_threshold: float = AVA_PROPOSAL_THRESHOLD,
    check: RowCheck | None = None,
) -> list[dict]:
    """One record per annotated keyframe (or, with `proposals`, per keyframe with a proposal above the threshold).

    annotations: the AVA annotation CSV, or what `read_ava_annotations` made of it (to read a file once for the
        records and the evaluation); exclusions likewise a CSV or `read_ava_exclusions`' set.
    video_template: the clip of a keyframe, e.g. "clips/{video_id}/{timestamp}.mp4" (AVA is cut into clips centred
        on each keyframe beforehand; `timestamp` is an int, so "{timestamp:04d}" zero-pads it).
    label_ids: the action ids of the label columns, in order (e.g. the 80 ids 1..80, or a label map's ids).
    check: where the files' bad lines go (a `RowCheck`: skipped and counted, or `BadRowError` when strict); None:
        strict.
    Records: {"video", "video_id", "timestamp", "boxes" (K, 4) normalised xyxy, "labels" (K, C) float multi-hot,
    "box_scores" (K,)}. Ground-truth boxes (training) score 1; with `proposals` the boxes are the proposals and their
    labels are those of the identical ground-truth box, if any (evaluation reads the ground truth itself).
    """
    column = {int(a): i for i, a in enumerate(label_ids)}
    gt = annotations if isinstance(annotations, Mapping) else read_ava_annotations(annotations, check=check)
    excluded = exclusions if isinstance(exclusions, (set, frozenset)) else read_ava_exclusions(exclusions, check)
    boxes_of: dict[str, dict] = {}
    for key, rows in gt.items():
        per_box: dict[tuple, list[float]] = {}
        for box, action, _ in rows:
            labels = per_box.setdefault(box, [0.0] * len(column))
            if action in column:
                labels[column[action]] = 1.0
        boxes_of[key] = per_box
    if proposals is not None:
        found = read_ava_proposals(proposals, proposal_threshold, check)
        keys = sorted(found)
    else:
        keys = sorted(boxes_of)
    records = []
    for key in keys:
        if key in excluded:
            continue
        video_id, ts = key.rsplit(",", 1)
        if proposals is not None:
            boxes = [b for b, _ in found[key]]
            scores = [s for _, s in found[key]]
            labels = [boxes_of.get(key, {}).get(b, [0.0] * len(column)) for b in boxes]
        else:
            boxes, labels = list(boxes_of[key]), list(boxes_of[key].values())
            scores = [1.0] * len(boxes)
        records.append(dict(video=video_template.format(video_id=video_id, timestamp=int(ts)), video_id=video_id,
                            timestamp=int(ts), boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            labels=torch.tensor(labels, dtype=torch.float32).reshape(-1, len(column)),
                            box_scores=torch.tensor(scores, dtype=torch.float32)))
    return records


# ---- transforms ------------------------------------------------------------------------------------------------------
def _normalize_255(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (video.float() - m) / s


def keyframe_clip(video: torch.Tensor) -> torch.Tensor:
    """The clip's keyframe (its middle frame, index T // 2, as AVA's keyframe sits at the centre of its window)
    repeated T times: the input of a baseline that sees only the keyframe through the same model."""
    return video[video.shape[0] // 2].unsqueeze(0).expand_as(video).clone()


def _resize(video: torch.Tensor, short_side: int) -> torch.Tensor:
    h, w = shortest_edge_size(*video.shape[-2:], short_side)
    return tvF.resize(video, [h, w], antialias=True)


class DetectionTrainTransform(SampleTransform):
    """Official AVA training transform on a sample with normalised `boxes`: resize the short side to `short_side`,
    random `crop_size` crop (boxes shifted and clipped; boxes left with no area are dropped with their labels and
    scores), horizontal flip (p=`flip_prob`), box jitter (`jitter_boxes`), Detectron normalisation on 0-255 values.
    Output boxes are xyxy pixels of the crop. Pass `flip_prob=0` for data whose actions name directions;
    `keyframe_only` replaces the clip by its keyframe repeated (`keyframe_clip`)."""

    def __init__(self, short_side: int = 256, crop_size: int = 224, flip_prob: float = 0.5,
                 jitter: Sequence[float] | None = TRAIN_JITTER, mean=AVA_MEAN, std=AVA_STD,
                 keyframe_only: bool = False):
        self.short_side, self.crop_size, self.flip_prob, self.jitter = short_side, crop_size, flip_prob, jitter
        self.mean, self.std, self.keyframe_only = mean, std, keyframe_only

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        video = sample["pixel_values"]
        video = _resize(keyframe_clip(video) if self.keyframe_only else video, self.short_side)
        h, w = video.shape[-2:]
        boxes = _check_boxes(sample["boxes"]) * torch.tensor([w, h, w, h], dtype=torch.float32)
        top = int(torch.randint(h - self.crop_size + 1, (1,), generator=generator))
        left = int(torch.randint(w - self.crop_size + 1, (1,), generator=generator))
        video = video[..., top : top + self.crop_size, left : left + self.crop_size]
        boxes = boxes - torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, self.crop_size - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, self.crop_size - 1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if float(torch.rand(1, generator=generator)) < self.flip_prob:
            video = video.flip(-1)
            boxes = torch.stack([self.crop_size - 1 - boxes[:, 2], boxes[:, 1], self.crop_size - 1 - boxes[:, 0],
                                 boxes[:, 3]], dim=1)
        if self.jitter is not None:
            boxes = jitter_boxes(boxes, (self.crop_size, self.crop_size), generator, self.jitter)
        out = dict(sample, pixel_values=_normalize_255(video, self.mean, self.std), boxes=boxes[keep])
        for key in ("labels", "box_scores"):
            if key in sample:
                out[key] = torch.as_tensor(sample[key])[keep]
        return out


class DetectionEvalTransform(SampleTransform):
    """Official AVA test transform: resize the short side to `short_side` (no crop), Detectron normalisation on 0-255
    values, zero-pad height and width to multiples of `pad_multiple` (the official collator's 16). Adds
    `proposal_boxes` (the boxes in pixels of the resized frame, what scores are paired with), `boxes` (the same
    enlarged by `extend` -- what the model pools; None keeps them), `frame_size` (height, width) before padding and
    `original_size` (height, width) of the decoded frames. `keyframe_only`: see `DetectionTrainTransform`."""

    def __init__(self, short_side: int = 256, pad_multiple: int = 16, extend: Sequence[float] | None = TEST_EXTEND,
                 mean=AVA_MEAN, std=AVA_STD, keyframe_only: bool = False):
        self.short_side, self.pad_multiple, self.extend, self.mean, self.std = short_side, pad_multiple, extend, mean, std
        self.keyframe_only = keyframe_only

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        video = sample["pixel_values"]
        original = torch.tensor(video.shape[-2:])
        video = _resize(keyframe_clip(video) if self.keyframe_only else video, self.short_side)
        h, w = video.shape[-2:]
        boxes = _check_boxes(sample["boxes"]) * torch.tensor([w, h, w, h], dtype=torch.float32)
        video = _normalize_255(video, self.mean, self.std)
        ph, pw = -h % self.pad_multiple, -w % self.pad_multiple
        video = F.pad(video, (0, pw, 0, ph))
        model_boxes = boxes if self.extend is None else extend_boxes(boxes, (h, w), self.extend)
        return dict(sample, pixel_values=video, boxes=model_boxes, proposal_boxes=boxes,
                    frame_size=torch.tensor([h, w]), original_size=original)


class DetectionCollator:
    """Batches detection samples: zero-pads `pixel_values` (T, C, H, W) to the largest H and W of the batch (as the
    official collator), then `VideoCollator` (boxes, labels and scores stay per-clip lists; other tensors stack)."""

    LIST_KEYS = ("boxes", "proposal_boxes", "labels", "box_scores")

    def __init__(self):
        self.collator = VideoCollator()

    def __call__(self, examples: Sequence[dict]) -> dict:
        h = max(e["pixel_values"].shape[-2] for e in examples)
        w = max(e["pixel_values"].shape[-1] for e in examples)
        padded = []
        for e in examples:
            v = e["pixel_values"]
            e = dict(e, pixel_values=F.pad(v, (0, w - v.shape[-1], 0, h - v.shape[-2])))
            for key in self.LIST_KEYS:  # lists of tensors: the collator keeps lists
                if key in e:
                    e[key] = [torch.as_tensor(e[key])]
            padded.append(e)
        batch = self.collator(padded)
        for key in self.LIST_KEYS:
            if key in batch:
                batch[key] = [item[0] if isinstance(item, list) else item for item in batch[key]]
        return batch
