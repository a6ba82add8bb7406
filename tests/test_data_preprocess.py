"""Preprocessing: rating threshold, de-duplication, iterated k-core, id remapping; the ml-100k anchor."""

from pathlib import Path

import numpy as np
import pytest

from raysearch.config import DatasetConfig
from raysearch.data.preprocess import IdMap, core_mask, deduplicate, filter_by_rating, k_core, preprocess
from raysearch.data.table import InteractionTable
from raysearch.errors import DataError


def table(users, items, ratings=None, timestamps=None, part="all", source="mem.txt") -> InteractionTable:
    return InteractionTable(
        np.asarray(users),
        np.asarray(items),
        None if ratings is None else np.asarray(ratings, dtype=float),
        None if timestamps is None else np.asarray(timestamps),
        lines=np.arange(1, len(users) + 1),
        part=part,
        source=source,
    )


def pairs(t: InteractionTable) -> list[tuple]:
    return list(zip(t.users.tolist(), t.items.tolist(), strict=True))


def test_rating_threshold_keeps_ratings_at_or_above():
    t = filter_by_rating(table([1, 1, 2, 3], [1, 2, 1, 1], ratings=[2.0, 3.0, 3.5, 5.0]), 3)
    assert pairs(t) == [(1, 2), (2, 1), (3, 1)]
    assert t.lines.tolist() == [2, 3, 4]  # rows keep their source lines


def test_rating_threshold_without_ratings_is_an_error():
    with pytest.raises(DataError) as err:
        filter_by_rating(table([1], [2], part="train", source="x/train.txt"), 4)
    assert str(err.value) == "x/train.txt: rating_threshold=4 needs ratings, but the train part has none"


def test_dedupe_keeps_the_earliest_by_time_in_file_order():
    t = deduplicate(table([1, 2, 1, 1, 2], [5, 5, 5, 6, 5], timestamps=[30, 10, 20, 40, 10]))
    # (1,5) at t=30 and t=20: the t=20 row (line 3) stays; (2,5) twice at t=10: the first (line 2)
    assert t.lines.tolist() == [2, 3, 4]
    assert pairs(t) == [(2, 5), (1, 5), (1, 6)]


def test_dedupe_without_timestamps_keeps_the_first():
    t = deduplicate(table(["a", "b", "a"], ["x", "x", "x"]))
    assert t.lines.tolist() == [1, 2]


def test_k_core_cascade_hand_example():
    # user 0: items 0,1,2; user 1: items 0,1,2; user 2: items 0,3; user 3: item 3.
    # 2-core: user 3 (1 row) goes; then item 3 has one row (user 2) and goes; then user 2 has one row
    # and goes. Left: users 0 and 1 with items 0, 1, 2 (each item twice).
    users = [0, 0, 0, 1, 1, 1, 2, 2, 3]
    items = [0, 1, 2, 0, 1, 2, 0, 3, 3]
    t = k_core(table(users, items), 2, 2)
    assert pairs(t) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def _reference_core(users: np.ndarray, items: np.ndarray, uc: int, ic: int) -> set:
    """Peel one offending row group at a time with Python sets (independent of the vectorised version)."""
    rows = set(zip(users.tolist(), items.tolist(), strict=True))
    changed = True
    while changed:
        changed = False
        for u in {u for u, _ in rows}:
            if sum(1 for r in rows if r[0] == u) < uc:
                rows = {r for r in rows if r[0] != u}
                changed = True
        for i in {i for _, i in rows}:
            if sum(1 for r in rows if r[1] == i) < ic:
                rows = {r for r in rows if r[1] != i}
                changed = True
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_core_matches_sequential_peeling_and_satisfies_the_cores(seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, 300)
    items = (rng.zipf(1.6, 300) - 1) % 60
    key = np.unique(users * 100 + items)  # distinct pairs
    users, items = key // 100, key % 100
    keep = core_mask(users, items, 4, 3)
    assert set(zip(users[keep].tolist(), items[keep].tolist(), strict=True)) == _reference_core(
        users, items, 4, 3
    )
    if keep.any():
        assert np.bincount(users[keep])[np.unique(users[keep])].min() >= 4
        assert np.bincount(items[keep])[np.unique(items[keep])].min() >= 3


