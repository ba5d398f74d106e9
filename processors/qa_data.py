"""Video QA data sources: the official annotation layout, CSV / JSON Lines tables, a synthetic video QA set whose
questions need time, and easy-vqa (real 64x64 images, as 1-frame videos).

Every source gives records {"video": path, "question": str, "answers": [str, ...], "question_id": str,
"question_type": str} (a `datasets.Dataset`), ready for `decoding.decode_videos` / `PreloadedVideoClips` and
`video_qa.VideoQACollator`, and an answer list (the candidates `rank_answers` scores).

Official layout (`mm/dataset/qa_dataset.py`): a JSON list of {"video" (or "image"), "question", "answer": str or
[str, ...], optional "question_id"} and a separate JSON answer list. Tables carry the same columns (`answer` may be a
JSON list in JSON Lines; in a CSV, several answers are joined by `answer_separator`, default "|").
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import datasets

import random

from .synthetic import CLASS_NAMES, COLOURS, SHAPES, TEXTURES

__all__ = [
    "SYNTHETIC_QA_ANSWERS",
    "load_answer_list",
    "majority_answer",
    "records_from_easy_vqa",
    "records_from_qa",
    "synthetic_mc_records",
    "synthetic_qa_records",
]

_QA_FIELDS = ("video", "question", "answers", "question_id", "question_type")


def _record(video: str, question: str, answers, question_id, question_type: str = "") -> dict:
    if isinstance(answers, str):
        answers = [answers]
    if not question or not answers or not all(isinstance(a, str) and a for a in answers):
        raise ValueError(f"QA row for video {video!r} needs a question and non-empty answers, got {question!r} / "
                         f"{answers!r}.")
    return {"video": video, "question": question, "answers": list(answers), "question_id": str(question_id),
            "question_type": question_type or ""}


def _resolve(path: str, root: str | None) -> str:
    if root is None or os.path.isabs(path) or "://" in path:
        return path
    return os.path.join(root, path)


def records_from_qa(
    source: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    split: str | None = None,
    limit: int | None = None,
    answer_separator: str = "|",
) -> datasets.Dataset:
    """QA records from the official JSON list (.json holding a list), a JSON Lines table (.jsonl) or a CSV (.csv).

    Columns / keys: video (or image), question, answer (a string or a list: the annotators' answers; "answers" is
    accepted too), optional question_id, question_type and split (kept rows: `split`). Relative video paths are
    joined to `video_root`, else to the annotation file's folder. `limit`: the first N rows.
    """
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ValueError(f"`source` {path!r} is not a file; expected a .json, .jsonl or .csv QA annotation file.")
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(path))
    extension = os.path.splitext(path)[1].lower()
    if extension == ".json":
        with open(path) as handle:
            rows = json.load(handle)
        if not isinstance(rows, list):
            raise ValueError(f"`source` {path!r} must hold a JSON list of QA entries, got {type(rows).__name__}.")
    elif extension == ".jsonl":
        with open(path) as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    elif extension == ".csv":
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            for key in ("answer", "answers"):
                if isinstance(row.get(key), str):
                    row[key] = [a.strip() for a in row[key].split(answer_separator)]
    else:
        raise ValueError(f"`source` {path!r} has extension {extension!r}; expected .json, .jsonl or .csv.")
    records = []
    for i, row in enumerate(rows):
        if split is not None and row.get("split") != split:
            continue
        video = row.get("video", row.get("image"))
        answers = row.get("answer", row.get("answers"))
        if video is None or "question" not in row or answers is None:
            raise ValueError(f"Row {i} of {path!r} needs video (or image), question and answer; it has {sorted(row)}.")
        records.append(_record(_resolve(str(video), root), row["question"], answers, row.get("question_id", i),
                               row.get("question_type", "")))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise ValueError(f"No QA rows in {path!r}" + (f" with split {split!r}." if split else "."))
    return datasets.Dataset.from_list(records)


def load_answer_list(source: str | os.PathLike) -> list[str]:
    """The official answer list: a JSON list of strings (or a text file, one answer a line)."""
    path = os.fspath(source)
    with open(path) as handle:
        answers = json.load(handle) if path.endswith(".json") else [line.strip() for line in handle if line.strip()]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"`source` {path!r} must hold a non-empty list of answer strings.")
    return answers


def majority_answer(records) -> str:
    """The most frequent first answer of `records` (the majority-answer baseline's prediction)."""
    counts = Counter(answers[0] for answers in records["answers"])
    if not counts:
        raise ValueError("`records` is empty; no majority answer.")
    return counts.most_common(1)[0][0]


# --------------------------------------------------------------------------------------------------
# The synthetic video QA set, from the synthetic clips (processors/synthetic.py)
# --------------------------------------------------------------------------------------------------
_DIRECTIONS = {"moving left": "left", "moving right": "right", "moving up": "up", "moving down": "down"}
_TEMPORAL = {
    **{action: ("which way does the {colour} {shape} move", answer) for action, answer in _DIRECTIONS.items()},
    "growing": ("does the {colour} {shape} grow or shrink", "grow"),
    "shrinking": ("does the {colour} {shape} grow or shrink", "shrink"),
    "rotating clockwise": ("which way does the {colour} {shape} turn", "clockwise"),
    "rotating counter-clockwise": ("which way does the {colour} {shape} turn", "anticlockwise"),
    "appearing": ("what appears", "{shape}"),
    "disappearing": ("what appears", "nothing"),
}
_APPEARANCE = (
    ("what colour is the {texture} {shape}", "{colour}"),
    ("what shape is the {colour} {texture} object", "{shape}"),
    ("what pattern does the {colour} {shape} have", "{texture}"),
)
SYNTHETIC_QA_ANSWERS: tuple[str, ...] = tuple(dict.fromkeys(
    [*_DIRECTIONS.values(), "grow", "shrink", "clockwise", "anticlockwise", "nothing", *SHAPES, *COLOURS, *TEXTURES]
))


def _parse_caption(caption: str, action: str) -> dict[str, str]:
    """'a red striped square moving left' -> colour, texture, shape (the synthetic captions' fixed word order)."""
    words = caption[: len(caption) - len(action)].split()
    if len(words) != 4 or words[1] not in COLOURS or words[2] not in TEXTURES or words[3] not in SHAPES:
        raise ValueError(f"Caption {caption!r} is not '<a|an> <colour> <texture> <shape> <action>'.")
    return {"colour": words[1], "texture": words[2], "shape": words[3]}


def synthetic_qa_records(root: str | os.PathLike, split: str | None = None, appearance: bool = True,
                         limit: int | None = None) -> datasets.Dataset:
    """Questions about the synthetic clips under `root` (`ensure_synthetic_dataset`), from their metadata.csv.

    Each clip gets one temporal question, whose answer needs the frame order (which way the shape moves or turns,
    whether it grows or shrinks, what appears — "nothing" when the shape fades out), and with `appearance` one
    appearance question (colour, shape or pattern, chosen by the clip index). `split` keeps the clips of that
    split (train / val / test: held-out clips). question_type is "temporal" or "appearance". The answer list is
    `SYNTHETIC_QA_ANSWERS`.
    """
    root = Path(root)
    with open(root / "metadata.csv", newline="") as handle:
        clips = [row for row in csv.DictReader(handle) if split is None or row["split"] == split]
    records = []
    for row in clips:
        key = Path(row["path"]).stem
        words = _parse_caption(row["caption"], row["label_name"])
        video = str(root / row["path"])
        question, answer = _TEMPORAL[row["label_name"]]
        records.append(_record(video, question.format(**words), answer.format(**words), f"{key}-t", "temporal"))
        if appearance:
            question, answer = _APPEARANCE[int(key) % len(_APPEARANCE)]
            records.append(_record(video, question.format(**words), answer.format(**words), f"{key}-a",
                                   "appearance"))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise ValueError(f"No synthetic clips under {str(root)!r}" + (f" in split {split!r}." if split else "."))
    return datasets.Dataset.from_list(records)


def _reversed_action(action: str) -> str:
    """The time-reversed partner of a synthetic action (classes come in pairs: 0/1, 2/3, ...)."""
    index = CLASS_NAMES.index(action)
    return CLASS_NAMES[index ^ 1]


def synthetic_mc_records(root: str | os.PathLike, split: str | None = "test", num_options: int = 5,
                         seed: int = 0, limit: int | None = None) -> datasets.Dataset:
    """Multiple choice over the synthetic clips under `root`: each clip's true caption among `num_options`
    captions that describe the same object ("a red striped square ...") doing other things: the time-reversed
    action (a single frame cannot tell them apart) and `num_options - 2` other actions drawn with `seed`. Records
    {"video", "options": [str] * num_options, "label": index of the true caption, "question_id"}; the true
    caption's position is drawn too."""
    if not 2 <= num_options <= len(CLASS_NAMES):
        raise ValueError(f"`num_options` must be in [2, {len(CLASS_NAMES)}], got {num_options}.")
    root = Path(root)
    with open(root / "metadata.csv", newline="") as handle:
        clips = [row for row in csv.DictReader(handle) if split is None or row["split"] == split]
    records = []
    for row in clips:
        key, action, caption = Path(row["path"]).stem, row["label_name"], row["caption"]
        rng = random.Random(f"{seed}-{key}")
        prefix = caption[: len(caption) - len(action)]
        others = [a for a in CLASS_NAMES if a not in (action, _reversed_action(action))]
        distractors = [_reversed_action(action), *rng.sample(others, num_options - 2)]
        options = [prefix + a for a in distractors]
        label = rng.randrange(num_options)
        options.insert(label, caption)
        records.append({"video": str(root / row["path"]), "options": options, "label": label, "question_id": key})
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise ValueError(f"No synthetic clips under {str(root)!r}" + (f" in split {split!r}." if split else "."))
    return datasets.Dataset.from_list(records)


# --------------------------------------------------------------------------------------------------
# easy-vqa (PyPI, MIT): 64x64 shape/colour images, 13 answers
# --------------------------------------------------------------------------------------------------
def records_from_easy_vqa(split: str = "train", limit: int | None = None) -> tuple[datasets.Dataset, list[str]]:
    """easy-vqa's `split` ("train": 38,575 questions on 4,000 images; "test": 9,673 on 1,000) as QA records over its
    PNG files (decode them as 1-frame videos with the image backend), and its 13 answers. `limit`: the first N
    questions."""
    import easy_vqa  # optional dependency, only for this source

    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    questions, answers, image_ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    records = []
    for i, (question, answer, image_id) in enumerate(zip(questions, answers, image_ids)):
        records.append(_record(paths[image_id], question, answer, f"{split}-{i}", "easy-vqa"))
        if limit is not None and len(records) >= limit:
            break
    return datasets.Dataset.from_list(records), list(easy_vqa.get_answers())
