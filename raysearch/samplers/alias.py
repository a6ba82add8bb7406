"""Alias tables (Walker 1974, Vose 1991): O(1) draws from a fixed discrete distribution.

A table over n outcomes holds ``prob`` (float64 (n,), in [0, 1]) and ``alias`` (int64 (n,)). A draw picks a
column k uniformly and returns k if a uniform coin is below ``prob[k]``, else ``alias[k]``. Correctness
invariant, for every outcome i: ``(prob[i] + sum_{j: alias[j] == i} (1 - prob[j])) / n == p[i]``.

The build is Vose's method, vectorised (no Python loop over entries). With q = n * p, the smalls
s_1..s_k (q < 1) have deficits d = 1 - q and cumulative deficits C (C_0 = 0), the larges l_1..l_M (q >= 1)
have surpluses q - 1 and cumulative surpluses S. Sequential Vose, with the rule that a large which turns
small is served next by the next large, gives:

- small s is aliased to l_m with m = searchsorted(S, C_{s-1}, 'left'); if m >= M it is a leftover;
- large l_m is exhausted by the first small x with C_x > S_m; if such an x exists and m + 1 < M, its final
  q = 1 - (C_x - S_m) and its alias is l_{m+1}; otherwise it is a leftover.

Leftovers get probability 1 (Vose's guard against float drift: never an invalid index, never a -1 alias).
Zero-weight outcomes are ordered first among the smalls, so drift can never make one a leftover, and are
forced to probability 0 at the end: they are never drawn. Arrays are read-only once built.

``RaggedAliasTable`` holds many distributions at once (one per community), each over its own support only,
concatenated with offsets: memory is the total support size, not tables x outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from raysearch.errors import SamplingError


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


def normalise_weights(weights: np.ndarray, what: str = "alias table weights") -> np.ndarray:
    """float64 copy of ``weights`` divided by their sum; rejects negative, non-finite or all-zero weights."""
    w = np.array(weights, dtype=np.float64, copy=True).ravel()
    if w.size == 0:
        raise SamplingError(f"{what}: no outcomes")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise SamplingError(f"{what}: weights must be finite and non-negative")
    total = w.sum()
    if not total > 0:
        raise SamplingError(f"{what}: all weights are zero, nothing can be drawn")
    w /= total
    return w


def vose(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Vose build for a normalised float64 ``p`` (n,) -> (prob float64 (n,), alias int64 (n,))."""
    n = p.size
    q = p * n
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    is_small = q < 1.0
    # Zero weights first: they are served while the cumulative sums are still exact-ish, never leftovers.
    small = np.concatenate([np.flatnonzero(q == 0.0), np.flatnonzero(is_small & (q > 0.0))])
    large = np.flatnonzero(~is_small)
    if small.size and large.size:
        deficit = 1.0 - q[small]
        cum_deficit = np.cumsum(deficit)  # C_1..C_k
        cum_deficit_before = np.concatenate([[0.0], cum_deficit[:-1]])  # C_0..C_{k-1}
        cum_surplus = np.cumsum(q[large] - 1.0)  # S_1..S_M
        n_large = large.size

        # Each small goes to the large whose surplus interval holds the start of its deficit.
        m = np.searchsorted(cum_surplus, cum_deficit_before, side="left")
        served = m < n_large
        prob[small[served]] = q[small[served]]
        alias[small[served]] = large[m[served]]

        # Each large is exhausted by the first small whose cumulative deficit passes its cumulative surplus.
        x = np.searchsorted(cum_deficit, cum_surplus, side="right")
        exhausted = (x < small.size) & (np.arange(n_large) + 1 < n_large)
        which = np.flatnonzero(exhausted)
        prob[large[which]] = 1.0 - (cum_deficit[x[which]] - cum_surplus[which])
        alias[large[which]] = large[which + 1]
    np.clip(prob, 0.0, 1.0, out=prob)
    zero = p == 0.0
    if zero.any():
        prob[zero] = 0.0
        # Only reachable through float drift: a zero-weight leftover must still alias a drawable outcome.
        self_aliased = zero & (alias == np.arange(n))
        alias[self_aliased] = int(np.argmax(p))
    return prob, alias


