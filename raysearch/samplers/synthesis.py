"""The base of samplers that synthesise negatives from uniform candidates (MixGCF, DENS).

Each negative slot of a (u, i+) row gets ``params.n_negs`` candidates drawn uniformly (with replacement)
from the user's non-positives; the subclass turns them into a representation with ``synthesise``. The
item-id view (``sample()``, for callers that need ids) is the best-scored candidate: DNS over the same
candidates, which is what both samplers reduce to on a 0-hop model without their extra terms.
"""

from __future__ import annotations

import numpy as np

from raysearch.errors import ConfigError
from raysearch.samplers.base import Sampler, ScoreFn, call_scorer

POOLS = ("mean", "concat")


class CandidateSynthesiser(Sampler):
    """Subclasses declare ``Params`` with ``n_negs`` and implement ``synthesise``."""

    dynamic = True
    synthesises = True

    def candidates(self, users: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """int64 (B, k, n_negs) uniform non-positives."""
        m = self.params.n_negs
        return self.complement.uniform(np.repeat(users, k * m), rng).reshape(users.size, k, m)

    def _sample(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                score_fn: ScoreFn | None) -> np.ndarray:
        cand = self.candidates(users, k, rng)
        scores = call_scorer(score_fn, users[:, None, None], cand)
        return np.take_along_axis(cand, scores.argmax(axis=2)[..., None], axis=2)[..., 0]

    def checked_rows(self, users: np.ndarray, pos_items: np.ndarray, pool: str | None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """int64 (users, pos_items), validated like ``sample()``'s; ``ConfigError`` when the backbone has
        no per-layer representations (``pool`` None)."""
        if pool not in POOLS:
            raise ConfigError(f"sampler.name: {self.name} works on per-layer item representations, which this "
                              "backbone does not have (it runs on mf, gmf, lightgcn and ngcf)")
        users = np.asarray(users, dtype=np.int64)
        pos_items = np.asarray(pos_items, dtype=np.int64)
        self.check_ids(users, pos_items)
        self.complement.check_users(users)
        return users, pos_items
