"""The `evaluate` retrieval metric shipped in modeling_umt/metrics/retrieval.py, and the recall summary built on it."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
import torch

from modeling_umt.retrieval_evaluation import METRIC_PATH, recall_metrics


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(METRIC_PATH)


def test_recall_at_k_uses_the_best_ranked_correct_item(metric):
    scores = [
        [0.9, 0.1, 0.3],  # correct 0 at rank 1
        [0.2, 0.1, 0.8],  # correct 1 at rank 3
        [0.5, 0.6, 0.1],  # correct {2, 0}: 0 is at rank 2
    ]
    out = metric.compute(predictions=scores, references=[[0], [1], [2, 0]])
    assert out["r1"] == pytest.approx(100 / 3) and out["r5"] == 100.0 and out["median_rank"] == 2.0
    assert out["r_mean"] == pytest.approx((100 / 3 + 200) / 3) and out["num_queries"] == 3


def test_matches_the_official_rank_definition_on_random_scores(metric):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 60))
    references = [[int(i)] for i in rng.integers(0, 60, size=40)]
    ranks = [int(np.where(np.argsort(s)[::-1] == r[0])[0][0]) for s, r in zip(scores, references)]  # official itm_eval
    out = metric.compute(predictions=scores.tolist(), references=references)
    for k in (1, 5, 10):
        assert out[f"r{k}"] == pytest.approx(100.0 * np.mean(np.array(ranks) < k))


def test_bad_references_are_named(metric):
    with pytest.raises(ValueError, match="references"):
        metric.compute(predictions=[[0.1, 0.2]], references=[[5]])


def test_recall_metrics_both_directions(metric):
    itc = torch.eye(3) + 0.01 * torch.arange(9.0).view(3, 3)  # videos x texts, each video's own caption best
    out = recall_metrics(itc, itc.T, txt2video=[0, 1, 2], video2txt=[[0], [1], [2]], metric=metric)
    assert out["v2t_r1"] == out["t2v_r1"] == 100.0 and out["r_mean"] == 100.0
