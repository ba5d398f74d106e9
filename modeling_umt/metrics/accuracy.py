"""Classification accuracy: the fraction of predictions equal to the reference label.

An `evaluate` metric shipped inside the `modeling_umt` package and loaded by path (the `evaluate` wheel ships no
metric scripts and there is no Hub access here):

    import evaluate
    from modeling_umt.metrics import metric_path
    accuracy = evaluate.load(metric_path("accuracy"))
    accuracy.compute(predictions=[0, 2, 1], references=[0, 1, 1])      # {"accuracy": 0.666...}

predictions / references: one integer class id per example. With `sample_weight` the mean is weighted;
`normalize=False` returns the (weighted) count of correct predictions instead of the fraction.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy: the (optionally weighted) fraction of predictions that equal their reference label."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids, shape (N,).
    references (`list` of `int`): true class ids, shape (N,).
    normalize (`bool`, defaults to True): return the fraction (True) or the count (False) of correct predictions.
    sample_weight (`list` of `float`, *optional*): one weight per example.
Returns:
    accuracy (`float`): in [0, 1] when normalize, else the count.
Examples:
    >>> accuracy = evaluate.load(metric_path("accuracy"))
    >>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""
_CITATION = ""


# The `_info` below is evaluate's required declaration, the same shape in every metric module: each module must
# stand alone, since `evaluate.load` imports it by path.
@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape:
            raise ValueError(
                f"predictions {predictions.shape} and references {references.shape} must have the same length"
            )
        correct = (predictions == references).astype(np.float64)
        weights = np.ones_like(correct) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != correct.shape:
            raise ValueError(f"sample_weight has shape {weights.shape}, expected {correct.shape} (one per example)")
        total = float((correct * weights).sum())
        if not normalize:
            return {"accuracy": total}
        if weights.sum() == 0:
            raise ValueError("predictions is empty (or every sample_weight is 0): accuracy is undefined")
        return {"accuracy": total / float(weights.sum())}
