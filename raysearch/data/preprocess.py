"""Preprocessing of raw tables: rating threshold, de-duplication, iterated k-core, id remapping.

Order (RecBole's, which the ICPNS protocol uses): ratings below the threshold go first, then duplicate
(user, item) pairs, then the k-core filter, then ids are remapped to contiguous 0-based ints.

- Pooled data (one ``all`` part) is filtered as a whole.
- Given splits: threshold and de-duplication apply to every part; the k-core is computed on ``train``
  (statistics come from training data), and valid/test rows of users or items that the k-core removed
  from train are dropped with them (their number is recorded). Users/items that were never in train are
  left alone (they are the split's own business, see ``splits.given``).

The k-core is simultaneous, as RecBole's ``_filter_by_inter_num``: each round counts the interactions of
every user and item on the current rows and drops, at once, the rows of users with fewer than
``user_core`` or items with fewer than ``item_core``; rounds repeat until nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import DatasetConfig
from raysearch.data.table import InteractionTable
from raysearch.errors import DataError


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values of a 1-d array, sorted (sort + neighbour compare: numpy 2.4's hash-based
    ``np.unique`` is several times slower on large int arrays)."""
    ordered = np.sort(values)
    if ordered.size == 0:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _codes(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes int64 (n,) of arbitrary ids and their number of distinct values."""
    if ids.size == 0:
        return ids.astype(np.int64), 0
    if ids.dtype.kind == "i" and ids.min() >= 0 and ids.max() < max(4 * ids.size, 1 << 20):
        return ids, int(ids.max()) + 1  # dense non-negative ints are codes already (bincount-sized)
    uniq = sorted_unique(ids)
    return np.searchsorted(uniq, ids).astype(np.int64), int(uniq.size)


def filter_by_rating(table: InteractionTable, threshold: float) -> InteractionTable:
    """Rows with ``rating >= threshold``; a table without ratings is a ``DataError``."""
    if table.ratings is None:
        raise DataError(
            f"rating_threshold={threshold:g} needs ratings, but the {table.part} part has none",
            where=table.source,
        )
    return table.take(table.ratings >= threshold)


def deduplicate(table: InteractionTable) -> InteractionTable:
    """One row per (user, item): the earliest by timestamp when there are timestamps, else the first in file
    order (ties in time also keep the first in file order). Kept rows stay in file order."""
    if len(table) == 0:
        return table
    users, _ = _codes(table.users)
    items, n_items = _codes(table.items)
    key = users * np.int64(n_items) + items
    order = (
        np.lexsort((table.timestamps, key))
        if table.timestamps is not None
        else np.argsort(key, kind="stable")
    )
    sorted_key = key[order]
    first = np.concatenate(([True], sorted_key[1:] != sorted_key[:-1]))
    return table.take(np.sort(order[first]))


def core_mask(users: np.ndarray, items: np.ndarray, user_core: int, item_core: int) -> np.ndarray:
    """bool (n,): rows that survive the iterated (simultaneous) k-core on dense codes ``users``/``items``."""
    keep = np.ones(users.shape[0], dtype=bool)
    if user_core <= 1 and item_core <= 1:
        return keep  # every present user/item already has >= 1 interaction
    n_users = int(users.max()) + 1 if users.size else 0
    n_items = int(items.max()) + 1 if items.size else 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        drop = keep & ((user_count[users] < user_core) | (item_count[items] < item_core))
        if not drop.any():
            return keep
        keep &= ~drop


def k_core(table: InteractionTable, user_core: int, item_core: int) -> InteractionTable:
    """Rows of the iterated k-core: every user keeps >= ``user_core`` rows and every item >= ``item_core``."""
    users, _ = _codes(table.users)
    items, _ = _codes(table.items)
    return table.take(core_mask(users, items, user_core, item_core))


def counts(table: InteractionTable) -> dict[str, int]:
    """Rows, distinct users and distinct items of a table (for provenance)."""
    return {
        "interactions": len(table),
        "users": int(sorted_unique(table.users).size),
        "items": int(sorted_unique(table.items).size),
    }


def _thresholds(config: DatasetConfig) -> str:
    threshold = "none" if config.rating_threshold is None else f"{config.rating_threshold:g}"
    return f"rating_threshold={threshold}, user_core={config.user_core}, item_core={config.item_core}"


def preprocess(
    parts: Mapping[str, InteractionTable], config: DatasetConfig
) -> tuple[dict[str, InteractionTable], dict[str, Any]]:
    """Apply threshold, de-duplication and k-core to ``parts``; returns the filtered parts and a report
    (counts of every part after every step, JSON-serialisable)."""
    report: dict[str, Any] = {
        "rating_threshold": config.rating_threshold,
        "dedupe": config.dedupe,
        "user_core": config.user_core,
        "item_core": config.item_core,
        "steps": {},
    }
    steps: dict[str, dict[str, dict[str, int]]] = report["steps"]
    out = dict(parts)

    def record(step: str) -> None:
        steps[step] = {name: counts(table) for name, table in out.items()}

    record("read")
    if config.rating_threshold is not None:
        out = {name: filter_by_rating(t, config.rating_threshold) for name, t in out.items()}
        record("rating_threshold")
    if config.dedupe:
        out = {name: deduplicate(t) for name, t in out.items()}
        record("dedupe")
    if config.user_core > 1 or config.item_core > 1:
        core_part = "all" if "all" in out else "train"
        before = out[core_part]
        after = k_core(before, config.user_core, config.item_core)
        out[core_part] = after
        gone_users = np.setdiff1d(sorted_unique(before.users), sorted_unique(after.users), assume_unique=True)
        gone_items = np.setdiff1d(sorted_unique(before.items), sorted_unique(after.items), assume_unique=True)
        for name, table in out.items():
            if name != core_part:
                out[name] = table.take(~(np.isin(table.users, gone_users) | np.isin(table.items, gone_items)))
        record("k_core")
    for name, table in out.items():
        if len(table) == 0:
            raise DataError(
                f"no interactions left in the {name} part after filtering ({_thresholds(config)})",
                where=table.source,
            )
    return out, report


# --------------------------------------------------------------------------- id remapping
@dataclass(frozen=True)
class IdMap:
    """Original ids (sorted unique: numerically for int ids, lexicographically for strings) -> 0..n-1.

    Already contiguous 0-based int ids map to themselves. ``ids``: int64 or unicode (n,).
    """

    ids: np.ndarray

    @staticmethod
    def build(arrays: Sequence[np.ndarray]) -> IdMap:
        if all(a.dtype.kind == "i" for a in arrays):
            return IdMap(sorted_unique(np.concatenate(arrays)))
        return IdMap(sorted_unique(np.concatenate([a.astype(str) for a in arrays])))

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(internal ids int64, found bool) of ``values``; internal ids of values not found are -1."""
        values = np.asarray(values)
        ids, order = self.ids, None
        if (
            ids.dtype.kind == "i"
            and values.dtype.kind in "iu"
            and ids.size
            and ids[-1] == ids.size - 1
            and ids[0] == 0
        ):
            found = (values >= 0) & (values < ids.size)  # contiguous 0-based ids map to themselves
            return np.where(found, values, -1).astype(np.int64), found
        if ids.dtype.kind == "i" and values.dtype.kind not in "iu":
            ids = ids.astype(str)  # string queries of int ids: compare as strings, in string order
            order = np.argsort(ids)
            ids = ids[order]
        if ids.dtype.kind != "i":
            values = values.astype(str)
        if ids.size == 0:
            return np.full(values.shape, -1, dtype=np.int64), np.zeros(values.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(ids, values), ids.size - 1)
        found = ids[pos] == values
        if order is not None:
            pos = order[pos]
        return np.where(found, pos, -1).astype(np.int64), found

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Internal ids int64 of ``values`` (all of which must be known)."""
        internal, found = self.lookup(values)
        if not found.all():
            raise ValueError(f"unknown id {np.asarray(values)[~found][0]!r}")
        return internal

    def strings(self) -> np.ndarray:
        """The original ids as a unicode array, indexed by internal id."""
        return self.ids.astype(str)


def compact_index(used: np.ndarray) -> np.ndarray:
    """int64 (n,): new id of each old id that is ``used`` (order kept), -1 for the others."""
    new = np.cumsum(used, dtype=np.int64) - 1
    new[~used] = -1
    return new
