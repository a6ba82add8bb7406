"""Full-ranking evaluation: hand-computed cases, tie rules, masking, batching, shards, and a brute-force
reference (a full sort per user) on random data with ties."""

import math

import numpy as np
import pytest
import torch

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, RaysearchError
from raysearch.evaluation import EvalResult, evaluate_full

ALL = ("recall", "ndcg", "mrr", "hit", "precision")


def table_scorer(scores: np.ndarray):
    """score_fn over a fixed (n_users, n_items) table (row gather: a fresh tensor)."""
    table = torch.as_tensor(scores)
    return lambda users: table[users]


def pairs(n_users, n_items, rows):
    """Interactions from {user: [items]}."""
    users = [u for u, items in rows.items() for _ in items]
    items = [i for its in rows.values() for i in its]
    return Interactions.from_pairs(np.array(users, dtype=np.int64), np.array(items, dtype=np.int64), n_users, n_items)


def d(position):
    return 1 / math.log2(position + 2)


# ----------------------------------------------------------------------------------- hand-computed
def test_hand_computed_with_masked_top_item():
    # item 0 is the user's train item with the highest score: masked, it must not take a slot.
    train = pairs(1, 6, {0: [0]})
    test = pairs(1, 6, {0: [2, 4]})
    scores = np.array([[10.0, 1.0, 3.0, 5.0, 4.0, 2.0]])  # ranking after masking: 3, 4, 2, 5, 1
    res = evaluate_full(table_scorer(scores), test, [train], ks=(1, 2, 3))
    m = res.means
    assert m["recall@1"] == 0 and m["ndcg@1"] == 0 and m["mrr@1"] == 0 and m["hit@1"] == 0
    assert m["recall@2"] == pytest.approx(1 / 2)
    assert m["ndcg@2"] == pytest.approx(d(1) / (d(0) + d(1)))
    assert m["mrr@2"] == pytest.approx(1 / 2)
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((d(1) + d(2)) / (d(0) + d(1)))
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert res.protocol == {
        "protocol": "full", "ks": [1, 2, 3], "metrics": list(ALL), "tie": "pessimistic",
        "exclude": ["exclude[0]"], "n_negatives": None, "n_items": 6,
    }


def test_without_masking_the_train_item_takes_the_slot():
    test = pairs(1, 6, {0: [2, 4]})
    scores = np.array([[10.0, 1.0, 3.0, 5.0, 4.0, 2.0]])
    res = evaluate_full(table_scorer(scores), test, [], ks=(3,))
    assert res.means["recall@3"] == pytest.approx(1 / 2)  # 0, 3, 4 take the slots


def test_every_excluded_part_is_masked_and_named():
    train = pairs(1, 5, {0: [0]})
    valid = pairs(1, 5, {0: [1]})
    test = pairs(1, 5, {0: [4]})
    scores = np.array([[9.0, 8.0, 1.0, 2.0, 3.0]])
    res = evaluate_full(table_scorer(scores), test, {"train": train, "valid": valid}, ks=(1,))
    assert res.means["hit@1"] == 1.0
    assert res.protocol["exclude"] == ["train", "valid"]


def test_constant_model_gets_nothing_pessimistic_and_full_marks_optimistic():
    rng = np.random.default_rng(0)
    train = Interactions.from_pairs(rng.integers(0, 5, 30), rng.integers(0, 50, 30), 5, 50)
    test = pairs(5, 50, {0: [40, 41], 1: [42], 2: [43, 44, 45], 4: [46]})
    scores = np.zeros((5, 50), dtype=np.float32)
    pess = evaluate_full(table_scorer(scores), test, [train], ks=(1, 2, 10))
    assert all(v == 0 for v in pess.means.values())
    opt = evaluate_full(table_scorer(scores), test, [train], ks=(1, 2, 10), tie="optimistic")
    # held-out items first (by id): positions 0..|T|-1
    assert opt.per_user["recall@2"] == pytest.approx([1, 1, 2 / 3, 1])
    assert opt.per_user["ndcg@2"] == pytest.approx([1, 1, 1, 1])
    assert opt.per_user["mrr@1"] == pytest.approx([1, 1, 1, 1])
    assert opt.per_user["precision@2"] == pytest.approx([1, 1 / 2, 1, 1 / 2])


