"""Attribute negatives: items that share an attribute with the positive (e.g. a genre), mixed with uniform
negatives by ``weight`` (knowledge-enhanced negative sampling, generic KNS: side information picks negatives
closer to the user's taste than uniform ones; see ``raysearch.samplers.knowledge`` for the mixing).

A side draw for a row (u, i+): pick an attribute a uniformly among the positive's attributes A'(i+) that
still hold an item outside P_u, then draw j from attribute a's distribution with the user's positives
excluded:

    P_side(j | u, i+) = 1/|A'(i+)| * sum_{a in A'(i+)} p_a(j) 1[j not in P_u] / A_a(u),
    p_a(j) proportional to (count_j + 1)^beta over the items with attribute a,

count_j the item's training interactions, A_a(u) = 1 - sum_{j in P_u} p_a(j) the acceptance mass
(``beta`` = 0: uniform over the attribute's items; the +1 keeps never-interacted items drawable). A
positive without attributes, or whose every attribute lies inside P_u, falls back to uniform.

Implementation, as ICPNS's community tables: one alias table per attribute over its items (a
``RaggedAliasTable``, memory = the number of (item, attribute) pairs), O(1) a draw; positives rejected in
batch (``first_accepted``); A_a(u) is precomputed for the (user, attribute) pairs where u has a positive
with attribute a (every other pair has A = 1), and rows with A_a(u) below ``EXACT_BELOW``, and rows still
rejected after the retry cap, take the exact path (the attribute's items minus P_u, weighted). Every
statistic comes from the training split only.

The (item, attribute) pairs come from the dataset's side information (``dataset.item_attributes``:
ML-100K's ``u.item`` genres or an ``item<TAB>attr[|attr...]`` file, ``raysearch.data.side_info``); the
``attribute`` pipeline supplies them as ``item_attributes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.samplers.alias import RaggedAliasTable
from raysearch.samplers.base import register
from raysearch.samplers.exclusion import EXACT_BELOW, first_accepted
from raysearch.samplers.knowledge import (
    KnowledgeSampler,
    check_weight,
    id_pairs,
    ragged_draw,
    ragged_positions,
)


@register
class Attribute(KnowledgeSampler):
    """Negatives sharing an attribute with the positive, mixed with uniform ones."""

    name = "attribute"
    side_key = "item_attributes"

    @dataclass(frozen=True, eq=False)
    class Params:
        # int (m, 2) (item, attribute) pairs: supplied by the pipeline from the dataset's item_attributes
        item_attributes: Any = None
        weight: float = 0.5  # probability that a negative slot is drawn from the positive's attributes
        beta: float = 0.0  # exponent on (train count + 1) within an attribute (0: uniform over its items)

        def __post_init__(self) -> None:
            require(self.item_attributes is not None, "item_attributes",
                    "required: (item, attribute) pairs (set dataset.item_attributes)")
            object.__setattr__(self, "item_attributes",
                               id_pairs(self.item_attributes, "item_attributes", ("item", "attribute"), (None, None)))
            check_weight(self.weight)
            require(math.isfinite(self.beta), "beta", f"must be a finite number, got {self.beta}")

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        pairs = self.params.item_attributes  # sorted by (item, attribute), unique
        require(int(pairs[:, 0].max()) < self.n_items, f"sampler {self.name!r}: item_attributes",
                f"item ids must be in [0, {self.n_items}), got {int(pairs[:, 0].max())}")
        self.n_attributes = int(pairs[:, 1].max()) + 1
        # item -> its attributes (CSR)
        self.attr_indptr = np.concatenate([[0], np.cumsum(np.bincount(pairs[:, 0], minlength=self.n_items))])
        self.attr_ids = pairs[:, 1].copy()
        # attribute -> its items: one alias table each, items sorted within a table
        by_attr = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
        items, attrs = by_attr[:, 0], by_attr[:, 1]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(attrs, minlength=self.n_attributes))])
        counts = self.train.item_counts().astype(np.float64)
        self.tables = RaggedAliasTable.from_segments(offsets, (counts[items] + 1.0) ** self.params.beta, items)
        self.entry_keys = attrs * np.int64(self.n_items) + items  # sorted
        self._acceptance_table()
        for a in (self.attr_indptr, self.attr_ids, self.entry_keys):
            a.flags.writeable = False

    def _acceptance_table(self) -> None:
        """A_a(u) for every (user, attribute) pair where the user has a positive with attribute a: sorted keys
        ``u * n_attributes + a`` and their acceptance (exactly 0 when P_u covers the attribute's items)."""
        users, items = self.train.pairs()
        row, pos = ragged_positions(self.attr_indptr[items], np.diff(self.attr_indptr)[items])
        u, i, a = users[row], items[row], self.attr_ids[pos]
        entry = np.searchsorted(self.entry_keys, a * np.int64(self.n_items) + i)
        keys, inverse = np.unique(u * np.int64(self.n_attributes) + a, return_inverse=True)
        mass = np.bincount(inverse, weights=self.tables.p[entry], minlength=keys.size)
        covered = np.bincount(inverse, minlength=keys.size)
        accept = np.maximum(1.0 - mass, 0.0)
        accept[covered == self.tables.sizes[keys % self.n_attributes]] = 0.0
        self.accept_keys, self.accept_values = keys, accept
        for arr in (keys, accept):
            arr.flags.writeable = False

    def acceptance(self, users: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """float64: A_a(u) of each (user, attribute), 1 where the user has no positive with the attribute."""
        keys = users * np.int64(self.n_attributes) + attributes
        if self.accept_keys.size == 0:
            return np.ones(keys.shape)
        at = np.minimum(np.searchsorted(self.accept_keys, keys), self.accept_keys.size - 1)
        return np.where(self.accept_keys[at] == keys, self.accept_values[at], 1.0)

    def side_draw(self, users: np.ndarray, pos_items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = users.size
        row, pos = ragged_positions(self.attr_indptr[pos_items], np.diff(self.attr_indptr)[pos_items])
        attrs = self.attr_ids[pos]
        accept = self.acceptance(users[row], attrs)
        usable = accept > 0
        row, attrs, accept = row[usable], attrs[usable], accept[usable]
        count = np.bincount(row, minlength=n)
        pick = np.searchsorted(row, np.arange(n)) + (rng.random(n) * count).astype(np.int64)
        out = np.full(n, -1, dtype=np.int64)
        rows = np.flatnonzero(count > 0)
        if rows.size:
            out[rows] = self.draw_in(users[rows], attrs[pick[rows]], accept[pick[rows]], rng)
        return out

    def draw_in(self, users: np.ndarray, attributes: np.ndarray, accept: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): one item of each row's attribute, the user's positives excluded (A_a(u) = ``accept`` > 0)."""
        out = np.empty(users.size, dtype=np.int64)
        exact = accept < EXACT_BELOW
        rows = np.flatnonzero(~exact)
        if rows.size:
            u, t = users[rows], attributes[rows]
            values, pending = first_accepted(
                rows.size,
                lambda r, g: self.tables.draw(t if r is None else t[r], g),
                lambda r, v: self.complement.contains(u if r is None else u[r], v),
                rng)
            out[rows] = values
            exact[rows[pending]] = True
        rows = np.flatnonzero(exact)
        if rows.size:
            out[rows] = self.draw_exact(users[rows], attributes[rows], rng)
        return out

    def draw_exact(self, users: np.ndarray, attributes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): exact draws from each row's attribute table with the user's positives cut out."""
        row, entry = ragged_positions(self.tables.offsets[attributes], self.tables.sizes[attributes])
        items = self.tables.outcomes[entry]
        keep = ~self.complement.contains(users[row], items) & (self.tables.p[entry] > 0)
        return ragged_draw(row[keep], items[keep], self.tables.p[entry[keep]], users.size, rng)
