"""Split strategies and sampled negatives: hand-computed counts, RecBole's count rule, chi-square checks."""

import numpy as np
import pytest
from scipy import stats

from raysearch.config import DatasetConfig
from raysearch.data.interactions import Interactions
from raysearch.data.splits import (
    SPLITS,
    SplitInput,
    negative_matrices,
    rank_within_user,
    sample_negatives,
    split_counts,
)
from raysearch.data.table import InteractionTable
from raysearch.errors import ConfigError, DataError


def encoded(users, items, timestamps=None, part="all", source="f.txt") -> InteractionTable:
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    ts = None if timestamps is None else np.asarray(timestamps)
    return InteractionTable(users, items, None, ts, np.arange(1, users.size + 1), part, source)


def split_input(parts: dict, n_users: int, n_items: int) -> SplitInput:
    return SplitInput(parts, np.arange(n_users).astype(str), np.arange(n_items).astype(str))


def run(name: str, parts: dict, n_users: int, n_items: int, **config):
    return SPLITS.get(name)(split_input(parts, n_users, n_items), DatasetConfig(split=name, **config))


def as_set(pairs) -> set:
    return set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))


def recbole_calcu_split_ids(tot: int, ratios: list[float]) -> list[int]:
    """RecBole 1.2 ``Dataset._calcu_split_ids`` (part sizes rather than cumulative ids), as a reference."""
    ratios = [r / sum(ratios) for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


def test_split_counts_hand_values():
    # n=1: all train; n=2: test gets one (0.1*2 < 1), then train has 1 left: stop; n=3: one each;
    # n=10: 8/1/1; n=15: int(1.5) = 1 each, train the rest.
    got = split_counts(np.array([1, 2, 3, 10, 15, 25]), (0.8, 0.1, 0.1)).tolist()
    assert got == [[1, 0, 0], [1, 0, 1], [1, 1, 1], [8, 1, 1], [13, 1, 1], [21, 2, 2]]


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.0, 0.4), (0.9, 0.05, 0.05)])
def test_split_counts_equal_recbole_rule(ratios):
    n = np.arange(0, 200)
    expected = [recbole_calcu_split_ids(int(t), list(ratios)) for t in n]
    assert split_counts(n, ratios).tolist() == expected


def test_rank_within_user_is_a_permutation_per_user():
    users = np.array([2, 0, 2, 2, 0, 1])
    rank, count = rank_within_user(users, 4, np.random.default_rng(0))
    assert count.tolist() == [2, 1, 3, 0]
    for u in range(3):
        assert sorted(rank[users == u].tolist()) == list(range(count[u]))
    ts = np.array([30, 5, 10, 20, 1, 7])
    rank, _ = rank_within_user(users, 4, np.random.default_rng(0), ts)
    assert rank.tolist() == [2, 1, 0, 1, 0, 0]


# --------------------------------------------------------------------------- ratio
def test_ratio_split_partitions_each_user_by_the_count_rule():
    rng = np.random.default_rng(3)
    n_per_user = rng.integers(1, 40, size=50)
    users = np.repeat(np.arange(50), n_per_user)
    items = np.concatenate([rng.choice(100, k, replace=False) for k in n_per_user])
    result = run("ratio", {"all": encoded(users, items)}, 50, 100, ratios=(0.8, 0.1, 0.1))
    parts = [result.train, result.valid, result.test]
    assert set().union(*map(as_set, parts)) == as_set((users, items))
    assert sum(p[0].size for p in parts) == users.size  # disjoint
    got = np.stack([np.bincount(p[0], minlength=50) for p in parts], axis=1)
    assert got.tolist() == split_counts(n_per_user, (0.8, 0.1, 0.1)).tolist()
    again = run("ratio", {"all": encoded(users, items)}, 50, 100, ratios=(0.8, 0.1, 0.1))
    assert as_set(again.test) == as_set(result.test)
    other = run("ratio", {"all": encoded(users, items)}, 50, 100, ratios=(0.8, 0.1, 0.1), split_seed=7)
    assert as_set(other.test) != as_set(result.test)


