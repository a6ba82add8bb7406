"""Sampled protocol (SRNS/GDNS): hand-computed ranks, tie rules, -1 padding, per-user averaging, batching,
shards, and a plain reference on random data with ties."""

import math

import numpy as np
import pytest
import torch

from raysearch.data.interactions import Interactions
from raysearch.errors import DataError, RaysearchError
from raysearch.evaluation import EvalResult, evaluate_sampled

ALL = ("recall", "ndcg", "mrr", "hit", "precision")


def pair_scorer(scores: np.ndarray, as_numpy: bool = False):
    """score_fn_pairs over a fixed (n_users, n_items) table."""
    table = torch.as_tensor(scores)

    def score(users, items):
        out = table[users[:, None], items]
        return out.numpy() if as_numpy else out

    return score


def single(n_users, n_items, rows):
    users = [u for u, items in rows.items() for _ in items]
    items = [i for its in rows.values() for i in its]
    return Interactions.from_pairs(np.array(users, dtype=np.int64), np.array(items, dtype=np.int64), n_users, n_items)


def test_hand_computed_ranks_and_tie_rules():
    # held-out item 5 scores 0.5; negatives 1, 2, 3 score 0.9, 0.5 (a tie), 0.1
    scores = np.array([[0.0, 0.9, 0.5, 0.1, 0.0, 0.5]])
    test = single(1, 6, {0: [5]})
    negatives = np.array([[1, 2, 3]])
    opt = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 2, 3), tie="optimistic").means  # rank 1
    pess = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 2, 3)).means  # rank 2
    assert opt["recall@1"] == 0 and opt["recall@2"] == 1 and opt["hit@2"] == 1
    assert opt["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert opt["mrr@3"] == pytest.approx(1 / 2)
    assert opt["precision@2"] == pytest.approx(1 / 2)
    assert pess["recall@2"] == 0 and pess["recall@3"] == 1
    assert pess["ndcg@3"] == pytest.approx(1 / math.log2(4))
    assert pess["mrr@3"] == pytest.approx(1 / 3)
    assert pess["precision@3"] == pytest.approx(1 / 3)


def test_constant_model():
    test = single(3, 10, {0: [0], 1: [1], 2: [2]})
    negatives = np.array([[3, 4, 5], [6, 7, 8], [9, 3, 4]])
    scores = np.ones((3, 10))
    pess = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 3))
    assert all(v == 0 for v in pess.means.values())  # rank N = 3 for everyone
    opt = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 3), tie="optimistic")
    assert opt.means["recall@1"] == 1 and opt.means["ndcg@1"] == 1 and opt.means["mrr@3"] == 1
    assert opt.means["precision@3"] == pytest.approx(1 / 3)
    assert opt.protocol == {
        "protocol": "sampled", "ks": [1, 3], "metrics": list(ALL), "tie": "optimistic",
        "exclude": [], "n_negatives": 3, "n_items": 10,
    }


def test_minus_one_entries_are_padding_and_empty_rows_are_skipped():
    # user 0: negatives 2 (above the held-out item) and 3 (below), padded; user 1: no held-out items
    scores = np.zeros((3, 5))
    scores[0] = [9.0, 0.5, 1.0, 0.0, 0.0]  # item 0 would beat the held-out item if a -1 became item 0
    scores[2] = [9.0, 9.0, 1.0, 2.0, 3.0]
    test = single(3, 5, {0: [1], 2: [4]})
    negatives = np.array([[2, -1, 3, -1], [-1, -1, -1, -1], [-1, -1, 2, 3]])
    for tie in ("pessimistic", "optimistic"):
        res = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 2), tie=tie)
        assert res.users.tolist() == [0, 2]
        assert res.per_user["mrr@2"] == pytest.approx([1 / 2, 1.0])  # ranks 1 and 0


