"""Full-ranking evaluation: every user's held-out items ranked against the whole catalogue.

For each evaluated user the model scores all items; the user's items in every ``exclude`` part are
masked (train at validation, train and valid at test) and never take a slot. Metrics follow
``raysearch.evaluation.metrics``; means are over users with at least one held-out item.

**Ties** (documented rule, deterministic, so a constant model earns nothing by luck):

- ``pessimistic`` (default): a held-out item ranks *after* every non-held-out, unmasked item with an
  equal score; ``optimistic``: *before* them.
- Among the user's held-out items, equal scores are ordered by ascending item id, so the held-out
  positions form a valid permutation and NDCG <= 1.

**Masking.** An item scored ``-inf`` is treated like a masked one: it never takes a slot and, if
held out, is never a hit. A held-out item that is also in an excluded part is masked, yet still counts
in ``|T_u|`` (as in RecBole); disjoint splits never have such items.

**Bands.** With ``item_bands``, the top-K composition is read from ``torch.topk``'s lists (which of
several items tied at the K-th score fills the last slots is torch's choice), and per-band recall is
``|hits in band| / |T_u in band|`` over the users with held-out items in the band.

**How** (bounded memory, no per-user loop): users go in batches of ``batch_users``, each a
(b, n_items) score matrix. ``topk(K_max)`` gives every row's threshold ``t`` (its K_max-th largest
score). A held-out item below ``t`` cannot be in any top K. One above ``t`` has every item scoring at
least as high inside the top-k, so its position is counted against the top-k values alone. One equal
to ``t`` may tie with items outside the top-k: under the pessimistic rule those rows get one row-wise
count of scores equal to ``t``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, RaysearchError
from raysearch.evaluation.breakdown import BAND_NAMES, band_recall, band_slot_counts, check_item_bands
from raysearch.evaluation.metrics import (
    DEFAULT_METRICS,
    TargetPositions,
    TieRule,
    compute_metrics,
    metric_key,
    resolve_ks,
    resolve_metrics,
    resolve_tie,
)
from raysearch.evaluation.result import EvalResult

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""``score_fn(users: int64 (b,)) -> float (b, n_items)`` scores, e.g. a model's ``full_scores``."""