def test_ratio_split_picks_test_items_uniformly():
    """2,000 users with the same 10 items: each user's test item must be uniform over the 10."""
    users = np.repeat(np.arange(2000), 10)
    items = np.tile(np.arange(10), 2000)
    result = run("ratio", {"all": encoded(users, items)}, 2000, 10)
    counts = np.bincount(result.test[1], minlength=10)
    assert counts.sum() == 2000
    assert stats.chisquare(counts).pvalue > 1e-3


def test_ratio_split_needs_pooled_data():
    parts = {"train": encoded([0], [0], part="train"), "test": encoded([0], [1], part="test")}
    with pytest.raises(ConfigError, match="'ratio' re-splits pooled data.*set dataset.pool: true"):
        run("ratio", parts, 1, 2)


# --------------------------------------------------------------------------- leave-one-out
def test_loo_by_timestamp_hand_example():
    users = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    items = [0, 1, 2, 3, 0, 1, 4, 5, 6]
    times = [40, 10, 30, 20, 1, 2, 5, 5, 9]
    result = run("loo", {"all": encoded(users, items, times)}, 3, 7)
    assert as_set(result.test) == {(0, 0), (2, 6)}
    assert as_set(result.valid) == {(0, 2), (2, 4)} or as_set(result.valid) == {(0, 2), (2, 5)}
    assert {(1, 0), (1, 1)} <= as_set(result.train)  # user 1 (2 interactions) stays in train
    assert result.info["users_train_only"] == 1 and result.info["order"] == "timestamp"


def test_loo_without_timestamps_holds_out_uniformly():
    users = np.repeat(np.arange(3000), 6)
    items = np.tile(np.arange(6), 3000)
    result = run("loo", {"all": encoded(users, items)}, 3000, 6)
    assert result.test[0].size == result.valid[0].size == 3000
    assert not as_set(result.test) & as_set(result.valid)
    assert stats.chisquare(np.bincount(result.test[1], minlength=6)).pvalue > 1e-3


# --------------------------------------------------------------------------- temporal
def test_temporal_split_by_global_time_drops_cold_rows():
    users = [0, 0, 1, 1, 0, 2, 1, 0, 0, 1]
    items = [0, 1, 0, 2, 2, 0, 3, 1, 4, 1]
    times = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    result = run("temporal", {"all": encoded(users, items, times)}, 3, 5, ratios=(0.6, 0.2, 0.2))
    assert as_set(result.train) == {(0, 0), (0, 1), (1, 0), (1, 2), (0, 2), (2, 0)}
    # valid: times 7, 8 -> (1,3) has an item absent from train: dropped; (0,1) kept
    assert as_set(result.valid) == {(0, 1)}
    # test: times 9, 10 -> (0,4) cold item dropped; (1,1) kept
    assert as_set(result.test) == {(1, 1)}
    assert result.info["dropped_cold_rows"] == {"valid": 1, "test": 1}


def test_temporal_split_needs_timestamps():
    with pytest.raises(DataError) as err:
        run("temporal", {"all": encoded([0], [0], source="d.csv")}, 1, 1)
    assert str(err.value) == "d.csv: split 'temporal' needs timestamps, but the data has none"


# --------------------------------------------------------------------------- given
def test_given_split_carves_validation_by_the_count_rule():
    users = np.repeat(np.arange(4), [1, 2, 10, 25])
    items = np.concatenate([np.arange(k) for k in [1, 2, 10, 25]])
    parts = {
        "train": encoded(users, items, part="train"),
        "test": encoded([0, 1, 2, 3], [30, 30, 30, 30], part="test"),
    }
    result = run("given", parts, 4, 31, valid_share=0.1)
    assert np.bincount(result.valid[0], minlength=4).tolist() == [0, 1, 1, 2]
    assert np.bincount(result.train[0], minlength=4).tolist() == [1, 1, 9, 23]
    assert as_set(result.train) | as_set(result.valid) == as_set((users, items))
    assert result.info == {
        "split": "given",
        "cold_users": "error",
        "dropped_cold_rows": {},
        "valid_carved": True,
        "valid_share": 0.1,
        "split_seed": 2026,
    }