def test_ties_between_heldout_items_break_by_item_id():
    test = pairs(1, 6, {0: [1, 3]})
    scores = np.array([[5.0, 7.0, 0.0, 7.0, 1.0, 2.0]])  # held-out 1 and 3 tie at the top
    res = evaluate_full(table_scorer(scores), test, [], ks=(1, 2))
    # item 1 at position 0, item 3 at position 1: a valid permutation, NDCG exactly 1
    assert res.per_user["ndcg@2"] == pytest.approx([1.0])
    assert res.per_user["recall@1"] == pytest.approx([0.5])


def test_pessimistic_tie_at_the_topk_threshold_counts_the_whole_row():
    # the held-out item ties with 5 other items at the K-th score: only a row count can tell it is last
    test = pairs(1, 8, {0: [7]})
    scores = np.array([[9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]])
    for k in (2, 6):  # K_max = 2 and 6 cut through the tied items
        assert evaluate_full(table_scorer(scores), test, [], ks=(k,)).per_user[f"hit@{k}"].tolist() == [0.0]
    pess = evaluate_full(table_scorer(scores), test, [], ks=(7,))
    assert pess.per_user["mrr@7"] == pytest.approx([1 / 7])  # after 0 and the five tied items
    opt = evaluate_full(table_scorer(scores), test, [], ks=(2,), tie="optimistic")
    assert opt.per_user["mrr@2"] == pytest.approx([1 / 2])


def test_users_without_heldout_items_are_skipped(toy_train):
    test = pairs(4, 6, {1: [3], 3: [1]})
    res = evaluate_full(table_scorer(np.random.default_rng(1).random((4, 6))), test, [toy_train], ks=(5,))
    assert res.users.tolist() == [1, 3]


def test_k_larger_than_the_candidates():
    train = pairs(2, 4, {0: [0], 1: [0, 1, 2]})
    test = pairs(2, 4, {0: [2, 3], 1: [3]})
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    res = evaluate_full(table_scorer(scores), test, [train], ks=(10, 100), item_bands=np.array([0, 1, 2, 2]))
    assert res.per_user["recall@100"] == pytest.approx([1, 1])
    assert res.per_user["ndcg@10"] == pytest.approx([(d(1) + d(2)) / (d(0) + d(1)), 1])
    assert res.per_user["precision@10"] == pytest.approx([0.2, 0.1])
    # user 0's list holds 3 candidates (1, 2, 3), user 1's only item 3
    assert res.bands["slots@10"].tolist() == [[0, 1, 2], [0, 0, 1]]


def test_minus_inf_scores_are_never_recommended():
    test = pairs(1, 4, {0: [1]})
    scores = np.array([[1.0, -np.inf, -np.inf, 0.0]])
    res = evaluate_full(table_scorer(scores), test, [], ks=(4,), item_bands=np.array([0, 0, 1, 2]))
    assert res.per_user["hit@4"] == [0]
    assert res.bands["slots@4"].tolist() == [[1, 0, 1]]


def test_heldout_item_also_excluded_is_masked_but_counted():
    train = pairs(1, 5, {0: [0]})
    test = pairs(1, 5, {0: [0, 1]})
    scores = np.array([[9.0, 8.0, 1.0, 1.0, 1.0]])
    res = evaluate_full(table_scorer(scores), test, [train], ks=(1,))
    assert res.per_user["recall@1"] == pytest.approx([0.5])  # item 1 is first; item 0 can never be hit


# ----------------------------------------------------------------------------------- mechanics
def test_batching_gives_identical_results():
    train, test, scores = random_case(np.random.default_rng(3), 40, 25, integer=True)
    bands = np.random.default_rng(4).integers(0, 3, 25)
    one = evaluate_full(table_scorer(scores), test, [train], ks=(1, 5, 30), batch_users=1, item_bands=bands)
    big = evaluate_full(table_scorer(scores), test, [train], ks=(1, 5, 30), batch_users=1000, item_bands=bands)
    assert np.array_equal(one.users, big.users)
    for key in one.per_user:
        assert np.array_equal(one.per_user[key], big.per_user[key]), key
    for key in one.bands:
        assert np.array_equal(one.bands[key], big.bands[key], equal_nan=True), key


