"""Text-video retrieval recall: R@1 / R@5 / R@10, mean recall and median rank, as UMT reports them.

An `evaluate` metric shipped inside the `modeling_umt` package and loaded by path (no Hub access needed):

    import evaluate
    from modeling_umt.metrics import metric_path
    recall = evaluate.load(metric_path("retrieval"))
    recall.compute(predictions=scores, references=gt)      # one direction (e.g. text -> video)

predictions: one row of scores per query over the whole gallery (higher = better), e.g. the (T, V) text-to-video
    score matrix as a list of rows. references: for each query, the gallery indices that are correct (a list, since a
    video can have several captions; an int is accepted for one). A query's rank is that of its best-ranked correct
    item (official `itm_eval`); ties are broken by gallery order (numpy's stable argsort of the negated scores, where
    the official code's reversed argsort breaks them the other way).
Returns {"r1", "r5", "r10", "r_mean", "median_rank", "num_queries"}; recalls in percent.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Recall@K (K = 1, 5, 10), their mean and the median rank for cross-modal retrieval."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): scores of every gallery item for each query, shape (Q, G).
    references (`list` of `list` of `int`): indices of the correct gallery items for each query.
Returns:
    r1, r5, r10 (`float`): percentage of queries with a correct item in the top 1 / 5 / 10.
    r_mean (`float`): (r1 + r5 + r10) / 3.
    median_rank (`float`): median over queries of the 1-based rank of the best correct item.
    num_queries (`int`).
Examples:
    >>> recall = evaluate.load(metric_path("retrieval"))
    >>> recall.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[[0], [1]])["r1"]
    100.0
"""
_CITATION = """@inproceedings{li2023unmasked,
  title={Unmasked Teacher: Towards Training-Efficient Video Foundation Models},
  author={Li, Kunchang and Wang, Yali and Li, Yizhuo and Wang, Yi and He, Yinan and Wang, Limin and Qiao, Yu},
  booktitle={ICCV}, year={2023}}"""


def ranks_of_best_match(scores: np.ndarray, references) -> np.ndarray:
    """(Q, G) scores and per-query correct indices -> (Q,) 0-based rank of the best-ranked correct item."""
    order = np.argsort(-scores, axis=1, kind="stable")
    position = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    position[rows, order] = np.arange(scores.shape[1])[None, :]
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for q, correct in enumerate(references):
        correct = [correct] if isinstance(correct, (int, np.integer)) else list(correct)
        if not correct:
            raise ValueError(f"references[{q}] is empty: every query needs at least one correct gallery index")
        if min(correct) < 0 or max(correct) >= scores.shape[1]:
            raise ValueError(f"references[{q}] = {correct} holds an index outside the gallery of {scores.shape[1]}")
        ranks[q] = position[q, correct].min()
    return ranks


# The `_info` below is evaluate's required declaration, the same shape in every metric module: each module must
# stand alone, since `evaluate.load` imports it by path.
@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        scores = np.asarray(predictions, dtype=np.float64)
        if scores.ndim != 2:
            raise ValueError(f"predictions must be a (queries, gallery) matrix, got shape {scores.shape}")
        ranks = ranks_of_best_match(scores, references)
        recall = {f"r{k}": float(100.0 * np.mean(ranks < k)) for k in (1, 5, 10)}
        recall["r_mean"] = (recall["r1"] + recall["r5"] + recall["r10"]) / 3
        recall["median_rank"] = float(np.median(ranks + 1))
        recall["num_queries"] = int(len(ranks))
        return recall
