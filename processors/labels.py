"""Class-name files: the one reader of label maps for fine-tuning, conversion and evaluation.

Accepted layouts:
* a text file with one name per line (line i = class i; blank lines are skipped);
* a JSON list of names;
* a JSON object `{id: name}` (ids as ints or digit strings) or `{name: id}`, e.g. the official
  `label_mixto400.json`-style maps;
* a saved `config.json` (its `id2label`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["read_label_file"]


def read_label_file(path: str | os.PathLike, num_labels: int | None = None) -> list[str]:
    """Class names by id from a label file (layouts in the module docstring).

    Args:
        path: the file.
        num_labels: when given, the file must define exactly this many classes.

    Returns:
        list of names, index = class id.

    Raises:
        ValueError: naming the file when it is missing, is not valid JSON, holds an unknown layout, numbers its
            classes with gaps, or defines another number of classes than `num_labels`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"label file {str(path)!r} is not a file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"label file {str(path)!r} is not valid JSON: {err}") from err
        if isinstance(data, dict) and "id2label" in data:
            data = data["id2label"]
        if isinstance(data, list):
            pairs = dict(enumerate(str(name) for name in data))
        elif isinstance(data, dict) and data and all(str(k).strip().isdigit() for k in data):
            pairs = {int(k): str(v) for k, v in data.items()}
        elif isinstance(data, dict) and data and all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
            pairs = {v: str(k) for k, v in data.items()}
        else:
            raise ValueError(
                f"label file {str(path)!r} must hold a JSON list of names or an object id->name / name->id, "
                f"got {type(data).__name__}"
            )
    else:
        pairs = dict(enumerate(line.strip() for line in text.splitlines() if line.strip()))
    if not pairs:
        raise ValueError(f"label file {str(path)!r} defines no class")
    if sorted(pairs) != list(range(len(pairs))):
        raise ValueError(f"label file {str(path)!r} must number its classes 0..{len(pairs) - 1} without gaps")
    if num_labels is not None and len(pairs) != num_labels:
        raise ValueError(f"label file {str(path)!r} defines {len(pairs)} labels but {num_labels} classes are expected")
    return [pairs[i] for i in range(len(pairs))]