def test_pessimistic_minus_inf_target_does_not_count_padding():
    scores = np.array([[-np.inf, -np.inf, 0.0]])
    test = single(1, 3, {0: [0]})
    res = evaluate_sampled(pair_scorer(scores), test, np.array([[1, -1, -1, 2]]), ks=(2, 3))
    # tied with negative 1 (pessimistic: rank 1 + 1 for negative 2), padding never counts: rank 2
    assert res.per_user["hit@2"].tolist() == [0.0] and res.per_user["mrr@3"] == pytest.approx([1 / 3])


def test_user_with_heldout_items_but_no_negatives():
    test = single(2, 4, {0: [1], 1: [2]})
    with pytest.raises(DataError) as err:
        evaluate_sampled(pair_scorer(np.zeros((2, 4))), test, np.array([[0, 3], [-1, -1]]), ks=(1,))
    assert str(err.value) == "sampled negatives: user 1 has held-out items but no negatives (a row of -1)"


def test_negative_ids_out_of_range():
    test = single(1, 4, {0: [1]})
    with pytest.raises(DataError, match=r"item ids must lie in \[0, 4\) or be -1"):
        evaluate_sampled(pair_scorer(np.zeros((1, 4))), test, np.array([[0, 4]]), ks=(1,))
    with pytest.raises(ValueError, match="negatives must be integer"):
        evaluate_sampled(pair_scorer(np.zeros((1, 4))), test, np.array([[0.0, 2.0]]), ks=(1,))


def test_several_heldout_items_average_per_user_first():
    # user 0: held-out 0 ranks 0, held-out 1 ranks 3 (last); user 1: held-out 2 ranks 0
    scores = np.array([[5.0, 0.0, 0.0, 3.0, 2.0, 1.0], [0.0, 0.0, 9.0, 1.0, 1.0, 1.0]])
    test = single(2, 6, {0: [0, 1], 1: [2]})
    negatives = np.array([[3, 4, 5], [3, 4, 5]])
    res = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1,))
    assert res.per_user["recall@1"].tolist() == [0.5, 1.0]
    assert res.means["recall@1"] == pytest.approx(0.75)  # not 2/3, the mean over pairs


def test_k_larger_than_the_list():
    scores = np.array([[0.0, 1.0, 2.0]])
    test = single(1, 3, {0: [0]})
    res = evaluate_sampled(pair_scorer(scores), test, np.array([[1, 2]]), ks=(50,))
    assert res.means["recall@50"] == 1 and res.means["ndcg@50"] == pytest.approx(1 / math.log2(4))
    assert res.means["precision@50"] == pytest.approx(1 / 50)


def test_nan_scores_stop():
    test = single(1, 3, {0: [0]})
    with pytest.raises(RaysearchError, match="scores contain NaN"):
        evaluate_sampled(pair_scorer(np.array([[np.nan, 1.0, 2.0]])), test, np.array([[1, 2]]), ks=(1,))


# ----------------------------------------------------------------------------------- random
def random_case(seed, n_users=40, n_items=30, n_neg=8):
    rng = np.random.default_rng(seed)
    test = Interactions.from_pairs(rng.integers(0, n_users, 2 * n_users), rng.integers(0, n_items, 2 * n_users),
                                   n_users, n_items)
    negatives = rng.integers(0, n_items, (n_users, n_neg))
    negatives[rng.random((n_users, n_neg)) < 0.2] = -1
    negatives[:, 0] = rng.integers(0, n_items, n_users)  # at least one real negative
    negatives[test.user_counts() == 0] = -1
    scores = rng.integers(0, 4, (n_users, n_items)).astype(np.float32)  # many ties
    return test, negatives, scores


def reference(scores, test, negatives, ks, tie):
    """Per-user values by a plain loop over users and their held-out items."""
    out = {f"{m}@{k}": [] for m in ALL for k in ks}
    for u in range(test.n_users):
        held = test.row(u).tolist()
        if not held:
            continue
        negs = [j for j in negatives[u] if j >= 0]
        per_item = {key: [] for key in out}
        for i in held:
            s = scores[u, i]
            rank = sum(scores[u, j] >= s if tie == "pessimistic" else scores[u, j] > s for j in negs)
            for k in ks:
                hit = rank < k
                per_item[f"recall@{k}"].append(float(hit))
                per_item[f"hit@{k}"].append(float(hit))
                per_item[f"ndcg@{k}"].append(1 / math.log2(rank + 2) if hit else 0.0)
                per_item[f"mrr@{k}"].append(1 / (rank + 1) if hit else 0.0)
                per_item[f"precision@{k}"].append(hit / k)
        for key in out:
            out[key].append(np.mean(per_item[key]))
    return out


