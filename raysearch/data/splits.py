"""Split strategies, registered by name in ``SPLITS`` (``given``, ``ratio``, ``loo``, ``temporal``), and the
sampled negatives of the sampled evaluation protocol.

A split takes the preprocessed, id-encoded parts and returns (users, items) pairs of train/valid/test in
internal ids plus a JSON-serialisable ``info`` for the provenance. All randomness comes from
``make_rng(config.split_seed, "split", <name>, ...)``; everything is vectorised (random keys + lexsort,
rank within user), no Python loop over users.

Per-user counts follow RecBole's ``Dataset._calcu_split_ids`` (RecBole 1.1/1.2, checked against its
source): with ratios normalised by their sum and ``n`` interactions of the user,
``cnt = [int(r * n) for r in ratios]; cnt[0] = n - sum(cnt[1:])``, then for each later part ``i`` from
the last backwards, while ``cnt[0] > 1``: if ``0 < ratios[i] * n < 1`` one interaction moves from train
to part ``i`` (so a user with a few interactions still gets one validation and one test item).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raysearch.config import DatasetConfig
from raysearch.data.interactions import Interactions
from raysearch.data.preprocess import sorted_unique
from raysearch.data.table import InteractionTable
from raysearch.errors import ConfigError, DataError
from raysearch.registry import Registry
from raysearch.rng import make_rng

Pairs = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class SplitInput:
    """Id-encoded parts (``all``, or ``train``/``test`` + ``valid``) with the id maps (for messages)."""

    parts: Mapping[str, InteractionTable]
    user_ids: np.ndarray  # str (n_users,): original id of each internal user id
    item_ids: np.ndarray  # str (n_items,)

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)


@dataclass(frozen=True)
class SplitResult:
    """(users, items) int64 pairs of each split in internal ids, and what the split did."""

    train: Pairs
    valid: Pairs
    test: Pairs
    info: dict[str, Any] = field(default_factory=dict)


SplitFn = Callable[[SplitInput, DatasetConfig], SplitResult]
SPLITS: Registry[SplitFn] = Registry("split")


# --------------------------------------------------------------------------- vectorised helpers
def split_counts(n: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """int64 (len(n), len(ratios)): RecBole's per-group part sizes for group sizes ``n`` (see module doc)."""
    n = np.asarray(n, dtype=np.int64)
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    cnt = np.zeros((n.size, len(ratios)), dtype=np.int64)
    for i in range(1, len(ratios)):
        cnt[:, i] = (ratios[i] * n).astype(np.int64)  # int() of a non-negative float truncates, as astype
    cnt[:, 0] = n - cnt[:, 1:].sum(axis=1)
    for i in range(len(ratios) - 1, 0, -1):
        share = ratios[i] * n
        move = (cnt[:, 0] > 1) & (share > 0) & (share < 1)
        cnt[:, i] += move
        cnt[:, 0] -= move
    return cnt


