"""Mixed negatives: each negative slot is uniform (RNS) with probability ``uniform_share``, else in-batch.

A per-slot mixture (documented choice): slot (b, s) draws a coin; heads -> uniform over the user's
non-positives, tails -> an in-batch negative (``InBatch``: another row's positive, the user's positives
excluded). So P(j | row) = share / (n_items - |P_u|) + (1 - share) * P_inbatch(j | row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.samplers.base import Sampler, ScoreFn, register
from raysearch.samplers.inbatch import InBatch


@register
class Mixed(Sampler):
    """Uniform and in-batch negatives, mixed per slot."""

    name = "mixed"
    has_log_q = True

    @dataclass(frozen=True)
    class Params:
        uniform_share: float = 0.5  # probability that a slot is a uniform (RNS) negative

        def __post_init__(self) -> None:
            require(
                math.isfinite(self.uniform_share) and 0.0 <= self.uniform_share <= 1.0,
                "uniform_share",
                f"must be in [0, 1], got {self.uniform_share}",
            )

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        self.inbatch = InBatch(self.train, complement=self.complement)

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        rows = np.arange(users.size) if k == 1 else np.repeat(np.arange(users.size), k)
        uniform = rng.random(rows.size) < self.params.uniform_share
        out = np.empty(rows.size, dtype=np.int64)
        slots = np.flatnonzero(uniform)
        out[slots] = self.complement.uniform(users[rows[slots]], rng)
        slots = np.flatnonzero(~uniform)
        out[slots] = self.inbatch.draw_rows(rows[slots], users, pos_items, rng)
        return out.reshape(users.size, k)

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """log(share / (n_items - |P_u|) + (1 - share) q_inbatch(j | row))."""
        share = self.params.uniform_share
        uniform = 1.0 / self.complement.n_free[users].astype(np.float64)
        q = share * uniform[:, None] + (1.0 - share) * self.inbatch.probability(users, pos_items, negatives)
        return np.log(q)
