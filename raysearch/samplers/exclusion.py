"""Excluding a user's training positives from negative draws, vectorised.

Every sampler draws a candidate per row, tests all rows at once for membership in the user's positives,
redraws only the violators in batch (at most ``MAX_ROUNDS`` rounds), then sends the few rows left to an
exact path. A user who has interacted with every item raises ``SamplingError`` naming the user.

- ``PairSet``: exact membership of (user, item) pairs with one random memory access a query for almost
  every query (a hashed bitmap whose slots name their user), O(1) in the catalogue size.
- ``first_accepted``: the batched rejection loop shared by the samplers.
- ``Complement``: the non-positive items of every user. Exact uniform draws by rank arithmetic (the r-th
  non-positive of u is ``r + #{j : P_u[j] - j <= r}``, one ``searchsorted`` on precomputed row keys),
  uniform draws by rejection with that exact fallback, and draws of distinct items avoiding a given set.
- ``ExcludingTables``: P(j | u) proportional to a mixture of alias tables, sum_m w_m p_{t_m(u)}(j), times
  1[j not in P_u]. Rejection with re-picking of the mixture component, exact weighted fallback.

Uniform integers in [0, n) are drawn as floor(u * n) with u = ``rng.random()``: uniform up to n * 2^-53
(1e-10 relative at a million items), far below any sampling noise, at half the cost of
``rng.integers``; floor(u * n) < n for every double u < 1 (round to nearest), so no clamp is needed. The
exact fallbacks use ``rng.integers``. The hot paths run a fixed, small number of numpy calls a batch
(their cost at 4096 rows is mostly per-call overhead and one cache miss a row), so they avoid
temporaries, conversions and index lists wherever a flag array does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from raysearch.data.interactions import Interactions
from raysearch.errors import SamplingError
from raysearch.samplers.alias import RaggedAliasTable

MAX_ROUNDS = 16  # batched redraw rounds before the exact fallback (1 trial a row, then 2, 4, ..., 64)
MAX_WIDTH = 64  # most trials a row in one redraw round
EXACT_BELOW = 0.05  # users whose acceptance mass is below this skip rejection and go straight to the exact path

_EMPTY = -1  # a ``PairSet`` slot no pair maps to
_SHARED = -2  # a ``PairSet`` slot several pairs map to
AVOID_PAD = np.iinfo(np.int64).max  # pads rows of ``avoid`` arrays: never an item, never counted

RowsTrial = Callable[[np.ndarray | None, np.random.Generator], np.ndarray]
RowsTest = Callable[[np.ndarray | None, np.ndarray], np.ndarray]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (odd, 2^64 / golden ratio)


class PairSet:
    """Exact membership of (user, item) pairs, one random memory access a query for almost every query.

    Each user u gets a window start ``offset(u)``, a hash of u in [0, 2^b) (Fibonacci hashing: the top b
    bits of u * 0x9E37...15 mod 2^64, computed, not stored, so a query reads no per-user table); pair
    (u, i) maps to slot ``offset(u) + i`` of ``owner``, int32 (2^b + n_items,), which holds u when (u, i) is the only pair
    mapping there and -1 when none does. A query (u, i) reads its slot: u means present (the slot and u
    fix i), -1 or another user means absent. A slot several pairs map to holds -2 - j instead, and row j
    of ``shared_users`` (int32 (S, W), -1 padded) lists their users: the query is present iff u is
    listed. With 2^b >= ``SLOTS_PER_PAIR`` x pairs, a few percent of queries land on shared slots.
    Memory: 16-32 bytes a pair, plus 4 bytes an item. Built from distinct pairs; user ids must fit in
    int32; queried ids must lie in [0, n_users) x [0, n_items) (int64 users).
    """

    SLOTS_PER_PAIR = 4

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if n_users > np.iinfo(np.int32).max:
            raise SamplingError(f"PairSet: {n_users} users do not fit in int32 ids")
        self.n_users, self.n_items = int(n_users), int(n_items)
        bits = max(4, int(np.ceil(np.log2(max(self.SLOTS_PER_PAIR * users.size, 2)))))
        self.shift = np.uint64(64 - bits)  # slot = (u * _GOLDEN mod 2^64) >> shift
        slot = self.slots(users) + items
        size = (1 << bits) + self.n_items
        count = np.bincount(slot, minlength=size)
        self.owner = np.full(size, _EMPTY, dtype=np.int32)
        self.owner[slot] = users
        shared_slots = np.flatnonzero(count > 1)
        self.owner[shared_slots] = _SHARED - np.arange(shared_slots.size)
        # Users of each shared slot, one row a slot (the pairs sorted by slot, then a column within the slot).
        in_shared = count[slot] > 1
        order = np.argsort(slot[in_shared], kind="stable")
        s_slot, s_user = slot[in_shared][order], users[in_shared][order]
        column = np.arange(s_slot.size) - np.searchsorted(s_slot, s_slot)
        width = int(column.max()) + 1 if column.size else 1
        self.shared_users = np.full((shared_slots.size, width), _EMPTY, dtype=np.int32)
        self.shared_users[np.searchsorted(shared_slots, s_slot), column] = s_user
        for a in (self.owner, self.shared_users):
            a.flags.writeable = False

    @classmethod
    def from_interactions(cls, train: Interactions) -> PairSet:
        users, items = train.pairs()
        return cls(users, items, train.n_users, train.n_items)

    @property
    def nbytes(self) -> int:
        return int(self.owner.nbytes + self.shared_users.nbytes)

    def slots(self, users: np.ndarray) -> np.ndarray:
        """int64, the shape of int64 ``users``: each user's window start (once a batch, reused by every round)."""
        return ((users.view(np.uint64) * _GOLDEN) >> self.shift).view(np.int64)

    def hits(self, slots: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool, the broadcast shape: is (user, item) a pair? ``slots`` = ``self.slots(users)``.

        ``slots`` and ``users`` share a shape that broadcasts against ``items`` (any int dtype) from the right.
        """
        owner = self.owner.take(slots + items)
        found = owner == users
        shared = owner <= _SHARED
        if shared.any():
            flat = shared.ravel().nonzero()[0]
            rows = flat % users.size if users.size != owner.size else flat  # the user of each shared query
            listed = self.shared_users.take(_SHARED - owner.ravel().take(flat), axis=0)
            found.ravel()[flat] = (listed == users.ravel().take(rows)[:, None]).any(axis=1)
        return found

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool, the broadcast shape of ``users`` and ``items``: is each (user, item) a pair?"""
        users, items = np.broadcast_arrays(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))
        shape = users.shape
        users, items = users.ravel(), items.ravel()
        return self.hits(self.slots(users), users, items).reshape(shape)


