"""The scoring function a model hands to samplers, and the mark that lets it take broadcast user ids.

Models build scorers (``Recommender.frozen_scorer``) and samplers call them (``samplers.base.call_scorer``);
both import this module, neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def broadcasting(score_fn: ScoreFn) -> ScoreFn:
    """Mark ``score_fn`` as accepting ``users`` broadcastable against ``items`` (e.g. (B, 1) against
    (B, k)) and returning scores of ``items``' shape; ``call_scorer`` then passes the user ids as they
    are instead of repeating each one k times."""
    score_fn.broadcasts = True  # type: ignore[attr-defined]
    return score_fn
