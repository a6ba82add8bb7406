"""Sampled evaluation (SRNS/GDNS protocol): each held-out item ranked against the user's fixed negatives.

For a held-out pair (u, i) with score ``s_ui`` and the user's sampled negatives ``J_u``:

- ``rank = #{j in J_u: s_uj >= s_ui}`` under the ``pessimistic`` rule (the default: a tie counts
  against the held-out item), ``#{j in J_u: s_uj > s_ui}`` under ``optimistic`` (ties favour the
  held-out item, exactly as SRNS's ``EvaluateUser.py``);
- ``recall@K = hit@K = 1[rank < K]``, ``ndcg@K = 1/log2(rank + 2)`` if ``rank < K``,
  ``mrr@K = 1/(rank + 1)`` if ``rank < K``, ``precision@K = 1[rank < K] / K`` (all 0 otherwise).

A user with several held-out items: each item is ranked on its own against the same negatives, the
values are averaged over the user's items first, then over users. Entries of ``-1`` in ``negatives``
are padding and are never scored (rows of users without held-out items are all ``-1``). Negatives are
taken as given: the sampler that drew them is responsible for excluding the user's positives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, DataError, RaysearchError
from raysearch.evaluation.breakdown import band_recall, check_item_bands
from raysearch.evaluation.full_ranking import evaluated_users, user_items
from raysearch.evaluation.metrics import (
    DEFAULT_METRICS,
    TargetPositions,
    compute_metrics,
    metric_key,
    resolve_ks,
    resolve_metrics,
    resolve_tie,
)
from raysearch.evaluation.result import EvalResult

PairScoreFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | np.ndarray"]
"""``score_fn_pairs(users: int64 (b,), items: int64 (b, c)) -> float (b, c)``, torch or numpy."""


def evaluate_sampled(
    score_fn_pairs: PairScoreFn,
    heldout: Interactions,
    negatives: np.ndarray,
    ks: Sequence[int],
    metrics: Sequence[str] = DEFAULT_METRICS,
    tie: str = "pessimistic",
    users: np.ndarray | Sequence[int] | None = None,
    batch_users: int = 2048,
    item_bands: np.ndarray | None = None,
) -> EvalResult:
    """Rank every held-out item against its user's ``negatives`` (int64 (n_users, N), -1 = none).

    Users without held-out items are skipped; ``users`` restricts the evaluation to a shard.
    ``item_bands``: int (n_items,) band codes (``popularity_bands``) to add, per band of the *held-out*
    item, ``recall@K`` (the share of the user's held-out items of that band ranked in the top K; NaN where
    the user has none in the band). Top-K composition (``slots@K``) is not defined here: the ranked lists
    hold sampled negatives, not the catalogue. Each call
    of ``score_fn_pairs`` scores ``batch_users`` users' negatives and held-out items at once, so the
    negatives are scored once per user, not once per held-out item. Runs under ``torch.no_grad``.
    """
    ks = resolve_ks(ks)
    metrics = resolve_metrics(metrics)
    rule = resolve_tie(tie)
    if batch_users < 1:
        raise ConfigError(f"eval.batch_users: must be >= 1, got {batch_users}")
    negatives = np.asarray(negatives)
    if negatives.ndim != 2 or negatives.shape[0] != heldout.n_users or not np.issubdtype(negatives.dtype, np.integer):
        raise ValueError(f"negatives must be integer (n_users={heldout.n_users}, N), got {negatives.dtype} "
                         f"{negatives.shape}")
    negatives = negatives.astype(np.int64, copy=False)
    if negatives.size and (negatives.min() < -1 or negatives.max() >= heldout.n_items):
        raise DataError(f"sampled negatives: item ids must lie in [0, {heldout.n_items}) or be -1 (none)")

    eval_users = evaluated_users(heldout, users)
    n_neg = negatives.shape[1]
    valid_counts = (negatives[eval_users] >= 0).sum(axis=1)
    if np.any(valid_counts == 0):
        user = int(eval_users[np.argmax(valid_counts == 0)])
        raise DataError(f"sampled negatives: user {user} has held-out items but no negatives (a row of -1)")

    if item_bands is not None:
        item_bands = check_item_bands(item_bands, heldout.n_items)
    pair_users, pair_items, ranks = [], [], []
    with torch.no_grad():
        for start in range(0, eval_users.size, batch_users):
            batch = eval_users[start : start + batch_users]
            rows, items = user_items(heldout, batch)
            ranks.append(_rank_batch(score_fn_pairs, batch, negatives[batch], rows, items, rule.target_first))
            pair_users.append(rows + start)
            pair_items.append(items)

    pair_user = np.concatenate(pair_users) if pair_users else np.zeros(0, np.int64)
    rank = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    # every pair is a query with one target; per-user values average the user's pairs
    per_pair = compute_metrics(TargetPositions(np.arange(rank.size), rank, np.ones(rank.size, np.int64)), metrics, ks)
    n_pairs = np.bincount(pair_user, minlength=eval_users.size)
    per_user = {
        key: np.bincount(pair_user, weights=values, minlength=eval_users.size) / n_pairs
        for key, values in per_pair.items()
    }
    bands: dict[str, np.ndarray] = {}
    if item_bands is not None:
        target_band = item_bands[np.concatenate(pair_items)] if pair_items else np.zeros(0, np.int64)
        for k in ks:
            bands[metric_key("recall", k)] = band_recall(pair_user, rank, target_band, eval_users.size, k)
    protocol = {
        "protocol": "sampled",
        "ks": list(ks),
        "metrics": list(metrics),
        "tie": rule.name,
        "exclude": [],
        "n_negatives": int(n_neg),
        "n_items": heldout.n_items,
    }
    return EvalResult(eval_users, per_user, protocol, bands)


def _rank_batch(
    score_fn_pairs: PairScoreFn,
    batch: np.ndarray,
    negatives: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    target_first: bool,
) -> np.ndarray:
    """int64 (m,): rank of each held-out (rows[j], items[j]) among its row's valid ``negatives`` (b, N)."""
    b, n_neg = negatives.shape
    counts = np.bincount(rows, minlength=b)
    col = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)  # index within the row
    # candidates: [negatives | held-out items padded to the batch's widest row]; pads and -1 are scored
    # as item 0 and ignored
    heldout_pad = np.zeros((b, int(counts.max())), dtype=np.int64)
    heldout_pad[rows, col] = items
    invalid = negatives < 0
    candidates = np.concatenate([np.where(invalid, 0, negatives), heldout_pad], axis=1)
    scores = score_fn_pairs(torch.from_numpy(batch), torch.from_numpy(candidates))
    scores = torch.as_tensor(scores).detach()
    if tuple(scores.shape) != candidates.shape:
        raise ValueError(f"score_fn_pairs returned shape {tuple(scores.shape)}, expected {candidates.shape}")
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.double()
    if torch.isnan(scores).any():
        raise RaysearchError("the model's scores contain NaN: training diverged?")
    invalid_t = torch.from_numpy(invalid).to(scores.device)
    negative_scores = scores[:, :n_neg].masked_fill(invalid_t, -torch.inf).sort(dim=1).values  # ascending
    target = scores[:, n_neg:][torch.from_numpy(rows).to(scores.device), torch.from_numpy(col).to(scores.device)]
    # searchsorted per row: n_neg - (#scores <= s) = #{> s}; n_neg - (#scores < s) = #{>= s}
    inserted = torch.searchsorted(negative_scores, scores[:, n_neg:].contiguous(), right=target_first)
    rank = n_neg - inserted[torch.from_numpy(rows).to(scores.device), torch.from_numpy(col).to(scores.device)]
    rank = rank.cpu().numpy().astype(np.int64)
    if not target_first:
        # the -inf fillers of invalid slots count as ">= s" only for a held-out item scored -inf
        rank -= np.where(target.cpu().numpy() == -np.inf, invalid.sum(axis=1)[rows], 0)
    return rank
