"""Top-k accuracy of class scores: the fraction of examples whose true label is among the k highest scores.

An `evaluate` metric shipped inside the `modeling_umt` package and loaded by path (no Hub access needed):

    import evaluate
    from modeling_umt.metrics import metric_path
    top_k = evaluate.load(metric_path("top_k_accuracy"))
    top_k.compute(predictions=scores, references=labels, k=[1, 5])   # {"top1": ..., "top5": ...}

predictions: one row of class scores per example, shape (N, C) -- logits or (multi-view averaged) probabilities;
references: the true class ids (N,). Ties are broken towards the lower class id (a stable sort of the negated
scores), so a constant score row ranks class 0 first. k values above C count every example as correct, as
UMT's and timm's `accuracy(output, target, topk=(1, 5))` do with `min(k, C)`.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Top-k accuracy: the fraction of examples whose true class is among the k highest-scoring classes."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class scores, shape (N, C); higher is better.
    references (`list` of `int`): true class ids, shape (N,).
    k (`int` or `list` of `int`, defaults to [1, 5]): the k values to report.
Returns:
    top{k} (`float`): for each k, the fraction in [0, 1] of examples whose class is in the top min(k, C).
Examples:
    >>> top_k = evaluate.load(metric_path("top_k_accuracy"))
    >>> top_k.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], references=[2, 0], k=[1, 2])
    {'top1': 0.5, 'top2': 1.0}
"""
_CITATION = ""


def top_k_correct(scores: np.ndarray, references: np.ndarray, k: int) -> np.ndarray:
    """(N, C) scores, (N,) labels -> (N,) bool: the label is among the min(k, C) highest scores."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return (order == references[:, None]).any(axis=1)


# The `_info` below is evaluate's required declaration, the same shape in every metric module: each module must
# stand alone, since `evaluate.load` imports it by path.
@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
            raise ValueError(
                f"predictions must be (N, num_classes) scores matching references (N,); got {scores.shape} and "
                f"{labels.shape}"
            )
        if scores.shape[0] == 0:
            raise ValueError("predictions is empty: top-k accuracy is undefined")
        if labels.min() < 0 or labels.max() >= scores.shape[1]:
            raise ValueError(f"references must be class ids in [0, {scores.shape[1]}), got min {labels.min()} max {labels.max()}")
        ks = [k] if isinstance(k, (int, np.integer)) else list(k)
        return {f"top{int(kk)}": float(top_k_correct(scores, labels, int(kk)).mean()) for kk in ks}
