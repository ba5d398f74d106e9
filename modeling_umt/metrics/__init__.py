"""The `evaluate` metric modules of UMT, shipped inside the installed package (no Hub access, no repository needed).

Each metric is one module of this folder (an `evaluate.Metric` subclass), loaded by its file path:

    import evaluate
    from modeling_umt.metrics import metric_path
    top_k = evaluate.load(metric_path("top_k_accuracy"))

`accuracy`: the fraction of correct class ids; `qa_accuracy`: exact-match open-ended QA accuracy; `top_k_accuracy`: top-k accuracies of class scores; `retrieval`:
R@1/5/10, mean recall and median rank of a retrieval score matrix.
"""

from __future__ import annotations

import os

__all__ = ["METRIC_NAMES", "metric_path"]

METRIC_NAMES = ("accuracy", "qa_accuracy", "retrieval", "top_k_accuracy")


def metric_path(name: str) -> str:
    """The file path of metric module `name` (one of `METRIC_NAMES`), for `evaluate.load`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"name must be one of {METRIC_NAMES}, got {name!r}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
