"""ICPNS: in-community popularity negatives (Chen, Lin, Xu 2026; official code ``Uli-Chen/ICPNS``).

Given a community id c(u) per user (the trainer clusters the pre-trained user representations), the
in-community popularity of item i is ``w_c(i) = count_c(i)^alpha``, count_c(i) = training interactions
of the users of c with i (training split only). P(i | u) is proportional to w_{c(u)}(i) for i not in P_u.
Items the community never touched are never drawn; ``alpha = 0`` is uniform over the community's
support. A user whose community support lies entirely inside P_u draws uniformly from their
non-positives (the official fallback).

Implementation: one alias table per community over its support only (a ``RaggedAliasTable``, memory =
sum of support sizes, built with one vectorised pass over the training pairs; the official code builds
one table per user in a Python loop, ~11 minutes on Gowalla), plus batched rejection of positives.
Users whose acceptance mass 1 - sum_{i in P_u} p_c(i) is below ``EXACT_BELOW`` (or zero) are detected
up front and take the exact path; this is the same conditional distribution as the official per-user
tables.

Distributed builds: ``community_tables`` is the build as a pure function of the training split and the
parameters, so that one process (e.g. a Ray actor) builds the tables, publishes ``tables.to_arrays()``
read-only through the object store, and every worker makes ``ICPNS(train, params, tables=
RaggedAliasTable.from_arrays(arrays))`` without rebuilding them (and without writing into them).

Extensions, off by default:
- ``smoothing`` s > 0: w_c(i) = (count_c(i) + s)^alpha for every item, so every item becomes drawable
  (each community table then spans the whole catalogue: memory K x n_items).
- ``global_mix`` lam in [0, 1]: p(i | c) = (1 - lam) p_c(i) + lam p_g(i), a mixture of the normalised
  community distribution and the global one, p_g(i) proportional to (count(i) + s)^alpha (items with a
  positive weight). Drawn as a mixture of two alias tables (the global one is shared).
- soft membership (``member_ids``, ``member_weights``, supplied by the pipeline for
  ``sampler.membership=soft``): P(i | u) proportional to sum_j w_uj p_{c_j(u)}(i) for i not in P_u, over
  the user's m nearest communities c_j(u) (the tables are still counted on the hard assignment). Drawn
  by ``MembershipMixture``: one ``ExcludingTables`` a rank j of the mixture, the rank picked per row with
  probability proportional to w_uj A_j(u) (A_j: the acceptance mass of table c_j(u) once P_u is cut
  out), then a draw from that table with P_u rejected; that is exactly the mixture with P_u excluded,
  O(1) a draw (m cut points, then the alias table).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.samplers.alias import RaggedAliasTable
from raysearch.samplers.base import Sampler, ScoreFn, register
from raysearch.samplers.exclusion import ExcludingTables


def community_ids(value: Any) -> np.ndarray:
    """Read-only int64 (n_users,) community ids from ``value`` (ints, or integral floats); ConfigError else."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    require(arr.ndim == 1 and arr.size > 0, "communities", "must be a non-empty 1-d array, one id per user")
    require(arr.dtype.kind in "iu", "communities", f"must hold integer ids, got dtype {arr.dtype}")
    require(int(arr.min()) >= 0, "communities", f"ids must be >= 0, got {int(arr.min())}")
    out = arr.astype(np.int64, copy=True)
    out.flags.writeable = False
    return out


Components = list[tuple[np.ndarray | int, float]]


def mixture_components(communities: np.ndarray, global_mix: float, n_communities: int | None = None) -> Components:
    """``ExcludingTables`` components: (community per user, 1 - global_mix), plus (K, global_mix) if mixed.

    K (the global table's index) is ``n_communities``, by default ``communities.max() + 1``."""
    components: Components = [(communities, 1.0 - global_mix)]
    if global_mix > 0:
        k = int(communities.max()) + 1 if n_communities is None else int(n_communities)
        components.append((k, global_mix))
    return components


