"""GDNS: gain-tuning dynamic negative sampling (Zhu, Zhang, He, Dou; WWW 2022, Algorithm 1).

Per user u, a persistent pool of M candidate negatives (``num_candidates``, default 4N) with, per entry j:
H_prev (the last expected score gap), G (the gain) and ``seen``. A visit of u at iteration t:

1. positive group: N (``group_size``) items drawn uniformly WITH replacement from u's train positives;
2. negative group: the N pool entries with the highest G^{t-1} (ties broken uniformly at random);
3. H^t(u, j) = mean over the positive group of sigmoid(r_uj - r_ui), for every pool entry j
   (``h_scope="all"``: over all of u's train positives instead);
4. G^t = alpha G^{t-1} + (1 - alpha) sigmoid((H^{t-1} - H^t) / (H^t + eps)), then H^{t-1} <- H^t.
   ``update_scope="pool"`` (default) updates every entry so every G is meaningful; ``"group"`` updates
   only the N selected, as Algorithm 1 lines 13-18. A never-seen entry uses H^{t-1} := H^t (gain term
   0.5; or ``init_gap``) and G^{t-1} := ``init_gain``. The defaults are the paper's G^0 = H^0 = 1
   (``init_gain=1.0, init_gap=1.0``): a fresh candidate is tried first. With ``init_gain=0`` fresh
   candidates sit low on G, so G mostly measures how long an entry has been in the pool, and known
   false negatives get a higher G than true negatives (RESULTS.md, section 3);
5. refresh: a share ``refresh`` of the pool slots NOT in the negative group (pinned slots excepted) is
   replaced by fresh uniform non-positives (distinct from the pool when possible), state reset to unseen.

The loss (sum over the groups of max(0, r_uj - r_ui + margin)) lives in ``raysearch.losses``; ``margin``
stays in ``Params`` so configurations carry it.

Departures from the paper, documented: the paper keeps dense |U| x |I| matrices for H and G (2 GB each
on Pinterest) and redraws its M candidates every epoch; here the state is O(|U| x M) (pool items int32,
H_prev and G float32, seen and pinned bool), filled lazily at a user's first visit with M uniform
non-positives, and ``refresh`` keeps the pool exploring the catalogue. Algorithm 1 line 16 accumulates
H over pairs; we use equation (4), the mean. t counts the user's visits.

``sample()`` (the generic contract): each row's user is visited with the positive group {pos_item}; with
a user on several rows, the first row updates the state and every row selects from G^{t-1}; returns
the top-k pool entries by G^{t-1}. For the false-negative analysis of section 4.6, ``pin`` puts known
false negatives into pools permanently and ``pool_state`` exposes H and G.

Does G steer? ``epoch_stats`` measures every visit's selection against its pool, per epoch (the trainer
records the means in ``metrics.jsonl`` under ``sampler_stats``):
- ``fresh_share``: the share of the negative group that is a never-visited entry (``seen`` False: G is
  ``init_gain``, the paper's G^0 = 1, above a visited entry's G < 1, so fresh draws are picked first; in
  float32 a visited entry whose H is tiny, an easy negative, rounds up to G = 1 and ties with them);
  ``pool_fresh_share``: the share of the pool that is fresh, what a uniform pick of the group would give;
- ``selected_percentile``: the mean pool percentile of the selected negatives by the current model's score
  (the step's scorer, before its update): 100 x (entries of the pool scored lower + half the ties) /
  (M - 1), so 50 is a random pool entry's, 100 the hardest; ``selected_fresh_percentile`` and
  ``selected_visited_percentile``: the same over the fresh picks and over the G-selected visited ones.
With ``alpha=1`` (G frozen at ``init_gain``) the group is a uniform pick of the pool: ``fresh_share``
equals ``pool_fresh_share`` and the percentiles 50, up to noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from raysearch.config import require
from raysearch.errors import SamplingError
from raysearch.rng import make_rng
from raysearch.samplers.base import RngLike, Sampler, ScoreFn, as_ids, call_scorer, register, sigmoid
from raysearch.samplers.exclusion import AVOID_PAD

_CHUNK_CELLS = 1 << 22  # positives x pool cells per chunk for h_scope="all"


@register
class GDNS(Sampler):
    """Gain-tuning dynamic negative sampling."""

    name = "gdns"
    dynamic = True

    @dataclass(frozen=True)
    class Params:
        alpha: float = 0.2  # smoothing of the gain G (1 freezes G)
        group_size: int = 32  # N: positive and negative group size
        num_candidates: int | None = None  # M: pool slots per user; None means 4N
        margin: float = 1.0  # gamma of the group-wise hinge loss (used by the loss)
        eps: float = 1e-8  # guards H^t = 0 in the gain ratio
        h_scope: Literal["group", "all"] = "group"  # H over the positive group, or all train positives
        update_scope: Literal["pool", "group"] = "pool"  # which entries get H and G updated each visit
        init_gain: float = 1.0  # G^{t-1} of a never-seen entry (the paper's G^0 = 1)
        init_gap: float | None = 1.0  # H^{t-1} of a never-seen entry (the paper's H^0 = 1); None: H^t
        refresh: float = 0.25  # share of non-selected, unpinned slots replaced after each visit

        def __post_init__(self) -> None:
            require(0.0 <= self.alpha <= 1.0, "alpha", f"must be in [0, 1], got {self.alpha}")
            require(self.group_size >= 1, "group_size", f"must be >= 1, got {self.group_size}")
            require(
                self.num_candidates is None or self.num_candidates >= self.group_size,
                "num_candidates",
                f"must be >= group_size={self.group_size}, got {self.num_candidates}",
            )
            require(math.isfinite(self.margin), "margin", f"must be finite, got {self.margin}")
            require(math.isfinite(self.eps) and self.eps > 0, "eps", f"must be > 0, got {self.eps}")
            require(math.isfinite(self.init_gain), "init_gain", f"must be finite, got {self.init_gain}")
            require(
                self.init_gap is None or math.isfinite(self.init_gap),
                "init_gap",
                f"must be finite or null, got {self.init_gap}",
            )
            require(0.0 <= self.refresh <= 1.0, "refresh", f"must be in [0, 1], got {self.refresh}")

        @property
        def pool_size(self) -> int:
            return self.num_candidates if self.num_candidates is not None else 4 * self.group_size

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        m = self.params.pool_size
        shape = (self.n_users, m)
        self.items = np.zeros(shape, dtype=np.int32 if self.n_items < 2**31 else np.int64)
        self.h_prev = np.zeros(shape, dtype=np.float32)
        self.gain = np.full(shape, self.params.init_gain, dtype=np.float32)
        self.seen = np.zeros(shape, dtype=bool)
        self.pinned = np.zeros(shape, dtype=bool)
        self.filled = np.zeros(self.n_users, dtype=bool)
        self._stats = self._no_stats()

    # ----------------------------------------------------------------- steering measurements
    _STATS = ("fresh_share", "pool_fresh_share", "selected_percentile", "selected_fresh_percentile",
              "selected_visited_percentile")

    @classmethod
    def _no_stats(cls) -> dict[str, np.ndarray]:
        return {name: np.zeros(2, dtype=np.float64) for name in cls._STATS}

    def start_epoch(self, epoch: int, rng: RngLike) -> None:
        self._stats = self._no_stats()

    def epoch_stats(self) -> dict[str, tuple[float, float]]:
        """(total, count) of each steering measurement (module docstring) over the visits since
        ``start_epoch``: shares count group (or pool) entries, percentiles count selected entries."""
        return {name: (float(v[0]), float(v[1])) for name, v in self._stats.items()}

    def _measure(self, seen: np.ndarray, selected: np.ndarray, pool_scores: np.ndarray) -> None:
        """Add one batch of visits to the epoch's measurements: ``seen`` bool (R, M) at selection time,
        ``selected`` int (R, n) slots of the negative groups, ``pool_scores`` (R, M) under the current model."""
        fresh = ~np.take_along_axis(seen, selected, axis=1)  # (R, n): never-visited picks
        stats = self._stats
        stats["fresh_share"] += (fresh.sum(), fresh.size)
        stats["pool_fresh_share"] += ((~seen).sum(), seen.size)
        m = pool_scores.shape[1]
        if m < 2:
            return
        # mid-rank percentile among the other M - 1 entries: 100 (below + ties / 2) / (M - 1); (R, n, M)
        # comparisons, fewer than the (R, N, M) sigmoids of the visit's H
        mine = np.take_along_axis(pool_scores, selected, axis=1)[:, :, None]
        below = np.count_nonzero(pool_scores[:, None, :] < mine, axis=-1)
        ties = np.count_nonzero(pool_scores[:, None, :] == mine, axis=-1) - 1
        picked = (below + 0.5 * ties) * (100.0 / (m - 1))
        stats["selected_percentile"] += (picked.sum(), picked.size)
        stats["selected_fresh_percentile"] += (picked[fresh].sum(), fresh.sum())
        stats["selected_visited_percentile"] += (picked[~fresh].sum(), (~fresh).sum())

    # ----------------------------------------------------------------- state
    _STATE = ("items", "h_prev", "gain", "seen", "pinned", "filled")

    @property
    def state_nbytes(self) -> int:
        """Bytes of the per-user state: O(n_users x M), never O(n_users x n_items)."""
        return int(sum(getattr(self, name).nbytes for name in self._STATE))

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).copy() for name in self._STATE}

    def load_state_dict(self, state: Any) -> None:
        extra = self._restore(state, {name: getattr(self, name) for name in self._STATE})
        if extra:
            raise SamplingError(f"sampler 'gdns': unexpected state {', '.join(sorted(extra))}")

    def pool_state(self, users: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Pools and their state, (U, M) or (R, M): items, H_prev float32, G float32, seen and pinned bool.

        All users: read-only views that follow later updates (items int32). ``users``: copies of their
        rows (items int64). Entries of a pool not yet filled (``seen`` False) carry no information.
        """
        arrays = {"items": self.items, "H_prev": self.h_prev, "G": self.gain, "seen": self.seen,
                  "pinned": self.pinned}
        if users is not None:
            users = as_ids(users, "users")
            self.check_ids(users)
            out = {k: v[users] for k, v in arrays.items()}
            out["items"] = out["items"].astype(np.int64)
            return out
        views = {}
        for key, value in arrays.items():
            view = value.view()
            view.flags.writeable = False
            views[key] = view
        return views

    # ----------------------------------------------------------------- the pool
    def _fill(self, users: np.ndarray, rng: np.random.Generator) -> None:
        """First visit: every unpinned slot gets a uniform non-positive (distinct when possible)."""
        users = users[~self.filled[users]]
        if users.size == 0:
            return
        m = self.params.pool_size
        fresh = self.complement.distinct(users, m, rng, avoid=self._pinned_items(users))
        keep = self.pinned[users]
        self.items[users] = np.where(keep, self.items[users], fresh)
        rows, slots = np.nonzero(~keep)
        self._reset(users[rows], slots)
        self.filled[users] = True

    def _pinned_items(self, users: np.ndarray) -> np.ndarray:
        """int64 (R, M): the pinned items of each user, ``AVOID_PAD`` elsewhere (R, 0) when nothing is pinned."""
        pinned = self.pinned[users]
        if not pinned.any():
            return np.empty((users.size, 0), dtype=np.int64)
        return np.where(pinned, self.items[users].astype(np.int64), AVOID_PAD)

    def _reset(self, users: np.ndarray, slots: np.ndarray) -> None:
        """Mark pool slots (pairs of user id and slot, int (P,)) as never seen."""
        self.seen[users, slots] = False
        self.h_prev[users, slots] = 0.0
        self.gain[users, slots] = self.params.init_gain

    def _select(self, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """int64 (R, n): slots with the highest G^{t-1}, ties broken uniformly at random."""
        gain = self.gain[users]
        tie = rng.random(gain.shape)
        order = np.lexsort((tie, -gain), axis=-1)
        return order[:, :n]

    def _expected_gap(
        self,
        users: np.ndarray,
        pos_groups: np.ndarray,
        pool_scores: np.ndarray,
        score_fn: ScoreFn,
    ) -> np.ndarray:
        """H float64 (R, M): mean over the positives of sigmoid(r_uj - r_ui)."""
        if self.params.h_scope == "group":
            pos_scores = call_scorer(score_fn, users[:, None], pos_groups)
            # (R, N, M) sigmoids: float32 halves the cost; the mean is accumulated in float64.
            gaps = sigmoid(pool_scores[:, None, :] - pos_scores[:, :, None], dtype=np.float32)
            return gaps.mean(axis=1, dtype=np.float64)
        degree = self.complement.degree[users]
        if degree.min() == 0:
            raise SamplingError(
                f"user {int(users[degree.argmin()])} has no training positives: h_scope='all' needs some"
            )
        m = pool_scores.shape[1]
        h = np.empty(pool_scores.shape, dtype=np.float64)
        cells = np.concatenate([[0], np.cumsum(degree)]) * m
        lo = 0
        while lo < users.size:  # chunks of users bound the (positives x M) temporary
            hi = max(lo + 1, int(np.searchsorted(cells, cells[lo] + _CHUNK_CELLS, side="right")) - 1)
            u = users[lo:hi]
            row, items = self.complement.rows(u)
            pos_scores = call_scorer(score_fn, u[row], items)
            gaps = sigmoid(pool_scores[lo:hi][row] - pos_scores[:, None], dtype=np.float32)
            starts = np.concatenate([[0], np.cumsum(degree[lo:hi])[:-1]])
            h[lo:hi] = np.add.reduceat(gaps, starts, axis=0, dtype=np.float64) / degree[lo:hi, None]
            lo = hi
        return h

    def _visit(
        self,
        users: np.ndarray,
        pos_groups: np.ndarray,
        selected: np.ndarray,
        rng: np.random.Generator,
        score_fn: ScoreFn,
    ) -> None:
        """Update H and G of distinct ``users`` (R,) and refresh their pools; ``selected``: (R, n) slots."""
        p = self.params
        items = self.items[users].astype(np.int64)
        pool_scores = call_scorer(score_fn, users[:, None], items)
        h = self._expected_gap(users, pos_groups, pool_scores, score_fn)
        seen = self.seen[users]
        self._measure(seen, selected, pool_scores)
        h_prev = np.where(seen, self.h_prev[users], h if p.init_gap is None else p.init_gap)
        g_prev = np.where(seen, self.gain[users], p.init_gain)
        g = p.alpha * g_prev + (1.0 - p.alpha) * sigmoid((h_prev - h) / (h + p.eps))
        in_group = np.zeros(items.shape, dtype=bool)
        np.put_along_axis(in_group, selected, True, axis=1)
        update = in_group if p.update_scope == "group" else np.ones(items.shape, dtype=bool)
        self.gain[users] = np.where(update, g, self.gain[users])
        self.h_prev[users] = np.where(update, h, self.h_prev[users])
        self.seen[users] = seen | update
        self._refresh(users, in_group, rng)

    def _refresh(self, users: np.ndarray, in_group: np.ndarray, rng: np.random.Generator) -> None:
        m = in_group.shape[1]
        n_new = int(round(self.params.refresh * (m - int(in_group[0].sum()))))
        if n_new == 0:
            return
        eligible = ~in_group & ~self.pinned[users]
        keys = np.where(eligible, rng.random(in_group.shape), -1.0)
        slots = np.argpartition(-keys, n_new - 1, axis=1)[:, :n_new]
        valid = np.take_along_axis(keys, slots, axis=1) >= 0
        fresh = self.complement.distinct(users, n_new, rng, avoid=self.items[users].astype(np.int64))
        rows = np.nonzero(valid)
        u, s = users[rows[0]], slots[rows]
        self.items[u, s] = fresh[rows]
        self._reset(u, s)

    # ----------------------------------------------------------------- the group-wise API
    def sample_groups(
        self, users: np.ndarray, rng: RngLike, score_fn: ScoreFn
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positive groups, negative groups), each int64 (B, N), for distinct ``users`` (B,).

        Visits every user once: draws its positive group, selects the negative group by G^{t-1}, then
        updates H and G of its pool under ``score_fn`` and refreshes the pool.
        """
        users = as_ids(users, "users")
        if users.ndim != 1:
            raise SamplingError(f"users must be a 1-d array, got shape {users.shape}")
        n = self.params.group_size
        if users.size == 0:
            return np.empty((0, n), dtype=np.int64), np.empty((0, n), dtype=np.int64)
        self.check_ids(users)
        distinct, counts = np.unique(users, return_counts=True)
        if counts.max() > 1:
            raise SamplingError(f"sample_groups needs distinct users; user {int(distinct[counts.argmax()])} repeats")
        self.complement.check_users(users)
        degree = self.complement.degree[users]
        if degree.min() == 0:
            raise SamplingError(
                f"user {int(users[degree.argmin()])} has no training positives: GDNS needs a positive group"
            )
        rng = make_rng(rng)
        self._fill(users, rng)
        offset = np.minimum((rng.random((users.size, n)) * degree[:, None]).astype(np.int64), degree[:, None] - 1)
        pos_groups = self.train.indices[self.train.indptr[users][:, None] + offset]
        selected = self._select(users, n, rng)
        neg_groups = np.take_along_axis(self.items[users], selected, axis=1).astype(np.int64)
        self._visit(users, pos_groups, selected, rng, score_fn)
        return pos_groups, neg_groups

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        assert score_fn is not None
        if k > self.params.pool_size:
            raise SamplingError(f"sampler 'gdns': num_negatives={k} exceeds the pool size {self.params.pool_size}")
        distinct, first = np.unique(users, return_index=True)
        self._fill(distinct, rng)
        selected = self._select(users, k, rng)
        out = np.take_along_axis(self.items[users], selected, axis=1).astype(np.int64)
        self._visit(distinct, pos_items[first][:, None], selected[first], rng, score_fn)
        return out

    # ----------------------------------------------------------------- false-negative analysis
    def pin(self, users: np.ndarray, items: np.ndarray) -> None:
        """Put ``items`` into the pools of ``users`` (pairs, int (P,)) for good: never refreshed.

        An item already in a filled pool is pinned where it is; otherwise it takes an unpinned slot (state
        reset to unseen; a pool not yet filled keeps its pinned slots when it is filled at the user's
        first visit). Pinned items must be non-positives; at most M pinned items a user.
        """
        users, items = as_ids(users, "users"), as_ids(items, "items")
        if users.ndim != 1 or items.shape != users.shape:
            raise SamplingError("pin needs users and items as 1-d arrays of equal length")
        if users.size == 0:
            return
        self.check_ids(users, items)
        positive = self.complement.contains(users, items)
        if positive.any():
            j = int(positive.argmax())
            raise SamplingError(f"item {int(items[j])} is a training positive of user {int(users[j])}: cannot pin")
        keys = np.unique(users * np.int64(self.n_items) + items)
        users, items = keys // self.n_items, keys % self.n_items
        match = (self.items[users] == items[:, None]) & self.filled[users][:, None]  # (P, M)
        present = match.any(axis=1)
        self.pinned[users[present], match[present].argmax(axis=1)] = True
        users, items = users[~present], items[~present]
        if users.size == 0:
            return
        # The r-th new pin of a user takes the user's r-th unpinned slot (pairs are sorted by user).
        first = np.searchsorted(users, users, side="left")
        rank = np.arange(users.size) - first
        free = ~self.pinned[users]
        n_free = free.sum(axis=1)
        if np.any(rank >= n_free):
            bad = int(users[np.argmax(rank >= n_free)])
            raise SamplingError(f"user {bad}: more pinned items than pool slots ({self.params.pool_size})")
        slot = (np.cumsum(free, axis=1) > rank[:, None]).argmax(axis=1)
        self.items[users, slot] = items
        self.pinned[users, slot] = True
        self._reset(users, slot)