@pytest.mark.parametrize("tie", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed, tie):
    test, negatives, scores = random_case(seed)
    ks = (1, 3, 20)
    res = evaluate_sampled(pair_scorer(scores, as_numpy=seed == 1), test, negatives, ks=ks, tie=tie, batch_users=7)
    for key, values in reference(scores, test, negatives, ks, tie).items():
        assert res.per_user[key] == pytest.approx(values, abs=1e-12), key


def test_optimistic_never_below_pessimistic_and_differs_on_ties():
    test, negatives, scores = random_case(3)
    opt = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(3,), tie="optimistic")
    pess = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(3,))
    assert (opt.per_user["ndcg@3"] >= pess.per_user["ndcg@3"]).all()
    assert opt.means["ndcg@3"] > pess.means["ndcg@3"]
    # with distinct scores (and negatives disjoint from the held-out items) the two rules agree
    disjoint = np.where(test.contains(np.arange(test.n_users)[:, None], negatives), -1, negatives)
    users = np.flatnonzero((disjoint >= 0).any(axis=1))
    distinct = np.random.default_rng(4).permutation(scores.size).reshape(scores.shape).astype(np.float64)
    a = evaluate_sampled(pair_scorer(distinct), test, disjoint, ks=(3,), tie="optimistic", users=users)
    b = evaluate_sampled(pair_scorer(distinct), test, disjoint, ks=(3,), users=users)
    assert a.n_users > 20
    assert a.per_user["ndcg@3"].tolist() == b.per_user["ndcg@3"].tolist()


def test_batching_and_shards():
    test, negatives, scores = random_case(5)
    whole = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 5), batch_users=1000)
    one = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 5), batch_users=1)
    shard_of = np.arange(test.n_users) % 3
    merged = EvalResult.merge([
        evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 5), users=np.flatnonzero(shard_of == s))
        for s in range(3)
    ])
    for other in (one, merged):
        assert np.array_equal(other.users, whole.users)
        for key in whole.per_user:
            assert np.array_equal(other.per_user[key], whole.per_user[key]), key


def test_popularity_bands_of_the_heldout_items():
    # items 0..5, bands: 0,1 head; 2,3 mid; 4,5 tail. User 0 holds out 4 (tail) and 2 (mid), user 1
    # holds out 0 (head). Negatives of both users: 1, 3, 5 scoring 0.6, 0.4, 0.2.
    scores = np.array([[0.0, 0.6, 0.5, 0.4, 0.9, 0.2],   # 4 ranks 0, 2 ranks 1
                       [0.1, 0.6, 0.0, 0.4, 0.0, 0.2]])  # 0 ranks 3 (below 1, 3, 5)
    test = single(2, 6, {0: [4, 2], 1: [0]})
    negatives = np.array([[1, 3, 5], [1, 3, 5]])
    bands = np.array([0, 0, 1, 1, 2, 2])
    result = evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1, 4), item_bands=bands)
    nan = math.nan
    np.testing.assert_array_equal(result.bands["recall@1"], [[nan, 0.0, 1.0], [0.0, nan, nan]])
    np.testing.assert_array_equal(result.bands["recall@4"], [[nan, 1.0, 1.0], [1.0, nan, nan]])
    assert "slots@1" not in result.bands  # top-K composition is undefined against sampled negatives
    assert result.band_means["recall@1"] == {"head": 0.0, "mid": 0.0, "tail": 1.0}
    with pytest.raises(ValueError, match="item_bands"):
        evaluate_sampled(pair_scorer(scores), test, negatives, ks=(1,), item_bands=np.array([0, 1, 2]))