def first_accepted(
    n_rows: int, trial: RowsTrial, rejected: RowsTest, rng: np.random.Generator, rounds: int = MAX_ROUNDS
) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling for ``n_rows`` rows, in batch: (values (n_rows,), row indices never accepted).

    ``trial(rows, rng)`` draws one candidate for each row index in ``rows``; ``rejected(rows, values)``
    flags the bad ones (bool). ``rows`` is ``None`` in the first round, meaning every row in order (no
    index array to build or gather with). Later rounds, on the rows left, draw ``width`` trials a row
    (2, 4, 8, ... up to ``MAX_WIDTH``) and keep each row's first accepted one: the first success of
    i.i.d. trials is distributed as one trial conditioned on acceptance, and small rounds cost mostly
    fixed numpy overhead, so fewer, wider rounds are cheaper.
    """
    out = trial(None, rng)
    pending = rejected(None, out).nonzero()[0]
    width = 2
    for _ in range(rounds - 1):
        if pending.size == 0:
            break
        rows = np.repeat(pending, width)  # (P, width), row-major
        values = trial(rows, rng)
        ok = ~rejected(rows, values)
        first = ok.reshape(-1, width).argmax(axis=1)  # the first accepted trial (0 when none is)
        first += np.arange(0, rows.size, width)
        got = ok.take(first)
        out[pending[got]] = values.take(first[got])
        pending = pending[~got]
        width = min(2 * width, MAX_WIDTH)
    return out, pending


def floyd_ranks(n_avail: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """int64 (R, k): k distinct uniform integers in [0, n_avail[r]) per row (Floyd's algorithm).

    Exact (a uniform k-subset, in no particular order); requires n_avail >= k. A loop over the k slots,
    each step vectorised over rows.
    """
    n_avail = np.asarray(n_avail, dtype=np.int64)
    out = np.empty((n_avail.size, k), dtype=np.int64)
    for s in range(k):
        j = n_avail - k + s  # Floyd: for j in n-k..n-1, t ~ U{0..j}; take t unless already taken, else j
        t = np.minimum((rng.random(n_avail.size) * (j + 1)).astype(np.int64), j)
        taken = (out[:, :s] == t[:, None]).any(axis=1) if s else np.zeros(n_avail.size, dtype=bool)
        out[:, s] = np.where(taken, j, t)
    return out


def skip_ranks(ranks: np.ndarray, avoid: np.ndarray) -> np.ndarray:
    """Map rank r (R, k) in the space without ``avoid`` to the r-th integer not in ``avoid`` (R, E).

    ``avoid`` rows hold distinct non-negative values, padded with a large sentinel; the result is
    ``r + #{j : sorted_avoid[j] - j <= r}``.
    """
    if avoid.shape[1] == 0:
        return ranks
    a = np.sort(avoid, axis=1) - np.arange(avoid.shape[1])
    return ranks + (a[:, None, :] <= ranks[:, :, None]).sum(axis=2)


def _dedupe_rows(values: np.ndarray, sentinel: int) -> np.ndarray:
    """Copy of ``values`` (R, E) with repeats within a row replaced by ``sentinel`` (sorted rows)."""
    a = np.sort(values, axis=1)
    if a.shape[1] > 1:
        repeat = np.zeros(a.shape, dtype=bool)
        repeat[:, 1:] = a[:, 1:] == a[:, :-1]
        a[repeat] = sentinel
    return a


class Complement:
    """The items each user has NOT interacted with in ``train``: membership, exact and rejection draws.

    Built once per training split; read-only afterwards. ``n_free``: int64 (n_users,) non-positives per user.
    """

    def __init__(self, train: Interactions):
        self.train = train
        self.n_users, self.n_items = train.shape
        self.degree = train.user_counts()
        self.n_free = self.n_items - self.degree
        self.pairs = PairSet.from_interactions(train)
        full = self.n_free == 0
        self._full = full if full.any() else None  # bool (n_users,), only when such a user exists
        # Users with few non-positives skip rejection: uniform draws go straight to rank arithmetic.
        self._dense = self.n_free < EXACT_BELOW * self.n_items
        self._any_dense = bool(self._dense.any())
        self._rank_keys: np.ndarray | None = None
        for a in (self.degree, self.n_free):
            a.flags.writeable = False

    # ----------------------------------------------------------------- checks and membership
    def check_users(self, users: np.ndarray) -> None:
        """Raise ``SamplingError`` if a user has interacted with every item (no negative exists)."""
        if self._full is not None:
            hit = self._full.take(users)
            if hit.any():
                u = int(users[np.argmax(hit)])
                raise SamplingError(
                    f"user {u} has interacted with every item ({self.n_items}): no negative can be drawn"
                )

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool, the broadcast shape: is ``items`` a training positive of ``users``? Ids must be in range."""
        return self.pairs.contains(users, items)

    def rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positives of ``users`` (R,) concatenated: (row index int64 (E,), item int64 (E,))."""
        start = self.train.indptr[users]
        count = self.degree[users]
        row = np.repeat(np.arange(users.size, dtype=np.int64), count)
        first = np.cumsum(count) - count
        entry = start[row] + np.arange(row.size, dtype=np.int64) - first[row]
        return row, self.train.indices[entry]

    # ----------------------------------------------------------------- rank arithmetic
    @property
    def rank_keys(self) -> np.ndarray:
        """int64 (nnz,): ``u * (n_items + 1) + P_u[j] - j``, sorted (built on first use)."""
        if self._rank_keys is None:
            row_ids = self.train.row_ids()
            within = np.arange(self.train.nnz, dtype=np.int64) - self.train.indptr[row_ids]
            keys = row_ids * np.int64(self.n_items + 1) + self.train.indices - within
            keys.flags.writeable = False
            self._rank_keys = keys
        return self._rank_keys

    def item_at(self, users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """The ``ranks``-th (0-based) non-positive item of each user; ranks < n_free[users]."""
        query = users * np.int64(self.n_items + 1) + ranks
        below = np.searchsorted(self.rank_keys, query, side="right") - self.train.indptr[users]
        return ranks + below

    def rank_of(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Rank of non-positive ``items`` among each user's non-positives (inverse of ``item_at``)."""
        query = users * np.int64(self.n_items) + items
        below = np.searchsorted(self.train.keys, query, side="left") - self.train.indptr[users]
        return items - below

    # ----------------------------------------------------------------- uniform draws
    def uniform_exact(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): one uniform non-positive item per user, by rank arithmetic (no rejection)."""
        users = np.asarray(users, dtype=np.int64)
        if users.size == 0:
            return np.empty(0, dtype=np.int64)
        self.check_users(users)
        ranks = rng.integers(0, self.n_free[users])
        return self.item_at(users, ranks)

    def uniform(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): one uniform non-positive item per user (rejection, then the exact path).

        Item = floor(u * n_items), u = ``rng.random()`` (uniform up to n_items * 2^-53).
        """
        users = np.asarray(users, dtype=np.int64)
        if self._any_dense:
            dense = self._dense[users]
            if dense.any():
                out = np.empty(users.size, dtype=np.int64)
                rows = np.flatnonzero(dense)
                out[rows] = self.uniform_exact(users[rows], rng)
                rows = np.flatnonzero(~dense)
                out[rows] = self._uniform_rejection(users[rows], rng)
                return out
        return self._uniform_rejection(users, rng)

    def _uniform_rejection(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The rejection rounds (``first_accepted``), then rank arithmetic for the rows left."""
        n = self.n_items
        slots = self.pairs.slots(users)

        def trial(rows: np.ndarray | None, g: np.random.Generator) -> np.ndarray:
            x = g.random(users.size if rows is None else rows.size)
            x *= n
            return x.astype(np.int64)

        def rejected(rows: np.ndarray | None, items: np.ndarray) -> np.ndarray:
            if rows is None:
                return self.pairs.hits(slots, users, items)
            return self.pairs.hits(slots.take(rows), users.take(rows), items)

        items, left = first_accepted(users.size, trial, rejected, rng)
        if left.size:
            items[left] = self.uniform_exact(users[left], rng)
        return items

    def distinct(
        self, users: np.ndarray, k: int, rng: np.random.Generator, avoid: np.ndarray | None = None
    ) -> np.ndarray:
        """int64 (R, k): per user, k distinct uniform non-positive items, none of them in ``avoid``.

        ``avoid``: int64 (R, E) non-positive items of each row to stay away from (repeats allowed,
        ``AVOID_PAD`` for padding).
        Rows whose user has fewer than k such items draw uniform non-positives with replacement
        (repeats possible). Rows where a uniform item is likely valid (at least ``1/4`` of the catalogue
        stays free after k picks) draw wide rows of uniform items and keep the first k that are
        neither positives, nor avoided, nor repeats of an earlier column: the sequential rejection
        process, so a uniform k-subset. A row with fewer than k of them is redrawn whole (the event is
        symmetric in the items, so the subset stays uniform). Floyd's algorithm on ranks (exact) takes
        the other rows and those left after ``MAX_ROUNDS``.
        """
        users = np.asarray(users, dtype=np.int64)
        n_rows = users.size
        avoid = np.empty((n_rows, 0), dtype=np.int64) if avoid is None else np.asarray(avoid, dtype=np.int64)
        out = np.empty((n_rows, k), dtype=np.int64)
        if n_rows == 0 or k == 0:
            return out
        avoid_sorted = _dedupe_rows(avoid, sentinel=AVOID_PAD)
        n_avail = self.n_free[users] - (avoid_sorted != AVOID_PAD).sum(axis=1)
        scarce = n_avail < k
        if scarce.any():
            rows = scarce.nonzero()[0]
            out[rows] = self.uniform(np.repeat(users[rows], k), rng).reshape(rows.size, k)
        valid_share = (n_avail - k) / self.n_items  # lower bound on P(a uniform item is still valid)
        exact = ~scarce & (valid_share < 0.25)
        rows = (~scarce & ~exact).nonzero()[0]
        if rows.size:
            expected = k + 3.0 * np.sqrt(k) + 8.0
            width = int(np.ceil(expected / valid_share[rows].min()))
            for _ in range(MAX_ROUNDS):
                draw = np.minimum((rng.random((rows.size, width)) * self.n_items).astype(np.int64),
                                  self.n_items - 1)
                good = ~self._distinct_violations(users[rows], draw, avoid[rows])
                done = good.sum(axis=1) >= k
                take = good[done] & (np.cumsum(good[done], axis=1) <= k)
                out[rows[done]] = draw[done][take].reshape(-1, k)
                rows = rows[~done]
                if rows.size == 0:
                    break
            exact[rows] = True
        if exact.any():
            rows = exact.nonzero()[0]
            out[rows] = self._distinct_exact(users[rows], k, avoid_sorted[rows], rng)
        return out

    def _distinct_violations(self, users: np.ndarray, draw: np.ndarray, avoid: np.ndarray) -> np.ndarray:
        """bool (R, k): positives, members of ``avoid``, and repeats of an earlier column."""
        bad = self.contains(users[:, None], draw)
        both = np.concatenate([np.minimum(avoid, self.n_items), draw], axis=1)  # padding -> n_items
        width = both.shape[1]
        # value * width + column: distinct keys whose sort puts equal values in column order.
        keys = np.sort(both * np.int64(width) + np.arange(width), axis=1)
        values, columns = np.divmod(keys, width)
        repeat = np.zeros(both.shape, dtype=bool)
        rows, cols = np.nonzero(values[:, 1:] == values[:, :-1])
        repeat[rows, columns[rows, cols + 1]] = True
        return bad | repeat[:, avoid.shape[1] :]

    def _distinct_exact(
        self, users: np.ndarray, k: int, avoid_sorted: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        valid = avoid_sorted != AVOID_PAD
        avoid_ranks = np.full(avoid_sorted.shape, AVOID_PAD, dtype=np.int64)
        rows_idx = np.nonzero(valid)
        avoid_ranks[rows_idx] = self.rank_of(users[rows_idx[0]], avoid_sorted[rows_idx])
        n_avail = self.n_free[users] - valid.sum(axis=1)
        ranks = skip_ranks(floyd_ranks(n_avail, k, rng), avoid_ranks)
        return self.item_at(np.repeat(users, k), ranks.ravel()).reshape(users.size, k)


SORT_QUERIES_ABOVE = 1 << 16


def sorted_searchsorted(haystack: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``np.searchsorted(haystack, queries)`` (left), int64 of ``queries``' shape.

    Above ``SORT_QUERIES_ABOVE`` queries they are searched in sorted order: consecutive searches then walk
    nearby cache lines of ``haystack`` instead of a chain of misses each (10M queries into 25M keys: 8x
    faster, the sort included); the answers are the same.
    """
    queries = np.asarray(queries)
    if queries.size <= SORT_QUERIES_ABOVE:
        return np.searchsorted(haystack, queries)
    flat = queries.ravel()
    order = np.argsort(flat)
    out = np.empty(flat.size, dtype=np.int64)
    out[order] = np.searchsorted(haystack, flat[order])
    return out.reshape(queries.shape)


class ExcludingTables:
    """Weighted draws with positives excluded: P(j | u) proportional to sum_m w_m p_{t_m(u)}(j) 1[j not in P_u].

    ``tables``: a ``RaggedAliasTable`` whose outcomes are item ids, sorted within each table.
    ``components``: (table id per user int64 (n_users,) or one table id for everyone, weight) pairs; the
    weights are the mixture weights of the normalised tables (e.g. [(community, 1 - lam), (K, lam)]).

    Per user, the acceptance mass of a rejection trial is A(u) = sum_m w_m A_m(u), A_m(u) = 1 - the mass
    of P_u in table t_m(u) (exactly 0 when P_u covers the whole support). Users with A(u) == 0 draw
    uniformly from their non-positives (the documented fallback); users with A(u) < ``exact_below`` and
    the rows still rejected after ``MAX_ROUNDS`` take the exact path: pick component m with probability
    proportional to w_m A_m(u), then invert the table's CDF with the user's positives cut out.
    """

    def __init__(
        self,
        complement: Complement,
        tables: RaggedAliasTable,
        components: Sequence[tuple[np.ndarray | int, float]],
        exact_below: float = EXACT_BELOW,
    ):
        self.complement = complement
        self.tables = tables
        n_users, n_items = complement.n_users, complement.n_items
        self.n_items = n_items
        self.weights = np.array([w for _, w in components], dtype=np.float64)
        self.table_of = np.empty((n_users, len(components)), dtype=np.int64)
        for m, (t, _) in enumerate(components):
            self.table_of[:, m] = t
        table_ids = np.repeat(np.arange(tables.n_tables, dtype=np.int64), tables.sizes)
        self.entry_keys = table_ids * np.int64(n_items) + tables.outcomes
        if np.any(np.diff(self.entry_keys) <= 0):
            raise ValueError("ExcludingTables needs outcomes sorted and unique within each table")
        # Inclusive CDF of each table, local to the table (restarts at each offset).
        cum = np.cumsum(tables.p)
        starts = tables.offsets[:-1]
        before = np.concatenate([[0.0], cum])[starts]
        self.cdf = cum - np.repeat(before, tables.sizes)

        # Acceptance mass per user and component, from the training pairs.
        users, items = complement.train.pairs()
        self.accept = np.ones((n_users, len(components)), dtype=np.float64)
        drawable = np.bincount(table_ids[tables.p > 0], minlength=tables.n_tables)  # positive-weight entries
        for m in range(len(components)):
            tbl = self.table_of[users, m]
            entry, found = self._lookup(tbl, items)
            found &= tables.p[entry] > 0
            mass = np.bincount(users[found], weights=tables.p[entry[found]], minlength=n_users)
            covered = np.bincount(users[found], minlength=n_users)
            accept = np.maximum(1.0 - mass, 0.0)
            accept[covered == drawable[self.table_of[:, m]]] = 0.0  # exactly nothing left
            self.accept[:, m] = accept
        total = self.accept @ self.weights
        # 0: rejection; 1: exact weighted path; 2: uniform over non-positives (no table mass left).
        self.route = np.where(total <= 0.0, 2, np.where(total < exact_below, 1, 0)).astype(np.int8)
        self._special = bool(self.route.any())
        self._trial_params(tables)
        for a in (self.table_of, self.entry_keys, self.cdf, self.accept, self.route):
            a.flags.writeable = False

    def _trial_params(self, tables: RaggedAliasTable) -> None:
        """Per-user first entry and size of each component's table, and the component cut points.

        One table for everyone (PNS): two scalars. Else ``_table_rows`` int64 (n_users * C, 2), (size,
        first entry) side by side (one memory access a row), indexed by ``user * C + m``, and for a mixture
        per-user cumulative component weights renormalised over the user's non-empty tables (an empty
        table holds no mass: it drops out of the mixture, as in the exact path where its acceptance is 0).
        """
        lo = tables.offsets[self.table_of]  # (n_users, C)
        size = tables.offsets[self.table_of + 1] - lo
        n_comp = self.weights.size
        one_table = n_comp == 1 and self.table_of.size > 0 and bool(np.all(self.table_of == self.table_of[0, 0]))
        self._scalar = (int(lo[0, 0]), float(size[0, 0])) if one_table else None
        w = self.weights * (size > 0)
        total = w.sum(axis=1)
        cum = np.cumsum(w, axis=1) / np.where(total > 0, total, 1.0)[:, None]
        self._cuts = [np.ascontiguousarray(cum[:, m]) for m in range(n_comp - 1)]
        self._table_rows = np.stack([size.ravel(), lo.ravel()], axis=1)
        for a in (self._table_rows, *self._cuts):
            a.flags.writeable = False

    def _lookup(self, tables: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entry index, found) of ``items`` in the supports of ``tables``."""
        keys = tables * np.int64(self.n_items) + items
        if self.entry_keys.size == 0:
            return np.zeros(keys.shape, dtype=np.int64), np.zeros(keys.shape, dtype=bool)
        entry = sorted_searchsorted(self.entry_keys, keys)
        np.minimum(entry, self.entry_keys.size - 1, out=entry)
        return entry, self.entry_keys[entry] == keys

    def user_acceptance(self) -> np.ndarray:
        """float64 (n_users,): probability that one rejection trial returns a non-positive."""
        return self.accept @ self.weights

    def log_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float64 of ``items``' shape: log P(j | u) of the draw ``draw`` makes, for ``users`` broadcast
        against ``items`` (e.g. (B, 1) against (B, k)) and items that are not the user's positives.

        P(j | u) = sum_m w_m p_{t_m(u)}(j) / sum_m w_m A_m(u) (rejection and the exact path draw the same
        law); users with no table mass left (route 2) draw uniformly: 1 / (n_items - |P_u|). An item
        outside the user's tables has probability 0 (log -inf): it cannot have been drawn.
        """
        items = np.asarray(items, dtype=np.int64)
        rows = np.broadcast_to(np.asarray(users, dtype=np.int64), items.shape).ravel()
        flat = items.ravel()
        mass = np.zeros(flat.size, dtype=np.float64)
        for m, weight in enumerate(self.weights):
            entry, found = self._lookup(self.table_of[rows, m], flat)
            mass += weight * np.where(found, self.tables.p[entry], 0.0)
        accept = self.accept[rows] @ self.weights
        with np.errstate(divide="ignore"):
            out = np.log(mass) - np.log(np.where(accept > 0, accept, 1.0))
        uniform = self.route[rows] == 2
        if uniform.any():
            out[uniform] = -np.log(self.complement.n_free[rows[uniform]])
        return out.reshape(items.shape)

    def draw(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): one item per user (R,) from its excluded mixture."""
        users = np.asarray(users, dtype=np.int64)
        if self._special:
            route = self.route.take(users)
            if route.any():
                out = np.empty(users.size, dtype=np.int64)
                paths = ((0, self._draw_rejection), (1, self._draw_exact), (2, self.complement.uniform_exact))
                for code, path in paths:
                    rows = np.flatnonzero(route == code)
                    if rows.size:
                        out[rows] = path(users[rows], rng)
                return out
        return self._draw_rejection(users, rng).astype(np.int64, copy=False)

    def _trial(self, users: np.ndarray, rng: np.random.Generator, width: int = 0) -> np.ndarray:
        """int32 rejection trials (pick a component, draw from its table), one random call.

        ``users`` int64 (P,). ``width`` 0: one trial a row, shape (P,); else ``width`` trials a row, shape
        (width, P) (column r holds row r's trials, in order).
        """
        shape = (users.size,) if width == 0 else (width, users.size)
        if self._scalar is not None:
            lo, size = self._scalar
            x = rng.random(shape)
            x *= size
            return self.tables.pick(x, lo)
        if not self._cuts:
            x = rng.random(shape)
            index = users  # broadcast over the trials of a row
        else:
            u = rng.random((2, *shape))
            x, coin = u[0], u[1]
            index = users * len(self.weights)
            for cut in self._cuts:  # a loop over components
                index = index + (coin >= cut.take(users))
        row = self._table_rows.take(index, axis=0)
        x *= row[..., 0]  # the table's size (int64, exact in float64)
        return self.tables.pick(x, row[..., 1])

    def _draw_rejection(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int32 (R,): batched rejection of the user's positives, exact path for the rows left.

        As ``first_accepted``, written out: later rounds draw ``width`` trials for each row left, laid out
        (width, P) so that per-row arrays broadcast instead of being repeated, and keep the first accepted.
        A rejected trial restarts whole (component included), so the mixture stays exact.
        """
        pairs = self.complement.pairs
        slots = pairs.slots(users)
        out = self._trial(users, rng)
        pending = pairs.hits(slots, users, out).nonzero()[0]
        width = 2
        for _ in range(MAX_ROUNDS - 1):
            if pending.size == 0:
                return out
            row_users = users.take(pending)
            values = self._trial(row_users, rng, width)
            ok = ~pairs.hits(slots.take(pending), row_users, values)
            first = ok.argmax(axis=0)  # the first accepted trial of each row (0 when none is)
            first *= pending.size
            first += np.arange(pending.size)
            got = ok.ravel().take(first)
            out[pending[got]] = values.ravel().take(first[got])
            pending = pending[~got]
            width = min(2 * width, MAX_WIDTH)
        if pending.size:
            out[pending] = self._draw_exact(users[pending], rng)
        return out

    def _draw_exact(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exact draws: the component's CDF with each user's positives cut out (O(|P_u|) a row)."""
        n = users.size
        accept = self.accept[users] * self.weights  # (R, C)
        total = accept.sum(axis=1)
        if self.weights.size == 1:
            comp = np.zeros(n, dtype=np.int64)
        else:
            cum = np.cumsum(accept, axis=1)
            comp = (rng.random(n) * total)[:, None] >= cum[:, :-1]
            comp = comp.sum(axis=1)
        tbl = self.table_of[users, comp]
        mass = self.accept[users, comp]
        out = np.empty(n, dtype=np.int64)
        pending = np.arange(n)
        for _ in range(8):  # redraws only after a float tie on a cut boundary (practically never)
            got = self._invert(users[pending], tbl[pending], mass[pending], rng)
            ok = got >= 0
            out[pending[ok]] = got[ok]
            pending = pending[~ok]
            if pending.size == 0:
                return out
        raise SamplingError(f"exact weighted draw failed for user {int(users[pending[0]])} (numerical)")

    def _invert(self, users: np.ndarray, tbl: np.ndarray, mass: np.ndarray, rng: np.random.Generator):
        n = users.size
        row, items = self.complement.rows(users)
        entry, found = self._lookup(tbl[row], items)
        row, entry = row[found], entry[found]  # the positives inside the table's support, sorted per row
        w = self.tables.p[entry]
        within = np.cumsum(w) - w
        first = np.searchsorted(row, np.arange(n))
        within -= within[np.minimum(first, max(row.size - 1, 0))][row] if row.size else 0.0
        # Mass of non-excluded entries before each excluded entry (the cut CDF at its position).
        cut_before = (self.cdf[entry] - w) - within
        r = rng.random(n) * mass
        shift = np.bincount(row, weights=w * (cut_before <= r[row]), minlength=n)
        target = r + shift
        entry_out = np.empty(n, dtype=np.int64)
        for t in np.unique(tbl):
            rows = np.flatnonzero(tbl == t)
            lo, hi = int(self.tables.offsets[t]), int(self.tables.offsets[t + 1])
            entry_out[rows] = lo + np.searchsorted(self.cdf[lo:hi], target[rows], side="right")
        hi_row = self.tables.offsets[tbl + 1]
        inside = entry_out < hi_row
        got = np.full(n, -1, dtype=np.int64)
        got[inside] = self.tables.outcomes[entry_out[inside]]
        got[inside & self.complement.contains(users, np.maximum(got, 0))] = -1
        return got
