"""The base of the knowledge-enhanced samplers (``attribute``, ``social``): negatives drawn from items that
side information relates to the row, mixed with uniform ones by a weight (generic KNS in the negative-
sampling survey's terms).

Each negative slot of a (u, i+) row is a side draw with probability ``weight``, else uniform over the
user's non-positives (RNS). A side draw comes from the subclass's distribution with the user's training
positives excluded; a row for which that distribution holds no item outside P_u (a positive without
attributes, a user without friends, or whose friends' items are all the user's) falls back to a uniform
draw (documented choice, as ICPNS's official fallback: training goes on). So with ``weight`` = 1 every
side-supported row draws from side information only.

Stats (``epoch_stats``, in the epoch's record under ``sampler_stats``): ``side_share``, the share of slots
drawn from side information; ``fallback_share``, the share of side slots that fell back to uniform.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.samplers.base import RngLike, Sampler, ScoreFn


def check_weight(weight: float) -> None:
    """``ConfigError`` (key ``weight``) unless 0 <= weight <= 1."""
    require(math.isfinite(weight) and 0.0 <= weight <= 1.0, "weight", f"must be in [0, 1], got {weight}")


def id_pairs(value: Any, key: str, what: tuple[str, str], bounds: tuple[int | None, int | None]) -> np.ndarray:
    """Read-only sorted unique int64 (m, 2) pairs from ``value`` (an (m, 2) integer array); ``ConfigError``
    naming ``key`` for another shape or dtype, no pair, or an id outside [0, bound) (None: no upper bound)."""
    arr = np.asarray(value)
    require(arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] > 0, key,
            f"must be a non-empty ({what[0]}, {what[1]}) pair array of shape (m, 2), got shape {arr.shape}")
    require(arr.dtype.kind in "iu", key, f"must hold integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    for col in (0, 1):
        lo, hi = int(arr[:, col].min()), int(arr[:, col].max())
        bound = bounds[col]
        require(lo >= 0 and (bound is None or hi < bound), key,
                f"{what[col]} ids must be in [0, {bound if bound is not None else 'inf'}), got {lo if lo < 0 else hi}")
    out = np.unique(arr, axis=0)
    out.flags.writeable = False
    return out


def ragged_positions(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row int64 (E,), position int64 (E,)): for each row r, ``counts[r]`` entries at positions
    ``starts[r]``, ``starts[r] + 1``, ... (rows in order)."""
    counts = np.asarray(counts, dtype=np.int64)
    row = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return row, np.asarray(starts, dtype=np.int64)[row] + np.arange(row.size, dtype=np.int64) - first[row]


def ragged_draw(row: np.ndarray, values: np.ndarray, weights: np.ndarray, n_rows: int,
                rng: np.random.Generator) -> np.ndarray:
    """int64 (n_rows,): for each row one of its entries' ``values``, with probability proportional to its
    weight. ``row`` (E,) ascending row of each entry, ``weights`` (E,) > 0; every row has an entry. One
    cumulative sum and one ``searchsorted`` for all rows (the exact paths of the knowledge samplers)."""
    rows = np.arange(n_rows)
    start = np.searchsorted(row, rows, side="left")
    end = np.searchsorted(row, rows, side="right")
    cum = np.cumsum(weights)
    before = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    target = before + rng.random(n_rows) * (cum[end - 1] - before)
    pick = np.clip(np.searchsorted(cum, target, side="right"), start, end - 1)  # the clip: rounding at a row's end
    return np.asarray(values, dtype=np.int64)[pick]


class KnowledgeSampler(Sampler):
    """Side draws mixed with uniform ones; subclasses declare ``Params`` with ``weight`` and their side
    information under ``side_key``, and implement ``side_draw``."""

    side_key: str = ""  # the Params field holding the side information (the pipeline supplies it)
    batch_independent = True  # a slot's side or uniform draw depends on its own (user, positive) row only

    @classmethod
    def validate_params(cls, params: Any) -> Any:
        """As ``Sampler.validate_params``; the side information may be absent (the pipeline supplies it from
        the dataset), so a placeholder stands in while the other keys are checked."""
        if cls.side_key in params:
            return super().validate_params(params)
        return super().validate_params({**params, cls.side_key: [[0, 0]]})

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        self._slots = self._side_asked = self._side_drawn = 0

    def side_draw(self, users: np.ndarray, pos_items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int64 (R,): one side draw per row (no training positive of the row's user), -1 for a row whose
        side distribution holds no item outside P_u (it falls back to uniform)."""
        raise NotImplementedError

    def _sample(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                score_fn: ScoreFn | None) -> np.ndarray:
        rows_u = users if k == 1 else np.repeat(users, k)
        rows_p = pos_items if k == 1 else np.repeat(pos_items, k)
        side = np.flatnonzero(rng.random(rows_u.size) < self.params.weight)
        out = np.full(rows_u.size, -1, dtype=np.int64)
        if side.size:
            out[side] = self.side_draw(rows_u[side], rows_p[side], rng)
        uniform = np.flatnonzero(out < 0)
        if uniform.size:
            out[uniform] = self.complement.uniform(rows_u[uniform], rng)
        self._slots += rows_u.size
        self._side_asked += side.size
        self._side_drawn += rows_u.size - uniform.size
        return out.reshape(users.size, k)

    def start_epoch(self, epoch: int, rng: RngLike) -> None:
        self._slots = self._side_asked = self._side_drawn = 0

    def epoch_stats(self) -> dict[str, tuple[float, float]]:
        return {"side_share": (float(self._side_drawn), float(self._slots)),
                "fallback_share": (float(self._side_asked - self._side_drawn), float(self._side_asked))}