@dataclass(frozen=True, eq=False)
class AliasTable:
    """One distribution over outcomes 0..n-1.

    ``p``: float64 (n,), the normalised distribution; ``prob``: float64 (n,); ``alias``: int64 (n,).
    """

    p: np.ndarray
    prob: np.ndarray
    alias: np.ndarray

    @classmethod
    def from_weights(cls, weights: np.ndarray) -> AliasTable:
        """Build from non-negative weights (n,), not necessarily normalised. O(n)."""
        p = normalise_weights(weights)
        prob, alias = vose(p)
        _readonly(p, prob, alias)
        return cls(p, prob, alias)

    @property
    def n(self) -> int:
        return int(self.p.size)

    @property
    def nbytes(self) -> int:
        return int(self.p.nbytes + self.prob.nbytes + self.alias.nbytes)

    def draw(self, size: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """int64 array of shape ``size``: i.i.d. outcomes with probabilities ``p``. O(1) a draw."""
        k = rng.integers(0, self.n, size=size)
        coin = rng.random(size=size)
        return np.where(coin < self.prob[k], k, self.alias[k])


@dataclass(frozen=True, eq=False)
class RaggedAliasTable:
    """T distributions, each over its own support, concatenated.

    Table t owns entries ``offsets[t]:offsets[t+1]``. Per entry: ``outcomes`` int64 (the value returned,
    e.g. an item id), ``p`` float64 (its probability within its table), ``prob`` float64 and ``alias``
    int64 (a global entry index inside the same table). Draws read only ``cells``, float64 (total, 2), one
    16-byte cell an entry: ``local index + prob`` (the coin threshold), then two int32 outcomes (the
    entry's own and its alias's), because one random memory access a draw is what a draw costs.
    Outcomes must fit in int32. An empty table (size 0) cannot be drawn from. Built by ``from_segments``;
    ``to_arrays`` / ``from_arrays`` turn it into plain numpy arrays and back (e.g. through Ray's object
    store, whose arrays come back read-only and zero-copy: nothing here ever writes into its arrays).
    """

    offsets: np.ndarray
    outcomes: np.ndarray
    p: np.ndarray
    prob: np.ndarray
    alias: np.ndarray
    cells: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        # Flat views for ``pick``: threshold of entry k at 2k, outcome at 4k (own) or 4k + 1 (alias).
        object.__setattr__(self, "_thresholds", self.cells.reshape(-1))
        object.__setattr__(self, "_pair_outcomes", self.cells.view(np.int32).reshape(-1)[2:])

    @classmethod
    def from_segments(
        cls, offsets: np.ndarray, weights: np.ndarray, outcomes: np.ndarray | None = None
    ) -> RaggedAliasTable:
        """Build T tables from concatenated ``weights`` (total,) split by ``offsets`` int64 (T+1,).

        ``outcomes`` (total,) defaults to each entry's position within its table. One vectorised Vose
        build per table (a loop over tables, never over entries). A non-empty table needs a positive sum.
        """
        offsets = np.array(offsets, dtype=np.int64, copy=True)
        weights = np.asarray(weights, dtype=np.float64)
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise SamplingError("ragged alias table: offsets must start at 0 and be non-decreasing")
        total = int(offsets[-1])
        if weights.shape != (total,):
            raise SamplingError(f"ragged alias table: {weights.size} weights for offsets ending at {total}")
        sizes = np.diff(offsets)
        local = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], sizes)
        if outcomes is None:
            outcomes = local.copy()
        else:
            outcomes = np.array(outcomes, dtype=np.int64, copy=True)
            if outcomes.shape != (total,):
                raise SamplingError("ragged alias table: outcomes and weights differ in length")
        i32 = np.iinfo(np.int32)
        if total and (outcomes.min() < i32.min or outcomes.max() > i32.max):
            raise SamplingError("ragged alias table: outcomes must fit in int32")
        p = np.empty(total, dtype=np.float64)
        prob = np.empty(total, dtype=np.float64)
        alias = np.empty(total, dtype=np.int64)
        for t in np.flatnonzero(sizes):
            lo, hi = int(offsets[t]), int(offsets[t + 1])
            p_t = normalise_weights(weights[lo:hi], what=f"alias table {t}")
            prob_t, alias_t = vose(p_t)
            p[lo:hi] = p_t
            prob[lo:hi] = prob_t
            alias[lo:hi] = alias_t + lo
        cells = np.empty((total, 2), dtype=np.float64)
        cells[:, 0] = local + prob  # exact: local < 2^31, prob in [0, 1]; see ``pick`` for the rounding
        pairs = cells.view(np.int32).reshape(total, 4)
        pairs[:, 2] = outcomes
        pairs[:, 3] = outcomes[alias]
        _readonly(offsets, outcomes, p, prob, alias, cells)
        return cls(offsets, outcomes, p, prob, alias, cells)

    ARRAYS = ("offsets", "outcomes", "p", "prob", "alias", "cells")
    _DTYPES = {"offsets": np.int64, "outcomes": np.int64, "p": np.float64, "prob": np.float64,
               "alias": np.int64, "cells": np.float64}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The table as a dict of its (read-only) arrays, keys ``ARRAYS``: no copy."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RaggedAliasTable:
        """The table ``to_arrays`` gave, without rebuilding it: O(T) checks of names, dtypes and shapes.

        Arrays already read-only, C-contiguous and aligned (as ``ray.get`` returns them) are used as they
        are (zero-copy); others are copied (a writable array, so that the table never shares memory a
        caller may change). ``SamplingError`` names a missing or extra key, a wrong dtype or shape.
        """
        missing = [k for k in cls.ARRAYS if k not in arrays]
        extra = sorted(set(arrays) - set(cls.ARRAYS))
        if missing or extra:
            raise SamplingError(f"ragged alias table arrays: missing {missing}, unexpected {extra} (expected "
                                f"{', '.join(cls.ARRAYS)})")
        got: dict[str, np.ndarray] = {}
        for name in cls.ARRAYS:
            a = np.asarray(arrays[name])
            if a.dtype != cls._DTYPES[name]:
                raise SamplingError(f"ragged alias table arrays: {name} has dtype {a.dtype}, expected "
                                    f"{np.dtype(cls._DTYPES[name])}")
            if a.flags.writeable or not (a.flags.c_contiguous and a.flags.aligned):
                a = np.array(a, order="C", copy=True)
                a.flags.writeable = False
            got[name] = a
        offsets = got["offsets"]
        total = int(offsets[-1]) if offsets.ndim == 1 and offsets.size else -1
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise SamplingError("ragged alias table arrays: offsets must start at 0 and be non-decreasing")
        for name in ("outcomes", "p", "prob", "alias"):
            if got[name].shape != (total,):
                raise SamplingError(f"ragged alias table arrays: {name} has shape {got[name].shape}, expected "
                                    f"({total},) (offsets end at {total})")
        if got["cells"].shape != (total, 2):
            raise SamplingError(f"ragged alias table arrays: cells has shape {got['cells'].shape}, expected "
                                f"({total}, 2)")
        return cls(**got)

    @classmethod
    def concatenate(cls, parts: Sequence[RaggedAliasTable]) -> RaggedAliasTable:
        """One table set holding ``parts``' tables in order (table t of part j becomes table
        sum(n_tables of parts before j) + t). A table is built independently of the others, so the result
        equals ``from_segments`` of the concatenated segments array for array. O(total) copies."""
        if not parts:
            raise SamplingError("ragged alias table: nothing to concatenate")
        starts = np.cumsum([0] + [int(part.offsets[-1]) for part in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [part.offsets[1:] + s for part, s in zip(parts, starts, strict=True)])
        arrays = {"offsets": offsets,
                  "alias": np.concatenate([part.alias + s for part, s in zip(parts, starts, strict=True)])}
        for name in ("outcomes", "p", "prob", "cells"):
            arrays[name] = np.concatenate([getattr(part, name) for part in parts])
        _readonly(*arrays.values())
        return cls(**arrays)

    @property
    def n_tables(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def sizes(self) -> np.ndarray:
        """int64 (T,): support size of each table."""
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        arrays = (self.offsets, self.outcomes, self.p, self.prob, self.alias, self.cells)
        return int(sum(a.nbytes for a in arrays))

    def table(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(outcomes, p) of table ``t``: its support and its distribution (read-only views)."""
        lo, hi = int(self.offsets[t]), int(self.offsets[t + 1])
        return self.outcomes[lo:hi], self.p[lo:hi]

    def pick(self, x: np.ndarray, lo: np.ndarray | int = 0) -> np.ndarray:
        """int32, the shape of ``x``: one outcome per uniform u, given ``x`` = u * size (float64, u in [0, 1)).

        ``size`` and ``lo`` (an int, or int64 broadcastable to ``x``) are the size and first entry of the
        row's table, which must not be empty; ``x`` is left unchanged. One uniform makes both choices: the
        column is k = floor(x) and the coin is frac(x), compared with ``prob`` through the stored threshold
        k + prob (x < k + prob <=> frac(x) < prob). Both are exact up to the rounding of u * size and of
        k + prob, i.e. up to size * 2^-52 on each column's coin: the same order as floor(u * size)'s own
        deviation from uniform (size * 2^-53), far below any sampling noise (1e-10 relative at a million
        outcomes). Zero-weight entries have prob 0 and are never returned.
        """
        k = x.astype(np.intp)  # floor: x >= 0, and x < size since u <= 1 - 2^-53 rounds u * size below size
        if not (isinstance(lo, int) and lo == 0):
            k += lo
        k <<= 1
        to_alias = x >= self._thresholds.take(k)
        k <<= 1
        k += to_alias
        return self._pair_outcomes.take(k)

    def draw(self, tables: np.ndarray | int, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        """One outcome per row, from the table each row names.

        ``tables``: int64 (R,) table ids, or one table id for ``size`` rows. Returns int64 (R,). One
        ``rng.random(R)`` call: each row's uniform u gives both the column and the coin (see ``pick``).
        """
        if np.ndim(tables) == 0:
            t = int(tables)
            lo, n = int(self.offsets[t]), int(self.offsets[t + 1] - self.offsets[t])
            if n == 0:
                raise SamplingError(f"alias table {t} is empty")
            x = rng.random(int(size if size is not None else 1))
            x *= n
            return self.pick(x, lo).astype(np.int64)
        tables = np.asarray(tables, dtype=np.int64)
        lo = self.offsets[tables]
        n = self.offsets[tables + 1] - lo
        if n.size and n.min() == 0:
            bad = int(tables[np.argmin(n)])
            raise SamplingError(f"alias table {bad} is empty")
        x = rng.random(tables.size)
        x *= n
        return self.pick(x, lo).astype(np.int64)
