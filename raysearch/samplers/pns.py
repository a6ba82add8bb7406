"""PNS: popularity negatives, P(j | u) proportional to count_j^beta for j not in the user's positives.

``count_j`` is item j's interaction count in the training split (never valid/test: RecBole counts all
splits, which leaks the test set). Items with count 0 are never drawn unless ``smoothing`` > 0, in which case
every item weighs (count_j + smoothing)^beta. ``beta`` may be any finite number (beta = 0: uniform over
the items with count > 0; beta < 0: inverse popularity).

One global alias table over the catalogue (zero weights are never drawn), positives rejected in batch; users whose
positives hold nearly all the popularity mass (acceptance < ``EXACT_BELOW``) and rows still rejected after
the retry cap take the exact path (the CDF with the user's positives cut out). A user whose positives
cover every item with positive weight falls back to uniform over their non-positives (documented choice:
training goes on rather than stopping on one heavy user).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.samplers.alias import RaggedAliasTable
from raysearch.samplers.base import Sampler, ScoreFn, register
from raysearch.samplers.exclusion import ExcludingTables


@register
class PNS(Sampler):
    """Popularity-based negative sampling."""

    name = "pns"
    has_log_q = True
    batch_independent = True

    @dataclass(frozen=True)
    class Params:
        beta: float = 1.0  # exponent on the train count
        smoothing: float = 0.0  # added to every count before the power; > 0 makes unseen items drawable

        def __post_init__(self) -> None:
            require(math.isfinite(self.beta), "beta", f"must be a finite number, got {self.beta}")
            require(
                math.isfinite(self.smoothing) and self.smoothing >= 0,
                "smoothing",
                f"must be >= 0, got {self.smoothing}",
            )

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        counts = self.train.item_counts().astype(np.float64)
        drawable = counts > 0 if self.params.smoothing == 0 else np.ones(self.n_items, dtype=bool)
        weights = np.zeros(self.n_items, dtype=np.float64)
        weights[drawable] = (counts[drawable] + self.params.smoothing) ** self.params.beta
        if not drawable.any():  # an empty training split: every user falls back to uniform
            self.table = RaggedAliasTable.from_segments(np.array([0, 0]), np.zeros(0))
        else:
            # One table over the whole catalogue (zero weights never drawn): draws need no id lookup.
            self.table = RaggedAliasTable.from_segments(np.array([0, self.n_items]), weights)
        self.excluding = ExcludingTables(self.complement, self.table, [(0, 1.0)])

    @property
    def probabilities(self) -> np.ndarray:
        """float64 (n_items,): the global distribution before positives are excluded."""
        p = np.zeros(self.n_items, dtype=np.float64)
        if self.table.offsets[-1]:
            p[:] = self.table.p
        return p

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        rows = users if k == 1 else np.repeat(users, k)
        return self.excluding.draw(rows, rng).reshape(users.size, k)

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        return self.excluding.log_probability(users[:, None], negatives)
