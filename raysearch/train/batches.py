"""Mini-batches of an epoch: (user, positive) rows for pairwise losses, users for group-wise ones."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from raysearch.data.interactions import Interactions


def pair_rows(train: Interactions, users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All training (user, item) rows, int64 (n,) each, restricted to ``users`` when given."""
    row_users, items = train.pairs()
    if users is not None and len(users) != train.n_users:
        keep = np.zeros(train.n_users, dtype=bool)
        keep[users] = True
        mask = keep[row_users]
        row_users, items = row_users[mask], items[mask]
    return row_users, items


def pair_batches(users: np.ndarray, items: np.ndarray, batch_size: int,
                 rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled (users, items) batches of ``batch_size`` rows (the last one may be smaller)."""
    order = rng.permutation(users.size)
    for start in range(0, order.size, batch_size):
        idx = order[start : start + batch_size]
        yield users[idx], items[idx]


def user_batches(users: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled batches of distinct users."""
    order = rng.permutation(users)
    for start in range(0, order.size, batch_size):
        yield order[start : start + batch_size]


def n_batches(n_rows: int, batch_size: int) -> int:
    return -(-n_rows // batch_size)
