"""Metric definitions against hand-computed values, and the validation of protocol arguments."""

import math

import numpy as np
import pytest

from raysearch.errors import ConfigError
from raysearch.evaluation.metrics import (
    METRICS,
    TargetPositions,
    compute_metrics,
    resolve_ks,
    resolve_metrics,
    resolve_tie,
)


@pytest.fixture
def targets() -> TargetPositions:
    """Query 0: 3 targets at positions 0, 2 and (beyond the cutoff) 20; query 1: one target at position 5;
    query 2: 2 targets at positions 1 and 3."""
    return TargetPositions(
        query=np.array([0, 0, 0, 1, 2, 2]),
        position=np.array([0, 2, 20, 5, 3, 1]),
        n_targets=np.array([3, 1, 2]),
    )


def test_registry_names():
    assert METRICS.names() == ["hit", "mrr", "ndcg", "precision", "recall"]


def test_recall(targets):
    assert METRICS.get("recall")(targets, 1) == pytest.approx([1 / 3, 0, 0])
    assert METRICS.get("recall")(targets, 3) == pytest.approx([2 / 3, 0, 1 / 2])
    assert METRICS.get("recall")(targets, 10) == pytest.approx([2 / 3, 1, 1])


def test_precision(targets):
    assert METRICS.get("precision")(targets, 3) == pytest.approx([2 / 3, 0, 1 / 3])
    assert METRICS.get("precision")(targets, 10) == pytest.approx([0.2, 0.1, 0.2])


def test_hit(targets):
    assert METRICS.get("hit")(targets, 1) == pytest.approx([1, 0, 0])
    assert METRICS.get("hit")(targets, 2) == pytest.approx([1, 0, 1])
    assert METRICS.get("hit")(targets, 6) == pytest.approx([1, 1, 1])


def test_mrr_takes_the_first_hit(targets):
    assert METRICS.get("mrr")(targets, 1) == pytest.approx([1, 0, 0])
    assert METRICS.get("mrr")(targets, 5) == pytest.approx([1, 0, 1 / 2])
    assert METRICS.get("mrr")(targets, 6) == pytest.approx([1, 1 / 6, 1 / 2])


def test_ndcg_hand_computed(targets):
    d = [1 / math.log2(r + 2) for r in range(10)]  # discount of positions 0..9
    # K=3: query 0 hits at 0 and 2, IDCG over min(3, 3)=3 ones; query 2 hits at 1, IDCG over 2 ones
    assert METRICS.get("ndcg")(targets, 3) == pytest.approx(
        [(d[0] + d[2]) / (d[0] + d[1] + d[2]), 0, d[1] / (d[0] + d[1])]
    )
    # K=1: IDCG over min(|T|, 1) = 1 one
    assert METRICS.get("ndcg")(targets, 1) == pytest.approx([1, 0, 0])
    # K=10: query 1's single target at position 5
    assert METRICS.get("ndcg")(targets, 10)[1] == pytest.approx(d[5])


def test_perfect_ranking_scores_one():
    perfect = TargetPositions(np.array([0, 0, 0]), np.array([2, 0, 1]), np.array([3]))
    for name in METRICS:
        expected = 3 / 5 if name == "precision" else 1.0
        assert METRICS.get(name)(perfect, 5) == pytest.approx([expected]), name


def test_compute_metrics_keys(targets):
    out = compute_metrics(targets, ("ndcg", "recall"), (10, 3))
    assert list(out) == ["ndcg@10", "ndcg@3", "recall@10", "recall@3"]
    assert all(v.shape == (3,) and v.dtype == np.float64 for v in out.values())


def test_unknown_metric_message():
    with pytest.raises(ConfigError) as err:
        resolve_metrics(["recall", "auc"])
    assert str(err.value) == "eval.metrics: unknown metric 'auc' (known: hit, mrr, ndcg, precision, recall)"


def test_unknown_tie_message():
    with pytest.raises(ConfigError) as err:
        resolve_tie("random")
    assert str(err.value) == "eval.tie: unknown tie rule 'random' (known: optimistic, pessimistic)"


@pytest.mark.parametrize("ks", [(), (0, 10), (5, 2.5), (True,)])
def test_bad_ks(ks):
    with pytest.raises(ConfigError, match=r"^eval\.ks: must be a non-empty list of integers K >= 1"):
        resolve_ks(ks)


def test_ks_and_metrics_deduplicated_in_order():
    assert resolve_ks([20, 10, 20]) == (20, 10)
    assert resolve_metrics(["ndcg", "recall", "ndcg"]) == ("ndcg", "recall")
    assert resolve_tie("optimistic").target_first and not resolve_tie("pessimistic").target_first
