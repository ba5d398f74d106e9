"""Open-ended QA accuracy by exact match (official `tasks/vqa_utils.eval_simple_qa_acc`): 100 x the fraction of
questions whose predicted answer string equals the reference answer. A question with no prediction (None) counts as
wrong. An `evaluate` metric shipped inside the `modeling_umt` package and loaded by path:

    import evaluate
    from modeling_umt.metrics import metric_path
    qa = evaluate.load(metric_path("qa_accuracy"))
    qa.compute(predictions=["red", "left", None], references=["red", "right", "up"])   # {"accuracy": 33.33...}

`question_types` (one string per question) adds `accuracy_<type>` for each type.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Exact-match QA accuracy in percent (official eval_simple_qa_acc); missing predictions are wrong."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str` or None): the predicted answer of each question.
    references (`list` of `str`): the reference answer of each question.
    question_types (`list` of `str`, *optional*): a type per question; adds `accuracy_<type>` per type.
Returns:
    accuracy (`float`): 100 x mean exact match; `accuracy_<type>` per question type when given.
Examples:
    >>> qa = evaluate.load(metric_path("qa_accuracy"))
    >>> qa.compute(predictions=["yes", "no"], references=["yes", "yes"])
    {'accuracy': 50.0}
"""
_CITATION = ""


# The `_info` below is evaluate's required declaration, the same shape in every metric module: each module must
# stand alone, since `evaluate.load` imports it by path.
@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class QAAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, question_types=None):
        if len(predictions) != len(references):
            raise ValueError(f"predictions ({len(predictions)}) and references ({len(references)}) must have the "
                             "same length")
        if not references:
            raise ValueError("references is empty: accuracy is undefined")
        correct = np.array([p is not None and p == r for p, r in zip(predictions, references)], dtype=np.float64)
        result = {"accuracy": 100.0 * float(correct.mean())}
        if question_types is not None:
            if len(question_types) != len(references):
                raise ValueError(f"question_types has {len(question_types)} entries, expected {len(references)}")
            types = np.asarray(question_types, dtype=object)
            for name in sorted(set(question_types)):
                result[f"accuracy_{name}"] = 100.0 * float(correct[types == name].mean())
        return result
