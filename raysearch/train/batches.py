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


def pair_batches(users: np.ndarray, items: np.ndarray, n_steps: int,
                 rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The shuffled (users, items) rows in ``n_steps`` batches of near-equal size.

    The number of steps, not the batch size, is fixed so that every process of a distributed run takes
    the same number of steps (their collectives must pair up) even when their shards differ in size.
    """
    for idx in pair_batch_indices(users.size, n_steps, rng):
        yield users[idx], items[idx]


def pair_batch_indices(n_rows: int, n_steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The row indices (int64) of ``pair_batches``' batches: a shuffle of ``range(n_rows)`` in ``n_steps``
    near-equal parts (the same draws from ``rng``)."""
    yield from np.array_split(rng.permutation(n_rows), n_steps)


def user_batches(users: np.ndarray, n_steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled distinct users in ``n_steps`` batches of near-equal size."""
    yield from np.array_split(rng.permutation(users), n_steps)


def n_steps_for(n_rows: int, batch_size: int) -> int:
    """Steps of an epoch over ``n_rows`` rows with (at most) ``batch_size`` rows a step."""
    return max(1, -(-n_rows // batch_size))