def test_user_left_without_items_is_dropped_but_empty_result_is_an_error():
    cfg = DatasetConfig(format="csv", user_core=2, item_core=1)
    out, report = preprocess({"all": table([1, 1, 2], [1, 2, 3])}, cfg)
    assert pairs(out["all"]) == [(1, 1), (1, 2)]
    assert report["steps"]["read"]["all"] == {"interactions": 3, "users": 2, "items": 3}
    assert report["steps"]["k_core"]["all"] == {"interactions": 2, "users": 1, "items": 2}
    strict = DatasetConfig(format="csv", rating_threshold=4, user_core=3, item_core=2)
    with pytest.raises(DataError) as err:
        preprocess({"all": table([1, 1, 2], [1, 2, 3], ratings=[5, 5, 5])}, strict)
    assert str(err.value) == (
        "mem.txt: no interactions left in the all part after filtering "
        "(rating_threshold=4, user_core=3, item_core=2)"
    )


def test_given_parts_k_core_on_train_drops_held_out_rows_of_removed_users():
    train = table([0, 0, 1, 2, 2], [0, 1, 0, 0, 1], part="train")
    test = table([0, 1, 3], [2, 2, 0], part="test")  # user 3 was never in train: left alone
    out, _ = preprocess({"train": train, "test": test}, DatasetConfig(format="csv", user_core=2))
    assert pairs(out["train"]) == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert pairs(out["test"]) == [(0, 2), (3, 0)]


def test_id_map_keeps_contiguous_ids_and_sorts_numbers_numerically():
    ids = IdMap.build([np.array([3, 0, 2]), np.array([1, 2])])
    assert ids.encode(np.array([0, 1, 2, 3])).tolist() == [0, 1, 2, 3]
    sparse = IdMap.build([np.array([10, 9, 100])])
    assert sparse.strings().tolist() == ["9", "10", "100"]
    assert sparse.encode(np.array([100, 9])).tolist() == [2, 0]
    words = IdMap.build([np.array(["b", "a"]), np.array(["c"])])
    assert words.encode(np.array(["c", "a"])).tolist() == [2, 0]
    internal, found = words.lookup(np.array(["a", "zz"]))
    assert internal.tolist() == [0, -1] and found.tolist() == [True, False]


ML100K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ml-100k" / "u.data"


@pytest.mark.skipif(not ML100K.is_file(), reason="ml-100k is not in ../shared/data")
def test_ml100k_rating_3_and_10_core_gives_recbole_counts():
    """The ICPNS reference pipeline (RecBole) reports 939 users, 1,016 items, 80,393 interactions."""
    from raysearch.data.readers import read_movielens

    cfg = DatasetConfig(format="movielens", rating_threshold=3, user_core=10, item_core=10)
    out, report = preprocess({"all": read_movielens(ML100K.resolve(), "all", cfg)}, cfg)
    assert report["steps"]["k_core"]["all"] == {"interactions": 80_393, "users": 939, "items": 1_016}
    assert report["steps"]["read"]["all"] == {"interactions": 100_000, "users": 943, "items": 1_682}


def test_large_and_string_ids_filter_like_small_ones():
    """The same rows under three id encodings (dense ints, huge ints, strings) give the same result.

    Dedupe keeps line 10 for (0, 0) (t=2 < t=5); the 2-core drops user 3 (line 9), then item 3 (line 8),
    then user 2 (line 7).
    """
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 0])
    items = np.array([0, 1, 2, 0, 1, 2, 0, 3, 3, 0])
    times = np.array([5, 1, 1, 1, 1, 1, 1, 1, 1, 2])
    cfg = DatasetConfig(format="csv", user_core=2, item_core=2)
    encodings = [
        (users, items),
        (users * 10**12 + 7, items * 10**11),
        (np.char.add("u", users.astype(str)), items.astype(str)),
    ]
    for u, i in encodings:
        out, _ = preprocess({"all": table(u, i, timestamps=times)}, cfg)
        assert out["all"].lines.tolist() == [2, 3, 4, 5, 6, 10]
