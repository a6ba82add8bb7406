"""Social negatives: items the user's friends interacted with and the user did not, mixed with uniform
negatives by ``weight`` (knowledge-enhanced negative sampling from social ties; see
``raysearch.samplers.knowledge`` for the mixing). The rationale of social-exposure samplers: an item that
friends consumed was likely seen by the user, so not interacting with it is a likelier true negative.

A side draw for user u: pick a friend f uniformly among u's friends with training items, then an item
uniformly among f's training items; a draw that is one of u's positives is redrawn whole. So

    P_side(j | u) = sum_{f in F_u} 1[j in P_f] / (|F_u| |P_f|) * 1[j not in P_u] / A(u),
    A(u) = 1/|F_u| * sum_{f in F_u} |P_f minus P_u| / |P_f|:

an item weighs by how many friends touched it (each friend's items sharing the friend's mass), and no
item outside the friends' items is ever a side draw. Users whose friends' items are all their own
positives, or without friends with training items (A(u) = 0), fall back to uniform. O(1) a draw, no
table: memory is the friend lists; the positives are rejected in batch (``first_accepted``); users with
A(u) below ``EXACT_BELOW``, and rows still rejected after the retry cap, take the exact path (every
(friend, item) of the user weighted, P_u cut out). Training interactions only.

The (user, friend) pairs come from the dataset's side information (``dataset.social_network``, e.g.
LastFM's ``trustnetwork.txt``, made symmetric by ``raysearch.data.side_info``); the ``social`` pipeline
supplies them as ``social_network``. The sampler takes the pairs as given (u's friends: {f : (u, f)}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.samplers.base import register
from raysearch.samplers.exclusion import EXACT_BELOW, first_accepted
from raysearch.samplers.knowledge import (
    KnowledgeSampler,
    check_weight,
    id_pairs,
    ragged_draw,
    ragged_positions,
)

_CHUNK = 1 << 22  # (friend, item) entries expanded at once when the acceptance masses are computed


@register
class Social(KnowledgeSampler):
    """Negatives among the items of the user's friends, mixed with uniform ones."""

    name = "social"
    side_key = "social_network"

    @dataclass(frozen=True, eq=False)
    class Params:
        # int (e, 2) (user, friend) pairs: supplied by the pipeline from the dataset's social_network
        social_network: Any = None
        weight: float = 0.5  # probability that a negative slot is drawn from the friends' items

        def __post_init__(self) -> None:
            require(self.social_network is not None, "social_network",
                    "required: (user, friend) pairs (set dataset.social_network)")
            object.__setattr__(self, "social_network",
                               id_pairs(self.social_network, "social_network", ("user", "friend"), (None, None)))
            check_weight(self.weight)

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        links = self.params.social_network  # sorted by (user, friend), unique
        top = int(links.max())
        require(top < self.n_users, f"sampler {self.name!r}: social_network",
                f"user ids must be in [0, {self.n_users}), got {top}")
        self.degree = self.train.user_counts()
        links = links[(self.degree[links[:, 1]] > 0) & (links[:, 0] != links[:, 1])]  # friends with items
        self.friend_indptr = np.concatenate([[0], np.cumsum(np.bincount(links[:, 0], minlength=self.n_users))])
        self.friends = links[:, 1].copy()
        self.n_friends = np.diff(self.friend_indptr)
        self.accept = self._acceptance(links)
        for a in (self.friend_indptr, self.friends, self.n_friends, self.accept):
            a.flags.writeable = False

    def _acceptance(self, links: np.ndarray) -> np.ndarray:
        """float64 (n_users,): A(u), exactly 0 when no friend holds an item outside P_u (or u has no friend)."""
        indptr, indices = self.train.indptr, self.train.indices
        free_share = np.zeros(self.n_users)
        free_items = np.zeros(self.n_users, dtype=np.int64)
        sizes = self.degree[links[:, 1]]
        bounds = np.searchsorted(np.cumsum(sizes), np.arange(_CHUNK, sizes.sum() + _CHUNK, _CHUNK), side="right")
        lo = 0
        for hi in np.unique(np.concatenate([bounds, [links.shape[0]]])):  # a loop over chunks of links
            if hi <= lo:
                continue
            u, f = links[lo:hi, 0], links[lo:hi, 1]
            row, pos = ragged_positions(indptr[f], sizes[lo:hi])
            outside = ~self.complement.contains(u[row], indices[pos])
            free = np.bincount(row[outside], minlength=hi - lo)
            free_share += np.bincount(u, weights=free / sizes[lo:hi], minlength=self.n_users)
            free_items += np.bincount(u, weights=free, minlength=self.n_users).astype(np.int64)
            lo = hi
        accept = free_share / np.maximum(self.n_friends, 1)
        accept[free_items == 0] = 0.0
        return accept

    def _trial(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64: a friend's item for each of ``users`` (friend uniform, then one of its items uniform)."""
        coin = rng.random((2, users.size))
        friend = self.friends[self.friend_indptr[users] + (coin[0] * self.n_friends[users]).astype(np.int64)]
        item = self.train.indptr[friend] + (coin[1] * self.degree[friend]).astype(np.int64)
        return self.train.indices[item].astype(np.int64)

    def side_draw(self, users: np.ndarray, pos_items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.full(users.size, -1, dtype=np.int64)
        accept = self.accept[users]
        exact = (accept > 0) & (accept < EXACT_BELOW)
        rows = np.flatnonzero(accept >= EXACT_BELOW)
        if rows.size:
            u = users[rows]
            values, pending = first_accepted(
                rows.size,
                lambda r, g: self._trial(u if r is None else u[r], g),
                lambda r, v: self.complement.contains(u if r is None else u[r], v),
                rng)
            out[rows] = values
            exact[rows[pending]] = True
        rows = np.flatnonzero(exact)
        if rows.size:
            out[rows] = self.draw_exact(users[rows], rng)
        return out

    def draw_exact(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): exact side draws (every (friend, item) of the user weighted 1 / (|F_u| |P_f|), P_u cut)."""
        row, pos = ragged_positions(self.friend_indptr[users], self.n_friends[users])
        friend = self.friends[pos]
        entry_row, entry = ragged_positions(self.train.indptr[friend], self.degree[friend])
        owner = row[entry_row]
        items = self.train.indices[entry]
        weight = 1.0 / (self.n_friends[users[owner]] * self.degree[friend[entry_row]])
        keep = ~self.complement.contains(users[owner], items)
        return ragged_draw(owner[keep], items[keep], weight[keep], users.size, rng)
