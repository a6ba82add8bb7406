"""RNS: uniform negatives, P(j | u) = 1 / (n_items - |P_u|) for every item j the user has not interacted with.

Uniform item ids, positives rejected in batch (``Complement.uniform``), rank arithmetic for rows still
rejected after the retry cap (a user with few non-positives): exact, O(1) a draw in the catalogue size.
"""

from __future__ import annotations

import numpy as np

from raysearch.samplers.base import Sampler, ScoreFn, register


@register
class RNS(Sampler):
    """Random (uniform) negative sampling."""

    name = "rns"
    has_log_q = True
    batch_independent = True

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        rows = users if k == 1 else np.repeat(users, k)
        return self.complement.uniform(rows, rng).reshape(users.size, k)

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """-log(n_items - |P_u|) in every slot."""
        per_user = -np.log(self.complement.n_free[users].astype(np.float64))
        return np.broadcast_to(per_user[:, None], negatives.shape).copy()