def user_items(part: Interactions, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items of ``users`` in ``part``: (rows, items), int64 (m,) each, where ``rows`` indexes ``users``.

    Rows come in the order of ``users``, items ascending within a row.
    """
    starts = part.indptr[users]
    counts = part.indptr[users + 1] - starts
    rows = np.repeat(np.arange(users.size, dtype=np.int64), counts)
    # position j of the output is entry starts[row] + (j - first output position of row)
    first_out = np.cumsum(counts) - counts
    entries = np.arange(rows.size, dtype=np.int64) + np.repeat(starts - first_out, counts)
    return rows, part.indices[entries]


def evaluated_users(heldout: Interactions, users: np.ndarray | Sequence[int] | None) -> np.ndarray:
    """int64, ascending: ``users`` (all users when None) that have at least one held-out item."""
    if users is None:
        candidates = np.arange(heldout.n_users, dtype=np.int64)
    else:
        candidates = np.unique(np.asarray(users, dtype=np.int64))
        if candidates.size and (candidates[0] < 0 or candidates[-1] >= heldout.n_users):
            raise ValueError(f"users must lie in [0, {heldout.n_users})")
    return candidates[heldout.user_counts()[candidates] > 0]


def evaluate_full(
    score_fn: ScoreFn,
    heldout: Interactions,
    exclude: Sequence[Interactions] | Mapping[str, Interactions],
    ks: Sequence[int],
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_users: int = 2048,
    users: np.ndarray | Sequence[int] | None = None,
    item_bands: np.ndarray | None = None,
    tie: str = "pessimistic",
) -> EvalResult:
    """Rank all items for every user with held-out items and compute ``metrics`` at each K in ``ks``.

    ``exclude``: parts whose items are masked per user; a mapping names them in the protocol (e.g.
    ``{"train": ds.train, "valid": ds.valid}``), a sequence records them as ``exclude[0]``, ...
    ``users``: evaluate only these user ids (a worker's shard); merge shards with ``EvalResult.merge``.
    ``item_bands``: int (n_items,) band codes (``popularity_bands``) to add per-band recall and the
    band composition of the top-K lists to the result.
    ``score_fn``'s output is overwritten in place (masking); a view or a numpy array is copied first.
    Runs under ``torch.no_grad``; memory is O(batch_users x n_items) scores.
    """
    ks = resolve_ks(ks)
    metrics = resolve_metrics(metrics)
    rule = resolve_tie(tie)
    if batch_users < 1:
        raise ConfigError(f"eval.batch_users: must be >= 1, got {batch_users}")
    parts = dict(exclude) if isinstance(exclude, Mapping) else {f"exclude[{i}]": p for i, p in enumerate(exclude)}
    for name, part in parts.items():
        if part.shape != heldout.shape:
            raise ValueError(f"excluded part {name!r} has shape {part.shape}, held-out has {heldout.shape}")
    if item_bands is not None:
        item_bands = check_item_bands(item_bands, heldout.n_items)

    eval_users = evaluated_users(heldout, users)
    k_max = max(ks)
    queries, positions, targets = [], [], []
    slots: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    with torch.no_grad():
        for start in range(0, eval_users.size, batch_users):
            batch = eval_users[start : start + batch_users]
            scores = _owned_scores(score_fn(torch.from_numpy(batch)), batch.size, heldout.n_items)
            for part in parts.values():
                rows, items = user_items(part, batch)
                index = (torch.from_numpy(rows).to(scores.device), torch.from_numpy(items).to(scores.device))
                scores.index_put_(index, torch.tensor(-torch.inf, dtype=scores.dtype, device=scores.device))
            rows, items = user_items(heldout, batch)
            position, top_items, filled = _rank_heldout(scores, rows, items, k_max, rule)
            queries.append(rows + start)
            positions.append(position)
            targets.append(items)
            if item_bands is not None:
                for k in ks:
                    slots[k].append(band_slot_counts(top_items, filled, item_bands, k))

    ranked = TargetPositions(
        query=np.concatenate(queries) if queries else np.zeros(0, np.int64),
        position=np.concatenate(positions) if positions else np.zeros(0, np.int64),
        n_targets=heldout.user_counts()[eval_users],
    )
    bands: dict[str, np.ndarray] = {}
    if item_bands is not None:
        target_band = item_bands[np.concatenate(targets)] if targets else np.zeros(0, np.int64)
        for k in ks:
            bands[metric_key("recall", k)] = band_recall(
                ranked.query, ranked.position, target_band, ranked.n_queries, k
            )
            bands[f"slots@{k}"] = (
                np.concatenate(slots[k]) if slots[k] else np.zeros((0, len(BAND_NAMES)), np.int64)
            )
    protocol = {
        "protocol": "full",
        "ks": list(ks),
        "metrics": list(metrics),
        "tie": rule.name,
        "exclude": list(parts),
        "n_negatives": None,
        "n_items": heldout.n_items,
    }
    return EvalResult(eval_users, compute_metrics(ranked, metrics, ks), protocol, bands)


def _owned_scores(scores: torch.Tensor | np.ndarray, b: int, n_items: int) -> torch.Tensor:
    """``scores`` as a float tensor this module may overwrite, checked to be (b, n_items)."""
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(np.array(scores))  # a copy: never mask the caller's array
    if tuple(scores.shape) != (b, n_items):
        raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected ({b}, {n_items})")
    if scores.dtype not in (torch.float32, torch.float64):
        return scores.float()  # a fresh tensor (integer or half scores)
    if scores._is_view() or scores.requires_grad:
        return scores.detach().clone()  # a view of something the caller keeps
    return scores


def _rank_heldout(
    scores: torch.Tensor, rows: np.ndarray, items: np.ndarray, k_max: int, rule: TieRule
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the held-out items in their row's ranking of the masked ``scores``.

    ``scores``: float (b, n_items), masked entries ``-inf``. ``rows``/``items``: int64 (m,), held-out
    items of each row, rows ascending. Returns ``position`` int64 (m,) (``k_max`` for "not in the top
    k_max"), ``top_items`` int64 (b, k) and ``filled`` bool (b, k), the top-k lists (k = min(k_max,
    n_items)) and which of their slots hold a candidate.
    """
    device = scores.device
    k = min(k_max, scores.shape[1])
    top_values, top_index = torch.topk(scores, k, dim=1)
    # topk ranks NaN above every number, so a NaN anywhere unmasked shows up here
    if torch.isnan(top_values).any():
        bad = int(torch.isnan(top_values).any(dim=1).nonzero()[0, 0])
        raise RaysearchError(f"the model's scores contain NaN (row {bad} of an evaluation batch): training diverged?")
    # with fewer than k_max items every candidate is inside the top-k: no threshold
    threshold = top_values[:, -1] if k == k_max else torch.full_like(top_values[:, 0], -torch.inf)

    rows_t = torch.from_numpy(rows).to(device)
    target = scores[rows_t, torch.from_numpy(items).to(device)]  # (m,)
    rankable = (target > -torch.inf) & (target >= threshold[rows_t])
    above = (top_values[rows_t] > target[:, None]).sum(dim=1)  # every score > target lies in the top-k
    if rule.target_first:
        beaten_by = above
    else:
        at_least = (top_values[rows_t] >= target[:, None]).sum(dim=1)
        # scores equal to the threshold may continue past the top-k: count them over the whole row
        at_threshold = rankable & (target == threshold[rows_t])
        if bool(at_threshold.any()):
            tied_rows, inverse = torch.unique(rows_t[at_threshold], return_inverse=True)
            ties = (scores[tied_rows] == threshold[tied_rows, None]).sum(dim=1)
            at_least[at_threshold] = above[at_threshold] + ties[inverse]
        beaten_by = at_least

    target_np = target.cpu().numpy().astype(np.float64)
    before_np = beaten_by.cpu().numpy()
    heldout_before, heldout_order = _heldout_ties(rows, items, target_np, rule)
    # beaten_by counts held-out items too; replace them by their order among the held-out items
    position = before_np - heldout_before + heldout_order
    position = np.where(rankable.cpu().numpy(), np.minimum(position, k_max), k_max)

    filled = (top_values > -torch.inf).cpu().numpy()
    return position.astype(np.int64), top_index.cpu().numpy().astype(np.int64), filled


def _heldout_ties(
    rows: np.ndarray, items: np.ndarray, target: np.ndarray, rule: TieRule
) -> tuple[np.ndarray, np.ndarray]:
    """For each held-out item: how many of its row's held-out items the tie rule's count includes
    (score > its own for ``target_first``, score >= its own, itself included, otherwise), and its
    0-based order among them (score descending, then item id ascending). Both int64 (m,)."""
    m = rows.size
    order = np.lexsort((items, -target, rows))
    r, s = rows[order], target[order]
    idx = np.arange(m, dtype=np.int64)
    new_row = np.ones(m, dtype=bool)
    new_row[1:] = r[1:] != r[:-1]
    new_group = new_row.copy()
    new_group[1:] |= s[1:] != s[:-1]
    row_start = np.maximum.accumulate(np.where(new_row, idx, 0))
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    group_end = group_start + np.bincount(np.cumsum(new_group) - 1)[np.cumsum(new_group) - 1]
    counted = (group_start if rule.target_first else group_end) - row_start
    before = np.empty(m, dtype=np.int64)
    rank = np.empty(m, dtype=np.int64)
    before[order] = counted
    rank[order] = idx - row_start
    return before, rank