def in_community_tables(
    train: Interactions, communities: np.ndarray, alpha: float, smoothing: float = 0.0,
    n_communities: int | None = None,
) -> RaggedAliasTable:
    """K alias tables, table c holding w_c(i) = count_c(i)^alpha over community c's support (the whole
    catalogue with weights (count_c(i) + smoothing)^alpha when ``smoothing`` > 0).

    ``communities``: int64 (n_users,) ids in [0, K), K = ``n_communities`` (default ``communities.max() + 1``;
    a community without interactions gets an empty table). O(nnz log nnz), no loop over users or items.
    """
    n = train.n_items
    k = int(communities.max()) + 1 if n_communities is None else int(n_communities)
    users, items = train.pairs()
    if smoothing == 0:
        keys, counts = np.unique(communities[users] * np.int64(n) + items, return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(keys // n, minlength=k))])
        return RaggedAliasTable.from_segments(offsets, counts.astype(np.float64) ** alpha, keys % n)
    dense = np.bincount(communities[users] * np.int64(n) + items, minlength=k * n)
    offsets = np.arange(k + 1, dtype=np.int64) * n
    return RaggedAliasTable.from_segments(offsets, (dense + smoothing) ** alpha, np.tile(np.arange(n, dtype=np.int64), k))


def global_table(train: Interactions, alpha: float, smoothing: float = 0.0) -> RaggedAliasTable:
    """One alias table of (count(i) + smoothing)^alpha over the items with a positive weight."""
    counts = train.item_counts().astype(np.float64)
    support = np.arange(train.n_items) if smoothing > 0 else np.flatnonzero(counts > 0)
    return RaggedAliasTable.from_segments(np.array([0, support.size]), (counts[support] + smoothing) ** alpha, support)


def community_tables(
    train: Interactions, communities: np.ndarray, alpha: float, smoothing: float = 0.0, global_mix: float = 0.0
) -> tuple[RaggedAliasTable, Components]:
    """(tables, components) of ICPNS: tables 0..K-1 from ``in_community_tables``, plus table K, the
    ``global_table``, when ``global_mix`` > 0. ``communities``: int64 (n_users,), ids 0..K-1 (validated as by
    ``ICPNS.Params``). Pure: the same inputs give the same tables (each table is built on its own, so a
    build split over groups of communities and concatenated gives the same arrays).
    """
    communities = community_ids(communities)
    tables = in_community_tables(train, communities, alpha, smoothing)
    if global_mix > 0:
        tables = RaggedAliasTable.concatenate([tables, global_table(train, alpha, smoothing)])
    return tables, mixture_components(communities, global_mix)


def membership_arrays(ids: Any, weights: Any, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (int64 (n_users, m) ids >= 0, float64 (n_users, m) weights >= 0, rows summing to 1) of a
    soft membership; ConfigError naming the parameter else."""
    ids, weights = np.asarray(ids), np.asarray(weights, dtype=np.float64)
    require(ids.ndim == 2 and ids.shape[0] == n_users and ids.shape[1] >= 1, "member_ids",
            f"must be (n_users={n_users}, m >= 1), got shape {ids.shape}")
    require(ids.dtype.kind in "iu" and int(ids.min()) >= 0, "member_ids", "must hold community ids >= 0")
    require(weights.shape == ids.shape, "member_weights", f"must have member_ids' shape {ids.shape}, got {weights.shape}")
    require(bool(np.all(np.isfinite(weights)) and np.all(weights >= 0)
                 and np.allclose(weights.sum(axis=1), 1.0)), "member_weights", "rows must be >= 0 and sum to 1")
    ids, weights = ids.astype(np.int64), weights.copy()
    ids.flags.writeable = weights.flags.writeable = False
    return ids, weights


class MembershipMixture:
    """ICPNS's draws for soft membership: P(i | u) proportional to sum_j w_uj q_{c_j(u)}(i), i not in P_u,
    q_c the community's distribution (global mix included), j over the m communities of the user.

    Rank j of the mixture is an ``ExcludingTables`` whose table per user is c_j(u) (exact draws from
    q_{c_j(u)} with P_u excluded, acceptance mass A_j(u)). A draw picks rank j with probability
    w_uj A_j(u) / sum_k w_uk A_k(u), then draws from that rank: P(i | u) = sum_j w_uj q_j(i) / sum_k w_uk
    A_k(u), the mixture with P_u cut out. A user whose ranks hold no mass outside P_u draws uniformly from
    the non-positives (the official fallback). An id without a table (an empty top community) holds no
    mass: it drops out of the user's mixture, as an empty table would.
    """

    def __init__(self, complement: Any, tables: RaggedAliasTable, ids: np.ndarray, weights: np.ndarray,
                 global_mix: float, n_communities: int):
        self.complement = complement
        weights = np.where(ids < n_communities, weights, 0.0)
        ids = np.where(ids < n_communities, ids, 0)
        self.weights = weights
        self.parts = [ExcludingTables(complement, tables, mixture_components(ids[:, j], global_mix, n_communities))
                      for j in range(ids.shape[1])]
        self.accept = np.stack([part.user_acceptance() for part in self.parts], axis=1)  # (n_users, m)
        mass = weights * self.accept
        self.total = mass.sum(axis=1)  # (n_users,): chance that one trial of the mixture is not a positive
        cum = np.cumsum(mass, axis=1) / np.where(self.total > 0, self.total, 1.0)[:, None]
        self.cuts = np.ascontiguousarray(cum[:, :-1])  # (n_users, m - 1): rank j when cuts[j-1] <= coin < cuts[j]
        for a in (self.weights, self.accept, self.total, self.cuts):
            a.flags.writeable = False

    def user_acceptance(self) -> np.ndarray:
        """float64 (n_users,): sum_j w_uj A_j(u)."""
        return self.total

    def draw(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): one item per user (R,), from the user's mixture with its positives excluded."""
        users = np.asarray(users, dtype=np.int64)
        rank = (rng.random(users.size)[:, None] >= self.cuts[users]).sum(axis=1)
        rank[self.total[users] <= 0] = -1  # no mass left outside P_u: uniform over the non-positives
        out = np.empty(users.size, dtype=np.int64)
        for j in range(-1, len(self.parts)):  # a loop over the mixture's ranks (a handful), not over rows
            rows = np.flatnonzero(rank == j)
            if rows.size:
                draw = self.complement.uniform_exact if j < 0 else self.parts[j].draw
                out[rows] = draw(users[rows], rng)
        return out

    def log_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float64 of ``items``' shape: log P(i | u) of ``draw`` for ``users`` broadcast against ``items``."""
        items = np.asarray(items, dtype=np.int64)
        rows = np.broadcast_to(np.asarray(users, dtype=np.int64), items.shape)
        mass = np.zeros(items.shape, dtype=np.float64)
        for j, part in enumerate(self.parts):
            # q_j(i) = P_j(i | u) A_j(u) on the items a rank can draw (a rank without mass adds nothing)
            with np.errstate(divide="ignore"):
                q = np.exp(part.log_probability(rows, items)) * self.accept[rows, j]
            mass += self.weights[rows, j] * q
        total = self.total[rows]
        with np.errstate(divide="ignore"):
            out = np.log(mass) - np.log(np.where(total > 0, total, 1.0))
        uniform = total <= 0
        if uniform.any():
            out[uniform] = -np.log(self.complement.n_free[rows[uniform]])
        return out


@register
class ICPNS(Sampler):
    """In-community popularity negative sampling."""

    name = "icpns"
    has_log_q = True
    batch_independent = True  # the fine-tuning draws; re-clustering happens in start_epoch, before them

    @dataclass(frozen=True, eq=False)
    class Params:
        communities: Any = None  # int (n_users,): the community of each user (required)
        alpha: float = 0.8  # smoothing exponent on the in-community counts
        smoothing: float = 0.0  # extension: additive term before the power (0 = official)
        global_mix: float = 0.0  # extension: weight of the global popularity^alpha distribution
        # extension, supplied by the pipeline (sampler.membership=soft): int (n_users, m) communities of
        # each user's mixture and float (n_users, m) their weights (rows sum to 1); None: hard membership
        member_ids: Any = None
        member_weights: Any = None

        def __post_init__(self) -> None:
            require(
                self.communities is not None, "communities", "required: an int array, one community id per user"
            )
            object.__setattr__(self, "communities", community_ids(self.communities))
            require(math.isfinite(self.alpha) and self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
            require(
                math.isfinite(self.smoothing) and self.smoothing >= 0,
                "smoothing",
                f"must be >= 0, got {self.smoothing}",
            )
            require(0.0 <= self.global_mix <= 1.0, "global_mix", f"must be in [0, 1], got {self.global_mix}")
            require((self.member_ids is None) == (self.member_weights is None), "member_weights",
                    "soft membership needs both member_ids and member_weights")
            if self.member_ids is not None:
                ids, weights = membership_arrays(self.member_ids, self.member_weights, self.communities.size)
                object.__setattr__(self, "member_ids", ids)
                object.__setattr__(self, "member_weights", weights)

    @classmethod
    def validate_params(cls, params: Any) -> Any:
        """As ``Sampler.validate_params``; ``communities`` may be absent (the pipeline computes them)."""
        if "communities" in params:
            return super().validate_params(params)
        return super().validate_params({**params, "communities": [0]})

    def __init__(self, train: Any, params: Any = None, *, tables: RaggedAliasTable | None = None,
                 **kwargs: Any):
        """``tables``: prebuilt tables (``community_tables`` of the same split and parameters, e.g. rebuilt
        with ``RaggedAliasTable.from_arrays`` from the object store), used as they are instead of a build."""
        super().__init__(train, params, **kwargs)
        self._bind(tables)

    def use_communities(self, communities: Any, membership: tuple[Any, Any] | None = None) -> None:
        """Draw from the int (n_users,) assignment ``communities`` (and, for soft membership, ``membership``
        = (member_ids, member_weights)) from now on: the tables are rebuilt from the training split and
        swapped in (the old ones are left as they were), so that the draws that follow are exactly those of
        ``ICPNS(train, {**params, "communities": communities, ...})`` given the same generator.
        (``sampler.recluster_every``: the communities follow the model during fine-tuning.)"""
        ids, weights = membership if membership is not None else (None, None)
        self.params = dataclasses.replace(self.params, communities=community_ids(communities), member_ids=ids,
                                          member_weights=weights)
        self._bind(None)

    def _bind(self, tables: RaggedAliasTable | None) -> None:
        """Tables (built here unless given) and the excluding sampler of ``self.params.communities``."""
        communities = self.params.communities
        if communities.size != self.n_users:
            raise ConfigError(
                f"sampler 'icpns': communities: has {communities.size} entries, the training split has "
                f"{self.n_users} users"
            )
        self.communities = communities
        self.n_communities = int(communities.max()) + 1
        p = self.params
        if tables is None:
            tables, components = community_tables(self.train, communities, p.alpha, p.smoothing, p.global_mix)
        else:
            expected = self.n_communities + (p.global_mix > 0)
            if tables.n_tables != expected:
                raise ConfigError(
                    f"sampler 'icpns': tables: {tables.n_tables} tables given, the parameters need {expected} "
                    f"({self.n_communities} communities{' + the global one' if p.global_mix > 0 else ''})"
                )
            if tables.outcomes.size and int(tables.outcomes.max()) >= self.n_items:
                raise ConfigError(f"sampler 'icpns': tables: item id {int(tables.outcomes.max())} is out of "
                                  f"range for {self.n_items} items")
            components = mixture_components(communities, p.global_mix)
        self.tables = tables
        if p.member_ids is None:
            self.excluding = ExcludingTables(self.complement, self.tables, components)
        else:
            self.excluding = MembershipMixture(self.complement, self.tables, p.member_ids, p.member_weights,
                                               p.global_mix, self.n_communities)

    # ----------------------------------------------------------------- dashboards
    @property
    def table_nbytes(self) -> int:
        """Bytes held by the alias tables (all communities, plus the global one when mixed)."""
        return self.tables.nbytes

    @property
    def community_sizes(self) -> np.ndarray:
        """int64 (K,): users in each community."""
        return np.bincount(self.communities, minlength=self.n_communities)

    @property
    def support_sizes(self) -> np.ndarray:
        """int64 (K,): items each community's table can return."""
        return self.tables.sizes[: self.n_communities]

    def probabilities(self, community: int) -> np.ndarray:
        """float64 (n_items,): the community's distribution (global mix included) before exclusion."""
        p = np.zeros(self.n_items, dtype=np.float64)
        items, probs = self.tables.table(community)
        p[items] = (1.0 - self.params.global_mix) * probs
        if self.params.global_mix > 0:
            g_items, g_probs = self.tables.table(self.n_communities)
            p[g_items] += self.params.global_mix * g_probs
        return p

    def acceptance(self) -> np.ndarray:
        """float64 (n_users,): chance that one rejection trial for the user is not a positive."""
        return self.excluding.user_acceptance()

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        rows = users if k == 1 else np.repeat(users, k)
        return self.excluding.draw(rows, rng).reshape(users.size, k)

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        return self.excluding.log_probability(users[:, None], negatives)