def rank_within_user(
    users: np.ndarray, n_users: int, rng: np.random.Generator, timestamps: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rank int64 (n,), count int64 (n_users,)): each row's 0-based rank among its user's rows, in random
    order, or in time order (ties broken at random) when ``timestamps`` are given."""
    if timestamps is None:
        shuffled = rng.permutation(users.size)
        order = shuffled[np.argsort(users[shuffled], kind="stable")]
    else:
        order = np.lexsort((rng.random(users.size), timestamps, users))
    count = np.bincount(users, minlength=n_users).astype(np.int64)
    start = np.cumsum(count) - count
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size, dtype=np.int64) - start[users[order]]
    return rank, count


def _pairs(table: InteractionTable, mask: np.ndarray | None = None) -> Pairs:
    if mask is None:
        return table.users, table.items
    return table.users[mask], table.items[mask]


def _only_pooled(data: SplitInput, name: str) -> InteractionTable:
    if set(data.parts) != {"all"}:
        raise ConfigError(
            f"dataset.split: {name!r} re-splits pooled data, but the source gives parts "
            f"{sorted(data.parts)}; set dataset.pool: true to pool them first"
        )
    return data.parts["all"]


# --------------------------------------------------------------------------- given
@SPLITS.register("given")
def given_split(data: SplitInput, config: DatasetConfig) -> SplitResult:
    """The parts as the files give them. Without a validation part, ``valid_share`` of each user's train
    items (RecBole count rule, seeded) becomes validation; users with one train item keep it in train.
    Valid/test users absent from train are an error, or dropped with ``cold_users: drop``."""
    if "train" not in data.parts or "test" not in data.parts:
        raise ConfigError(
            "dataset.split: 'given' needs train and test parts, but the source gives one pooled part; "
            "choose ratio, loo or temporal"
        )
    train = data.parts["train"]
    in_train = np.bincount(train.users, minlength=data.n_users) > 0
    info: dict[str, Any] = {"split": "given", "cold_users": config.cold_users, "dropped_cold_rows": {}}
    held_out: dict[str, InteractionTable] = {}
    for name in ("valid", "test"):
        if name not in data.parts:
            continue
        table = data.parts[name]
        cold = ~in_train[table.users]
        if cold.any():
            if config.cold_users == "error":
                i = int(np.flatnonzero(cold)[0])
                raise DataError(
                    f"{name} user {str(data.user_ids[table.users[i]])!r} has no train interactions "
                    f"({int(cold.sum())} such {name} rows; set dataset.cold_users: drop to drop them)",
                    where=table.where(i),
                )
            table = table.take(~cold)
            info["dropped_cold_rows"][name] = int(cold.sum())
        held_out[name] = table
    if "valid" in held_out:
        info["valid_carved"] = False
        return SplitResult(_pairs(train), _pairs(held_out["valid"]), _pairs(held_out["test"]), info)
    if config.valid_share == 0:
        info["valid_carved"] = False
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        return SplitResult(_pairs(train), empty, _pairs(held_out["test"]), info)
    rng = make_rng(config.split_seed, "split", "given", "valid")
    rank, count = rank_within_user(train.users, data.n_users, rng)
    n_valid = split_counts(count, (1.0 - config.valid_share, config.valid_share))[:, 1]
    is_valid = rank < n_valid[train.users]
    info.update(valid_carved=True, valid_share=config.valid_share, split_seed=config.split_seed)
    return SplitResult(_pairs(train, ~is_valid), _pairs(train, is_valid), _pairs(held_out["test"]), info)


# --------------------------------------------------------------------------- ratio
@SPLITS.register("ratio")
def ratio_split(data: SplitInput, config: DatasetConfig) -> SplitResult:
    """Random per-user split by ``ratios`` (train, valid, test) with RecBole's per-user counts."""
    table = _only_pooled(data, "ratio")
    rng = make_rng(config.split_seed, "split", "ratio")
    rank, count = rank_within_user(table.users, data.n_users, rng)
    cnt = split_counts(count, config.ratios)[table.users]
    part = (rank >= cnt[:, 0]).astype(np.int8) + (rank >= cnt[:, 0] + cnt[:, 1])
    info = {
        "split": "ratio",
        "ratios": list(config.ratios),
        "split_seed": config.split_seed,
        "count_rule": "recbole",
    }
    return SplitResult(_pairs(table, part == 0), _pairs(table, part == 1), _pairs(table, part == 2), info)


# --------------------------------------------------------------------------- leave-one-out
LOO_MIN_INTERACTIONS = 3  # fewer: the user stays wholly in train (nothing left to learn from otherwise)


@SPLITS.register("loo")
def loo_split(data: SplitInput, config: DatasetConfig) -> SplitResult:
    """Leave-one-out: each user's latest interaction is test, the second latest validation, the rest
    train. Latest by timestamp (ties at random, seeded) or, without timestamps, a random one. Users with
    fewer than ``LOO_MIN_INTERACTIONS`` interactions stay wholly in train."""
    table = _only_pooled(data, "loo")
    rng = make_rng(config.split_seed, "split", "loo")
    rank, count = rank_within_user(table.users, data.n_users, rng, table.timestamps)
    from_end = count[table.users] - 1 - rank
    eligible = count[table.users] >= LOO_MIN_INTERACTIONS
    test = eligible & (from_end == 0)
    valid = eligible & (from_end == 1)
    info = {
        "split": "loo",
        "order": "timestamp" if table.timestamps is not None else "random",
        "split_seed": config.split_seed,
        "min_interactions": LOO_MIN_INTERACTIONS,
        "users_held_out": int((count >= LOO_MIN_INTERACTIONS).sum()),
        "users_train_only": int(((count > 0) & (count < LOO_MIN_INTERACTIONS)).sum()),
    }
    return SplitResult(_pairs(table, ~(test | valid)), _pairs(table, valid), _pairs(table, test), info)


# --------------------------------------------------------------------------- temporal
@SPLITS.register("temporal")
def temporal_split(data: SplitInput, config: DatasetConfig) -> SplitResult:
    """Global split by time: the earliest ``ratios[0]`` of all interactions train, then valid, then test
    (equal times keep file order). Valid/test rows of users or items absent from train are dropped."""
    table = _only_pooled(data, "temporal")
    if table.timestamps is None:
        raise DataError("split 'temporal' needs timestamps, but the data has none", where=table.source)
    order = np.argsort(table.timestamps, kind="stable")
    cnt = split_counts(np.array([len(table)]), config.ratios)[0]
    part = np.empty(len(table), dtype=np.int8)
    part[order] = np.repeat(np.arange(3, dtype=np.int8), cnt)
    train = part == 0
    known_user = np.bincount(table.users[train], minlength=data.n_users) > 0
    known_item = np.bincount(table.items[train], minlength=data.n_items) > 0
    cold = ~(known_user[table.users] & known_item[table.items])
    info = {
        "split": "temporal",
        "ratios": list(config.ratios),
        "dropped_cold_rows": {
            "valid": int((cold & (part == 1)).sum()),
            "test": int((cold & (part == 2)).sum()),
        },
    }
    return SplitResult(
        _pairs(table, train), _pairs(table, (part == 1) & ~cold), _pairs(table, (part == 2) & ~cold), info
    )


