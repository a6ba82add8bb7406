"""DNS / HNS: the hardest of M uniform candidates (Zhang et al., SIGIR 2013), and DNS(M, N).

Per negative slot: draw M candidates uniformly WITH replacement from the user's non-positives, score
them with the current model (``score_fn``, no gradients), keep the highest. DNS(M, N) (Shi et al.,
WWW 2023; ``dns_mn`` in the AHNS code) keeps the top N of the M and returns one of them uniformly.
M = 1 is RNS in distribution; N = M is RNS too (and skips the scoring call). Score ties go to the
earliest candidate, which is unbiased because candidates are i.i.d. RecBole's HNS ``candidate_num`` is M.

Each of the ``num_negatives`` slots is an independent DNS draw (B x k x M candidates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysearch.config import require
from raysearch.samplers.base import Sampler, ScoreFn, call_scorer, register


@register
class DNS(Sampler):
    """Dynamic (hard) negative sampling."""

    name = "dns"
    dynamic = True

    @dataclass(frozen=True)
    class Params:
        num_candidates: int = 10  # M: uniform candidates per negative
        top_n: int = 1  # N: return one of the N best-scored candidates uniformly

        def __post_init__(self) -> None:
            require(self.num_candidates >= 1, "num_candidates", f"must be >= 1, got {self.num_candidates}")
            require(
                1 <= self.top_n <= self.num_candidates,
                "top_n",
                f"must be in [1, num_candidates={self.num_candidates}], got {self.top_n}",
            )

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        m, n_top = self.params.num_candidates, self.params.top_n
        b = users.size
        cand = self.complement.uniform(np.repeat(users, k * m), rng).reshape(b, k, m)
        if n_top == m:  # uniform among all candidates: no scoring needed
            pick = rng.integers(0, m, size=(b, k))
            return np.take_along_axis(cand, pick[..., None], axis=2)[..., 0]
        assert score_fn is not None
        scores = call_scorer(score_fn, users[:, None, None], cand)
        if n_top == 1:
            best = scores.argmax(axis=2)
        else:
            top = np.argpartition(-scores, n_top - 1, axis=2)[..., :n_top]
            pick = rng.integers(0, n_top, size=(b, k))
            best = np.take_along_axis(top, pick[..., None], axis=2)[..., 0]
        return np.take_along_axis(cand, best[..., None], axis=2)[..., 0]
