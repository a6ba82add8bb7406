"""AHNS: adaptive hardness negative sampling (Lai et al., AAAI 2024; official code ``Riwei-HEU/AHNS``,
``adaptive_negative_sampling``).

Per negative slot: draw ``n_negs`` candidates uniformly (with replacement) from the user's non-positives,
score them and the row's positive with the current model (``score_fn``, no gradients), and keep

    argmin_j | s_uj - beta * (s_ui+ + alpha)^(p + 1) |,

the candidate whose score is closest to a target that falls as the positive's score rises (p = -2: the
target is beta / (s_ui+ + alpha)): a well-learned positive gets an easier negative, a poorly learned one a
harder negative. Ties go to the earliest candidate. A row whose target is not finite (s_ui+ + alpha = 0
with a negative exponent) keeps its first candidate, a uniform draw, as the official ``torch.min`` does.
The official code scores with the inner product of the layer-mean embeddings, which is the backbone's own
score for MF and LightGCN; here every backbone scores with its own ``score_fn``.

Defaults from the official ``parser.py`` (n_negs 32, alpha 1.0, beta 0.1, p = -2), which its README uses
for Phones and Tools; Sports: alpha 0.5; ML-1M: alpha 0.1, beta 0.4, n_negs 16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from raysearch.config import require
from raysearch.samplers.base import Sampler, ScoreFn, call_scorer, register


@register
class AHNS(Sampler):
    """Adaptive hardness negative sampling."""

    name = "ahns"
    dynamic = True

    @dataclass(frozen=True)
    class Params:
        n_negs: int = 32  # uniform candidates per negative
        alpha: float = 1.0  # shift of the positive's score
        beta: float = 0.1  # scale of the target
        p: int = -2  # the target is beta * (s_pos + alpha)^(p + 1); p <= -1

        def __post_init__(self) -> None:
            require(self.n_negs >= 1, "n_negs", f"must be >= 1, got {self.n_negs}")
            require(math.isfinite(self.alpha) and self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
            require(math.isfinite(self.beta) and self.beta > 0, "beta", f"must be > 0, got {self.beta}")
            require(self.p <= -1, "p", f"must be <= -1 (a target that does not grow with the positive's "
                                       f"score), got {self.p}")

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        p = self.params
        b, m = users.size, p.n_negs
        cand = self.complement.uniform(np.repeat(users, k * m), rng).reshape(b, k, m)
        assert score_fn is not None
        scores = call_scorer(score_fn, users[:, None, None], cand)  # (B, k, M)
        positive = call_scorer(score_fn, users, pos_items)  # (B,)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            target = p.beta * np.power(positive + p.alpha, float(p.p + 1))
            gap = np.abs(scores - target[:, None, None])
        gap[~np.isfinite(gap)] = np.inf  # np.argmin then keeps the first candidate of such a row
        best = gap.argmin(axis=2)
        return np.take_along_axis(cand, best[..., None], axis=2)[..., 0]