def test_shards_merge_to_the_whole_evaluation():
    train, test, scores = random_case(np.random.default_rng(5), 60, 30, integer=False)
    bands = np.random.default_rng(6).integers(0, 3, 30)
    kwargs = dict(ks=(3, 10), batch_users=7, item_bands=bands)
    whole = evaluate_full(table_scorer(scores), test, [train], **kwargs)
    shard_of = np.random.default_rng(7).integers(0, 3, 60)
    shards = [
        evaluate_full(table_scorer(scores), test, [train], users=np.flatnonzero(shard_of == s), **kwargs)
        for s in (2, 0, 1)
    ]
    merged = EvalResult.merge(shards)
    assert np.array_equal(merged.users, whole.users)
    assert merged.means == pytest.approx(whole.means)
    for key in whole.per_user:
        assert np.array_equal(merged.per_user[key], whole.per_user[key]), key
    for key in whole.bands:
        assert np.array_equal(merged.bands[key], whole.bands[key], equal_nan=True), key
    merged_bands, whole_bands = merged.band_means, whole.band_means
    assert merged_bands.keys() == whole_bands.keys()
    for key in whole_bands:
        assert np.allclose(list(merged_bands[key].values()), list(whole_bands[key].values()), equal_nan=True)


def test_merge_refuses_overlaps_and_other_protocols():
    train, test, scores = random_case(np.random.default_rng(8), 10, 12, integer=False)
    a = evaluate_full(table_scorer(scores), test, [train], ks=(3,), users=[0, 1, 2])
    b = evaluate_full(table_scorer(scores), test, [train], ks=(3,), users=[2, 3])
    with pytest.raises(ValueError, match="appears in more than one result"):
        EvalResult.merge([a, b])
    c = evaluate_full(table_scorer(scores), test, [train], ks=(3,), users=[5], tie="optimistic")
    with pytest.raises(ValueError, match="different protocols"):
        EvalResult.merge([a, c])


def test_score_fn_view_is_not_modified():
    train = pairs(3, 5, {0: [0], 1: [1], 2: [2]})
    test = pairs(3, 5, {0: [4], 1: [3], 2: [4]})
    table = torch.arange(15, dtype=torch.float32).reshape(3, 5)
    before = table.clone()
    evaluate_full(lambda u: table[int(u[0]) : int(u[-1]) + 1], test, [train], ks=(2,), batch_users=2)
    assert torch.equal(table, before)


def test_nan_scores_stop_with_one_message():
    test = pairs(1, 3, {0: [1]})
    with pytest.raises(RaysearchError, match="scores contain NaN"):
        evaluate_full(table_scorer(np.array([[0.0, np.nan, 1.0]])), test, [], ks=(1,))


def test_bad_arguments():
    test = pairs(2, 3, {0: [1]})
    scorer = table_scorer(np.zeros((2, 3)))
    with pytest.raises(ConfigError, match=r"^eval\.metrics: unknown metric 'auc'"):
        evaluate_full(scorer, test, [], ks=(1,), metrics=("auc",))
    with pytest.raises(ConfigError, match=r"^eval\.batch_users: must be >= 1"):
        evaluate_full(scorer, test, [], ks=(1,), batch_users=0)
    with pytest.raises(ValueError, match=r"score_fn returned shape \(1, 2\), expected \(1, 3\)"):
        evaluate_full(lambda u: torch.zeros(len(u), 2), test, [], ks=(1,))
    with pytest.raises(ValueError, match="excluded part 'train' has shape"):
        evaluate_full(scorer, test, {"train": Interactions.empty(2, 4)}, ks=(1,))


# ----------------------------------------------------------------------------------- brute force
def random_case(rng, n_users, n_items, integer):
    """Random train / held-out (overlapping a little), some users without held-out items, and scores
    (small integers when ``integer``, so that ties are common, and a few -inf)."""
    train = Interactions.from_pairs(rng.integers(0, n_users, 4 * n_users), rng.integers(0, n_items, 4 * n_users),
                                    n_users, n_items)
    test = Interactions.from_pairs(rng.integers(0, n_users, 2 * n_users), rng.integers(0, n_items, 2 * n_users),
                                   n_users, n_items)
    scores = rng.integers(0, 4, (n_users, n_items)).astype(np.float64) if integer else rng.normal(size=(n_users, n_items))
    scores[rng.random((n_users, n_items)) < 0.03] = -np.inf
    return train, test, scores


