"""Ranking metrics, computed from where each held-out target landed in its query's ranking.

Both protocols reduce to the same input (``TargetPositions``): under full ranking a query is a user and
its targets are the user's held-out items; under the sampled protocol a query is one held-out
(user, item) pair, ranked against the user's sampled negatives, with a single target. Each metric maps
those positions and a cutoff K to one value per query. Metrics are registered by name in ``METRICS``
(``recall``, ``ndcg``, ``mrr``, ``hit``, ``precision``); results are keyed ``f"{name}@{k}"``.

Definitions (positions are 0-based; ``T_q`` is the query's target set):

- ``recall@K    = |{t in T_q: pos_t < K}| / |T_q|``
- ``ndcg@K      = DCG / IDCG``, ``DCG = sum_{t: pos_t < K} 1 / log2(pos_t + 2)``, IDCG the DCG of
  ``min(|T_q|, K)`` targets at positions 0, 1, ...
- ``mrr@K       = 1 / (min_t pos_t + 1)`` if that position is below K, else 0
- ``hit@K       = 1[any pos_t < K]``
- ``precision@K = |{t: pos_t < K}| / K`` (slots past the end of a short candidate list count as misses)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from raysearch.errors import ConfigError
from raysearch.registry import Registry


@dataclass(frozen=True)
class TargetPositions:
    """Where each held-out target landed in the ranking of its query.

    ``query``: int64 (m,), the query (0..n_queries-1) each target belongs to.
    ``position``: int64 (m,), the target's 0-based position in its query's ranking; a protocol that only
    ranks the top ``cutoff`` stores ``cutoff`` for "further down" (it is never below any K evaluated).
    Positions of one query's targets are distinct (ties are broken by the protocol's rule).
    ``n_targets``: int64 (n_queries,), ``|T_q|``, counting targets that could not be ranked (masked ones).
    """

    query: np.ndarray
    position: np.ndarray
    n_targets: np.ndarray

    @property
    def n_queries(self) -> int:
        return int(self.n_targets.size)

    def hits(self, k: int) -> np.ndarray:
        """bool (m,): is the target in the top ``k``?"""
        return self.position < k

    def hit_counts(self, k: int) -> np.ndarray:
        """float64 (n_queries,): targets of each query in the top ``k``."""
        return _sum_per_query(self.query, self.hits(k), self.n_queries)


def _sum_per_query(query: np.ndarray, weights: np.ndarray, n_queries: int) -> np.ndarray:
    """float64 (n_queries,): sums of ``weights`` per query (``bincount`` gives int64 for no entries)."""
    return np.bincount(query, weights=weights, minlength=n_queries).astype(np.float64, copy=False)


MetricFn = Callable[[TargetPositions, int], np.ndarray]
"""``fn(targets, k) -> float64 (n_queries,)``: the metric's value for every query at cutoff ``k``."""

METRICS: Registry[MetricFn] = Registry("metric")

DEFAULT_METRICS: tuple[str, ...] = ("recall", "ndcg", "mrr", "hit", "precision")


@METRICS.register("recall")
def recall(targets: TargetPositions, k: int) -> np.ndarray:
    return targets.hit_counts(k) / targets.n_targets


@METRICS.register("precision")
def precision(targets: TargetPositions, k: int) -> np.ndarray:
    return targets.hit_counts(k) / k


@METRICS.register("hit")
def hit(targets: TargetPositions, k: int) -> np.ndarray:
    return (targets.hit_counts(k) > 0).astype(np.float64)


@METRICS.register("ndcg")
def ndcg(targets: TargetPositions, k: int) -> np.ndarray:
    hits = targets.hits(k)
    gains = 1.0 / np.log2(targets.position[hits] + 2.0)
    dcg = _sum_per_query(targets.query[hits], gains, targets.n_queries)
    # ideal_dcg[n] = DCG of n targets at positions 0..n-1
    ideal_dcg = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    idcg = ideal_dcg[np.minimum(targets.n_targets, k)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


@METRICS.register("mrr")
def mrr(targets: TargetPositions, k: int) -> np.ndarray:
    hits = targets.hits(k)
    out = np.zeros(targets.n_queries, dtype=np.float64)
    # positions of one query are distinct, so the largest reciprocal rank is the first hit's
    np.maximum.at(out, targets.query[hits], 1.0 / (targets.position[hits] + 1.0))
    return out


def metric_key(name: str, k: int) -> str:
    """The key of metric ``name`` at cutoff ``k`` in results (``"ndcg@10"``)."""
    return f"{name}@{k}"


def compute_metrics(targets: TargetPositions, metrics: Sequence[str], ks: Sequence[int]) -> dict[str, np.ndarray]:
    """``{"name@k": float64 (n_queries,)}`` for every metric and cutoff (names already validated)."""
    return {metric_key(name, k): METRICS.get(name)(targets, k) for name in metrics for k in ks}


# ----------------------------------------------------------------------------- protocol arguments
@dataclass(frozen=True)
class TieRule:
    """How a held-out target ranks against a non-target with exactly the same score."""

    name: str
    target_first: bool  # True: the target ranks before the equal-scored non-targets


TIE_RULES: Registry[TieRule] = Registry("tie rule")
TIE_RULES.register("pessimistic")(TieRule("pessimistic", target_first=False))
TIE_RULES.register("optimistic")(TieRule("optimistic", target_first=True))


def resolve_tie(tie: str) -> TieRule:
    """The ``TieRule`` named ``tie``; an unknown name is a ``ConfigError`` on ``eval.tie``."""
    try:
        return TIE_RULES.get(tie)
    except ConfigError as err:
        raise ConfigError(f"eval.tie: {err}") from None


def resolve_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated metric names in the given order (``ConfigError`` on ``eval.metrics``)."""
    names = tuple(dict.fromkeys(metrics))
    if not names:
        raise ConfigError("eval.metrics: must name at least one metric")
    for name in names:
        try:
            METRICS.get(name)
        except ConfigError as err:
            raise ConfigError(f"eval.metrics: {err}") from None
    return names


def resolve_ks(ks: Iterable[int]) -> tuple[int, ...]:
    """Validated, de-duplicated cutoffs in the given order (``ConfigError`` on ``eval.ks``)."""
    values = tuple(dict.fromkeys(ks))
    if not values or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in values):
        raise ConfigError(f"eval.ks: must be a non-empty list of integers K >= 1, got {list(values)}")
    return tuple(int(k) for k in values)
