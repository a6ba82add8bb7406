"""Popularity bands, per-group means and the band summaries of a result, against hand-computed values."""

import math

import numpy as np
import pytest

from raysearch.config import EvalConfig
from raysearch.errors import ConfigError
from raysearch.evaluation import EvalResult, group_means, popularity_bands
from raysearch.evaluation.breakdown import band_recall, band_slot_counts


def test_popularity_bands_hand_computed():
    popularity = np.array([5, 1, 5, 0, 3, 2, 2, 9, 0, 1])
    # order (most popular first, ties by id): 7, 0, 2, 4, 5, 6, 1, 9, 3, 8
    # head: first floor(0.2*10)=2 -> 7, 0; mid: up to floor(0.5*10)=5 -> 2, 4, 5; tail: the rest
    expected = {7: 0, 0: 0, 2: 1, 4: 1, 5: 1, 6: 2, 1: 2, 9: 2, 3: 2, 8: 2}
    bands = popularity_bands(popularity)
    assert bands.dtype == np.int8
    assert bands.tolist() == [expected[i] for i in range(10)]


def test_popularity_bands_ties_by_item_id_and_floor():
    # 7 equal items: head floor(1.4)=1 (item 0), mid up to floor(3.5)=3 (items 1, 2), tail 3..6
    assert popularity_bands(np.zeros(7)).tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert popularity_bands(np.arange(4), shares=(0.5, 0.25, 0.25)).tolist() == [2, 1, 0, 0]


def test_popularity_bands_default_matches_the_config():
    assert popularity_bands(np.arange(100)[::-1]).tolist() == popularity_bands(
        np.arange(100)[::-1], EvalConfig().bands).tolist()
    assert np.bincount(popularity_bands(np.arange(100))).tolist() == [20, 30, 50]


def test_popularity_bands_bad_shares():
    with pytest.raises(ConfigError) as err:
        popularity_bands(np.ones(5), shares=(0.5, 0.5, 0.5))
    assert str(err.value) == (
        "eval.bands: must be three positive shares (head, mid, tail) summing to 1, got [0.5, 0.5, 0.5]"
    )


def test_band_slot_counts_and_recall():
    bands = np.array([0, 1, 2, 2])
    top = np.array([[3, 2, 0], [1, 0, 2]])
    filled = np.array([[True, True, True], [True, False, False]])
    assert band_slot_counts(top, filled, bands, 2).tolist() == [[0, 0, 2], [0, 1, 0]]
    assert band_slot_counts(top, filled, bands, 3).tolist() == [[1, 0, 2], [0, 1, 0]]
    # query 0: targets in band 2 at positions 0 and 5; query 1: a band-0 target at position 1
    recall = band_recall(np.array([0, 0, 1]), np.array([0, 5, 1]), np.array([2, 2, 0]), 2, k=2)
    assert np.array_equal(recall, [[np.nan, np.nan, 0.5], [1.0, np.nan, np.nan]], equal_nan=True)


def _result():
    per_user = {"recall@10": np.array([1.0, 0.0, 0.5]), "ndcg@10": np.array([0.6, 0.0, 0.3])}
    bands = {
        "recall@10": np.array([[1.0, np.nan, np.nan], [0.0, np.nan, 0.0], [np.nan, np.nan, 1.0]]),
        "slots@10": np.array([[6, 3, 1], [4, 4, 2], [10, 0, 0]]),
    }
    return EvalResult(np.array([0, 1, 3]), per_user, {"protocol": "full"}, bands)


def test_group_means_hand_computed():
    groups = np.array([2, 0, 5, 2])  # users 0 and 3 in group 2, user 1 in group 0, user 2 not evaluated
    means = group_means(_result(), groups)
    assert means == {0: {"recall@10": 0.0, "ndcg@10": 0.0}, 2: {"recall@10": 0.75, "ndcg@10": pytest.approx(0.45)}}
    with pytest.raises(ValueError, match="an entry for every user id"):
        group_means(_result(), np.array([0, 1]))


def test_band_means():
    summary = _result().band_means
    assert summary["recall@10"]["head"] == 0.5 and summary["recall@10"]["tail"] == 0.5
    assert math.isnan(summary["recall@10"]["mid"])  # no user has a held-out mid item
    assert summary["share@10"] == pytest.approx({"head": 20 / 30, "mid": 7 / 30, "tail": 3 / 30})


def test_result_summary_and_empty_merge():
    res = _result()
    assert res.means == pytest.approx({"recall@10": 0.5, "ndcg@10": 0.3})
    summary = res.to_dict()
    assert summary["n_users"] == 3 and summary["protocol"] == {"protocol": "full"} and "bands" in summary
    empty = EvalResult(np.zeros(0, np.int64), {"recall@10": np.zeros(0)}, {"protocol": "full"})
    assert math.isnan(empty.means["recall@10"])
    with pytest.raises(ValueError, match="at least one"):
        EvalResult.merge([])