def brute_force(scores, test, excluded, ks, tie, bands=None):
    """Per-user metrics by sorting every user's candidates plainly (the documented tie rules)."""
    out = {f"{m}@{k}": [] for m in ALL for k in ks}
    band_out = {f"recall@{k}": [] for k in ks} | {f"slots@{k}": [] for k in ks}
    users = []
    for u in range(test.n_users):
        held = set(test.row(u).tolist())
        if not held:
            continue
        users.append(u)
        masked = set().union(*(set(p.row(u).tolist()) for p in excluded))
        cands = [i for i in range(test.n_items) if i not in masked and scores[u, i] > -np.inf]
        # pessimistic: non-held-out before held-out at equal score; optimistic: the reverse
        first = 1 if tie == "pessimistic" else 0
        ranked = sorted(cands, key=lambda i: (-scores[u, i], first if i in held else 1 - first, i))
        pos = {i: p for p, i in enumerate(ranked) if i in held}
        for k in ks:
            hits = [p for p in pos.values() if p < k]
            idcg = sum(d(r) for r in range(min(len(held), k)))
            out[f"recall@{k}"].append(len(hits) / len(held))
            out[f"precision@{k}"].append(len(hits) / k)
            out[f"hit@{k}"].append(float(bool(hits)))
            out[f"mrr@{k}"].append(1 / (min(hits) + 1) if hits else 0.0)
            out[f"ndcg@{k}"].append(sum(d(p) for p in hits) / idcg)
            if bands is not None:
                per_band = []
                for b in range(3):
                    in_band = [i for i in held if bands[i] == b]
                    per_band.append(sum(pos.get(i, k) < k for i in in_band) / len(in_band) if in_band else np.nan)
                band_out[f"recall@{k}"].append(per_band)
    return users, out, band_out


@pytest.mark.parametrize("ks", [(1, 3, 7), (2, 25)])  # K_max below and above the 20 items
@pytest.mark.parametrize("tie", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed, integer, tie, ks):
    rng = np.random.default_rng(100 + seed)
    n_users, n_items = 50, 20
    train, test, scores = random_case(rng, n_users, n_items, integer)
    valid = Interactions.from_pairs(rng.integers(0, n_users, 30), rng.integers(0, n_items, 30), n_users, n_items)
    bands = rng.integers(0, 3, n_items)
    res = evaluate_full(table_scorer(scores), test, [train, valid], ks=ks, tie=tie, batch_users=16,
                        item_bands=bands)
    users, expected, expected_bands = brute_force(scores, test, [train, valid], ks, tie, bands)
    assert res.users.tolist() == users
    for key, values in expected.items():
        assert res.per_user[key] == pytest.approx(values, abs=1e-12), key
    for k in ks:
        assert np.allclose(res.bands[f"recall@{k}"], expected_bands[f"recall@{k}"], equal_nan=True)
    assert (res.per_user[f"ndcg@{ks[-1]}"] <= 1 + 1e-12).all()


def test_band_breakdown_hand_computed():
    test = pairs(1, 6, {0: [1, 4]})
    scores = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    bands = np.array([0, 0, 1, 1, 2, 2])
    res = evaluate_full(table_scorer(scores), test, [], ks=(2, 5), item_bands=bands)
    assert res.bands["slots@2"].tolist() == [[2, 0, 0]]
    assert res.bands["slots@5"].tolist() == [[2, 2, 1]]
    assert np.array_equal(res.bands["recall@2"], [[1.0, np.nan, 0.0]], equal_nan=True)
    assert np.array_equal(res.bands["recall@5"], [[1.0, np.nan, 1.0]], equal_nan=True)
    assert res.band_means["share@5"] == pytest.approx({"head": 0.4, "mid": 0.4, "tail": 0.2})
    assert res.band_means["recall@2"]["tail"] == 0.0 and math.isnan(res.band_means["recall@2"]["mid"])


def test_evaluation_bench_small_synthetic():
    from raysearch.bench.evaluation import _synthetic_split, run
    from raysearch.rng import make_rng

    train, test = _synthetic_split(300, 500, make_rng(0))
    assert train.nnz == round(810_128 * 300 / 29_858) and test.nnz == round(217_242 * 300 / 29_858)
    assert not train.contains(*test.pairs()).any()  # disjoint
    assert (test.user_counts() >= 7).all()
    lines = []
    figures = run(report=lines.append, users=300, items=500, dim=8, threads=1)
    assert figures["data"] == "synthetic" and figures["evaluated_users"] == 300 and figures["threads"] == 1
    assert 0 < figures["means"]["recall@20"] < 1 and figures["seconds"] > 0 and len(lines) == 4
