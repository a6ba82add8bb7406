"""``Interactions``: a users x items set of observed pairs in CSR form (sorted, de-duplicated rows).

This is the one sparse type the whole project passes around: the train/valid/test splits of a
``Dataset``, the samplers' positives, the evaluation's masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Interactions:
    """Binary interaction matrix of shape (n_users, n_items) in CSR form.

    ``indptr``: int64 (n_users + 1,); ``indices``: int64 (nnz,), sorted and unique within each row.
    Arrays are made read-only on construction: an ``Interactions`` is never mutated after it is built.
    """

    indptr: np.ndarray
    indices: np.ndarray
    n_users: int
    n_items: int
    _keys_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        if indptr.shape != (self.n_users + 1,):
            raise ValueError(f"indptr has shape {indptr.shape}, expected ({self.n_users + 1},)")
        if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must start at 0, be non-decreasing and end at len(indices)")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_items):
            raise ValueError(f"item ids must lie in [0, {self.n_items})")
        indptr.flags.writeable = False
        indices.flags.writeable = False
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> Interactions:
        """Build from parallel id arrays; duplicate pairs collapse to one."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError("users and items must be 1-d arrays of equal length")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"user ids must lie in [0, {n_users})")
        if users.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item ids must lie in [0, {n_items})")
        keys = np.sort(users * np.int64(n_items) + items)
        # sort + neighbour compare: several times faster than np.unique on millions of keys
        if keys.size > 1:
            keep = np.empty(keys.size, dtype=bool)
            keep[0] = True
            np.not_equal(keys[1:], keys[:-1], out=keep[1:])
            keys = keys[keep]
        rows = keys // n_items
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
        return cls(indptr, keys % n_items, n_users, n_items)

    @classmethod
    def empty(cls, n_users: int, n_items: int) -> Interactions:
        return cls(np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), n_users, n_items)

    @classmethod
    def from_scipy(cls, matrix) -> Interactions:
        """From any scipy sparse matrix (users x items); stored values are ignored, nonzeros are interactions."""
        csr = matrix.tocsr()
        csr.sum_duplicates()
        csr.sort_indices()
        n_users, n_items = csr.shape
        return cls(csr.indptr.astype(np.int64), csr.indices.astype(np.int64), int(n_users), int(n_items))

    @classmethod
    def coerce(cls, train) -> Interactions:
        """Accept an ``Interactions``, a scipy sparse matrix, or a ``Dataset`` (its train split)."""
        if isinstance(train, Interactions):
            return train
        if hasattr(train, "tocsr"):
            return cls.from_scipy(train)
        if hasattr(train, "train") and isinstance(train.train, Interactions):
            return train.train
        raise TypeError(f"expected Interactions, a scipy sparse matrix or a Dataset, got {type(train).__name__}")

    # ----------------------------------------------------------------- views
    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    def row(self, user: int) -> np.ndarray:
        """Sorted item ids of ``user`` (a read-only view)."""
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def user_counts(self) -> np.ndarray:
        """int64 (n_users,): items per user."""
        return np.diff(self.indptr)

    def item_counts(self) -> np.ndarray:
        """int64 (n_items,): users per item (the item's popularity in this split)."""
        return np.bincount(self.indices, minlength=self.n_items).astype(np.int64)

    def row_ids(self) -> np.ndarray:
        """int64 (nnz,): the user of each stored entry."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.user_counts())

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(users, items), each int64 (nnz,), in row-major order."""
        return self.row_ids(), self.indices

    @property
    def keys(self) -> np.ndarray:
        """int64 (nnz,): sorted ``user * n_items + item`` keys, for vectorised membership tests."""
        if "keys" not in self._keys_cache:
            keys = self.row_ids() * np.int64(self.n_items) + self.indices
            keys.flags.writeable = False
            self._keys_cache["keys"] = keys
        return self._keys_cache["keys"]

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool array of the broadcast shape of ``users`` and ``items``: is (user, item) an interaction?"""
        users, items = np.broadcast_arrays(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))
        if self.nnz == 0:
            return np.zeros(users.shape, dtype=bool)
        query = users * np.int64(self.n_items) + items
        keys = self.keys
        pos = np.searchsorted(keys, query)
        np.minimum(pos, keys.size - 1, out=pos)
        return keys[pos] == query

    def to_scipy(self):
        """A ``scipy.sparse.csr_matrix`` of float32 ones, shape (n_users, n_items)."""
        import scipy.sparse as sp

        return sp.csr_matrix(
            (np.ones(self.nnz, dtype=np.float32), self.indices, self.indptr), shape=self.shape
        )

    def union(self, other: Interactions) -> Interactions:
        """Pairs present in either (same shape)."""
        if other.shape != self.shape:
            raise ValueError(f"shape mismatch {self.shape} vs {other.shape}")
        u1, i1 = self.pairs()
        u2, i2 = other.pairs()
        return Interactions.from_pairs(np.concatenate([u1, u2]), np.concatenate([i1, i2]), *self.shape)

    def select_users(self, users: np.ndarray) -> Interactions:
        """Keep only the rows of ``users`` (others become empty); same shape."""
        mask = np.zeros(self.n_users, dtype=bool)
        mask[np.asarray(users, dtype=np.int64)] = True
        u, i = self.pairs()
        keep = mask[u]
        return Interactions.from_pairs(u[keep], i[keep], *self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interactions):
            return NotImplemented
        return (
            self.shape == other.shape
            and np.array_equal(self.indptr, other.indptr)
            and np.array_equal(self.indices, other.indices)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz})"