# --------------------------------------------------------------------------- Interactions of split pairs
def interactions_of(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> Interactions:
    """``Interactions.from_pairs`` with a sort-based de-duplication (see ``preprocess.sorted_unique``)."""
    keys = sorted_unique(
        np.asarray(users, dtype=np.int64) * np.int64(n_items) + np.asarray(items, dtype=np.int64)
    )
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n_items, minlength=n_users), out=indptr[1:])
    return Interactions(indptr, keys % n_items, n_users, n_items)


def all_positives(*splits: Interactions) -> Interactions:
    """Every (user, item) pair of any of ``splits`` (same shape)."""
    users = np.concatenate([s.row_ids() for s in splits])
    items = np.concatenate([s.indices for s in splits])
    return interactions_of(users, items, *splits[0].shape)


# --------------------------------------------------------------------------- sampled negatives
def sample_negatives(
    positives: Interactions, users: np.ndarray, num: int, rng: np.random.Generator, rounds: int = 4
) -> np.ndarray:
    """int64 (len(users), num): for each user, ``num`` distinct items drawn uniformly without replacement
    from the items it has no interaction with in ``positives``.

    Rejection sampling: draw uniform ids, drop positives (``Interactions.contains``) and repeats (first
    occurrence in a row wins), keep the first ``num`` per row; rows still short after ``rounds`` rounds (users
    with few non-interacted items) are topped up exactly from their complement (a loop over those few rows).
    Raises ``ConfigError`` when a user has fewer than ``num`` non-interacted items.
    """
    users = np.asarray(users, dtype=np.int64)
    n_items = positives.n_items
    out = np.full((users.size, num), -1, dtype=np.int64)
    if users.size == 0 or num == 0:
        return out
    available = n_items - positives.user_counts()[users]
    if (available < num).any():
        i = int(np.argmin(available))
        raise ConfigError(
            f"dataset.num_negatives: {num} is more than the {int(available[i])} items user {int(users[i])} "
            "never interacted with"
        )
    filled = np.zeros(users.size, dtype=np.int64)
    pending = np.arange(users.size)
    width = max(2 * num, 16)
    for round_ in range(rounds):
        rows = users[pending]
        cand = rng.integers(0, n_items, size=(pending.size, width))
        ok = ~positives.contains(rows[:, None], cand)
        flat = (np.arange(pending.size, dtype=np.int64)[:, None] * n_items + cand).ravel()
        first = np.zeros(flat.size, dtype=bool)
        first[np.unique(flat, return_index=True)[1]] = True
        ok &= first.reshape(cand.shape)
        if round_ > 0:  # not already chosen in an earlier round
            chosen_rows, chosen_slots = np.nonzero(out[pending] >= 0)
            chosen = np.sort(chosen_rows * n_items + out[pending][chosen_rows, chosen_slots])
            if chosen.size:
                pos = np.minimum(np.searchsorted(chosen, flat), chosen.size - 1)
                ok &= (chosen[pos] != flat).reshape(cand.shape)
        slot = np.cumsum(ok, axis=1) - 1 + filled[pending][:, None]
        take = ok & (slot < num)
        r, c = np.nonzero(take)
        out[pending[r], slot[r, c]] = cand[r, c]
        filled[pending] += take.sum(axis=1)
        pending = pending[filled[pending] < num]
        if pending.size == 0:
            return out
    for row in pending:  # the few users with almost every item seen: exact draw from the complement
        seen = np.concatenate([positives.row(int(users[row])), out[row, : filled[row]]])
        complement = np.setdiff1d(np.arange(n_items), seen)
        out[row, filled[row] :] = rng.choice(complement, size=num - filled[row], replace=False)
    return out


def negative_matrices(
    train: Interactions, valid: Interactions, test: Interactions, config: DatasetConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(valid_negatives, test_negatives), int64 (n_users, num_negatives): negatives drawn from the items a
    user never interacted with in any split; rows of users without a valid (test) item are -1. With
    ``share_negatives`` validation and test rows are the same draw (as SRNS), else independent draws."""
    num = config.num_negatives
    positives = all_positives(train, valid, test)
    has_valid, has_test = valid.user_counts() > 0, test.user_counts() > 0
    valid_neg = np.full((train.n_users, num), -1, dtype=np.int64)
    test_neg = np.full((train.n_users, num), -1, dtype=np.int64)
    if config.share_negatives:
        users = np.flatnonzero(has_valid | has_test)
        draws = sample_negatives(positives, users, num, make_rng(config.split_seed, "negatives", "shared"))
        valid_neg[users], test_neg[users] = draws, draws
        valid_neg[~has_valid] = -1
        test_neg[~has_test] = -1
    else:
        for name, has, matrix in (("valid", has_valid, valid_neg), ("test", has_test, test_neg)):
            users = np.flatnonzero(has)
            matrix[users] = sample_negatives(
                positives, users, num, make_rng(config.split_seed, "negatives", name)
            )
    return valid_neg, test_neg