def test_given_split_keeps_a_published_validation_part():
    parts = {
        "train": encoded([0, 0], [0, 1], part="train"),
        "valid": encoded([0], [2], part="valid"),
        "test": encoded([0], [3], part="test"),
    }
    result = run("given", parts, 1, 4)
    assert as_set(result.valid) == {(0, 2)} and result.info["valid_carved"] is False


def test_given_split_cold_test_user_is_an_error_or_dropped():
    parts = {
        "train": encoded([0, 0, 1], [0, 1, 0], part="train"),
        "test": encoded([0, 2, 2], [2, 1, 2], part="test", source="data/test.txt"),
    }
    with pytest.raises(DataError) as err:
        run("given", parts, 3, 3)
    assert str(err.value) == (
        "data/test.txt:2: test user '2' has no train interactions "
        "(2 such test rows; set dataset.cold_users: drop to drop them)"
    )
    result = run("given", parts, 3, 3, cold_users="drop")
    assert as_set(result.test) == {(0, 2)}
    assert result.info["dropped_cold_rows"] == {"test": 2}


def test_given_split_needs_train_and_test():
    with pytest.raises(ConfigError, match="'given' needs train and test parts"):
        run("given", {"all": encoded([0], [0])}, 1, 1)


# --------------------------------------------------------------------------- sampled negatives
def test_sample_negatives_excludes_positives_without_repeats():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 1500)
    items = rng.integers(0, 120, 1500)
    positives = Interactions.from_pairs(users, items, 50, 120)
    drawn = sample_negatives(positives, np.arange(50), 40, np.random.default_rng(1))
    assert drawn.shape == (50, 40) and drawn.dtype == np.int64
    assert not positives.contains(np.arange(50)[:, None], drawn).any()
    assert all(np.unique(row).size == 40 for row in drawn)


def test_sample_negatives_is_uniform_over_non_interacted_items():
    positives = Interactions.from_pairs(np.zeros(5, dtype=int), np.arange(5), 1, 25)
    drawn = sample_negatives(positives, np.zeros(4000, dtype=int), 3, np.random.default_rng(2))
    counts = np.bincount(drawn.ravel(), minlength=25)
    assert counts[:5].sum() == 0
    assert stats.chisquare(counts[5:]).pvalue > 1e-3


def test_sample_negatives_tops_up_users_with_few_candidates():
    # user 0 interacted with 97 of 100 items: exactly the other 3 must come back (fallback path)
    positives = Interactions.from_pairs(np.zeros(97, dtype=int), np.arange(3, 100), 1, 100)
    drawn = sample_negatives(positives, np.array([0]), 3, np.random.default_rng(0), rounds=1)
    assert sorted(drawn[0].tolist()) == [0, 1, 2]
    with pytest.raises(
        ConfigError, match="dataset.num_negatives: 4 is more than the 3 items user 0 never interacted with"
    ):
        sample_negatives(positives, np.array([0]), 4, np.random.default_rng(0))


def test_negative_matrices_shared_and_separate():
    train = Interactions.from_pairs(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 3]), 3, 30)
    valid = Interactions.from_pairs(np.array([0]), np.array([2]), 3, 30)
    test = Interactions.from_pairs(np.array([0, 1]), np.array([3, 4]), 3, 30)
    shared = negative_matrices(train, valid, test, DatasetConfig(num_negatives=5, share_negatives=True))
    v, t = shared
    assert np.array_equal(v[0], t[0])
    assert (v[1] == -1).all() and (v[2] == -1).all()  # users 1, 2 have no validation item
    assert (t[2] == -1).all() and (t[1] >= 0).all()
    assert not set(t[0].tolist()) & {0, 1, 2, 3}  # never an item of user 0 in any split
    v2, t2 = negative_matrices(train, valid, test, DatasetConfig(num_negatives=5, share_negatives=False))
    assert not np.array_equal(v2[0], t2[0])
    assert np.array_equal(t, negative_matrices(train, valid, test, DatasetConfig(num_negatives=5))[1])
