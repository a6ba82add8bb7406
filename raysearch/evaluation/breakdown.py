"""Breakdowns of an evaluation: item popularity bands (head / mid / tail) and per-group means.

Bands are defined from **train** popularity only. Items are ordered by popularity, most popular first,
ties by ascending item id; with ``n`` items and shares ``(h, m, t)`` the first ``floor(h * n)`` items
of that order are head (code 0), the items up to ``floor((h + m) * n)`` are mid (code 1), the rest tail
(code 2). The default ``(0.2, 0.3, 0.5)`` matches ``EvalConfig.bands``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.evaluation.result import BAND_NAMES, EvalResult

__all__ = ["BAND_NAMES", "band_recall", "band_slot_counts", "check_item_bands", "group_means", "popularity_bands"]


def popularity_bands(item_popularity: np.ndarray, shares: Sequence[float] = (0.2, 0.3, 0.5)) -> np.ndarray:
    """int8 (n_items,): 0 head, 1 mid, 2 tail, from ``item_popularity`` (n_items,), train counts."""
    popularity = np.asarray(item_popularity)
    if popularity.ndim != 1 or popularity.size == 0:
        raise ValueError(f"item_popularity must be a non-empty 1-d array, got shape {popularity.shape}")
    shares = tuple(float(s) for s in shares)
    require(
        len(shares) == len(BAND_NAMES) and all(s > 0 for s in shares) and abs(sum(shares) - 1) < 1e-9,
        "eval.bands",
        f"must be three positive shares (head, mid, tail) summing to 1, got {list(shares)}",
    )
    n = popularity.size
    # stable sort of -popularity keeps equal counts in ascending id order
    order = np.argsort(-popularity.astype(np.float64), kind="stable")
    # the epsilon absorbs float error in the products (0.2 * 10 must give 2, not 1.999...)
    cuts = [math.floor(c * n + 1e-9) for c in np.cumsum(shares[:-1])]
    bands = np.empty(n, dtype=np.int8)
    bands[order] = np.repeat(np.arange(len(BAND_NAMES), dtype=np.int8), np.diff([0, *cuts, n]))
    return bands


def check_item_bands(item_bands: np.ndarray, n_items: int) -> np.ndarray:
    """``item_bands`` as int64 (n_items,) band codes in [0, 3); ``ValueError`` otherwise."""
    item_bands = np.asarray(item_bands, dtype=np.int64)
    if item_bands.shape != (n_items,) or item_bands.min() < 0 or item_bands.max() >= len(BAND_NAMES):
        raise ValueError(f"item_bands must be ({n_items},) codes in [0, {len(BAND_NAMES)})")
    return item_bands


def band_slot_counts(top_items: np.ndarray, filled: np.ndarray, item_bands: np.ndarray, k: int) -> np.ndarray:
    """int64 (b, 3): items of each band among the first ``k`` filled slots of each top list.

    ``top_items``: int64 (b, c) item ids ranked best first; ``filled``: bool (b, c), False for slots past
    the end of a user's candidates.
    """
    b = top_items.shape[0]
    rows, cols = np.nonzero(filled[:, :k])
    codes = rows * len(BAND_NAMES) + item_bands[top_items[rows, cols]]
    return np.bincount(codes, minlength=b * len(BAND_NAMES)).reshape(b, len(BAND_NAMES))


def band_recall(
    query: np.ndarray, position: np.ndarray, target_band: np.ndarray, n_queries: int, k: int
) -> np.ndarray:
    """float64 (n_queries, 3): per band, ``|hits in band| / |targets in band|``; NaN where a query has no
    target in the band. ``query``/``position``/``target_band``: (m,) per held-out target."""
    codes = query * len(BAND_NAMES) + target_band
    size = n_queries * len(BAND_NAMES)
    targets = np.bincount(codes, minlength=size).reshape(n_queries, len(BAND_NAMES))
    hits = np.bincount(codes, weights=position < k, minlength=size).reshape(n_queries, len(BAND_NAMES))
    return np.divide(hits, targets, out=np.full(hits.shape, np.nan), where=targets > 0)


def group_means(result: EvalResult, groups: np.ndarray) -> dict[Any, dict[str, float]]:
    """``{group: {"ndcg@10": mean over the group's evaluated users}}`` (e.g. per community).

    ``groups``: (n_users,) the group of every user id; groups without an evaluated user are absent.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or (result.n_users and int(result.users.max()) >= groups.size):
        raise ValueError(f"groups must be 1-d with an entry for every user id, got shape {groups.shape}")
    labels, inverse = np.unique(groups[result.users], return_inverse=True)
    counts = np.bincount(inverse, minlength=labels.size)
    sums = {key: np.bincount(inverse, weights=values, minlength=labels.size) for key, values in result.per_user.items()}
    return {
        label.item(): {key: float(sums[key][g] / counts[g]) for key in result.per_user}
        for g, label in enumerate(labels)
    }
