"""SRNS: score- and variance-aware negatives from a per-user memory (Ding et al., NeurIPS 2020).

Follows the official code (``dingjingtao/SRNS``, ``SRNS_real/SRNS_main.py``):

- Memory: per user, S1 (``memory_size``) items, initialised with S1 distinct uniform non-positives.
- Choice for a row (u, i+): argmax over the memory of sigmoid(s_uj - s_ui) + alpha * min(1, t / warmup)
  * std_j, where s is the current model (``score_fn``), t the epoch given to ``start_epoch`` and std_j
  the population std over the last <= 5 epoch snapshots (the scorers given to ``end_epoch``) of
  sigmoid(s_uj - s_ui); std = 0 with fewer than 2 snapshots. ``alpha`` < 0 means argmax of std alone (as
  the official code). With ``num_negatives`` = k > 1 the k best memory entries are returned (k <= S1).
  ``warmup`` = 0 means no warm-up (factor 1).
- Memory update, after the choice, each batch, once per distinct user of the batch: add S2 = 8 * S1
  fresh uniform non-positives (distinct from the memory and from each other; the official code only
  avoids the memory), then keep S1 of the S1 + S2 drawn without replacement with probability
  softmax(s_uj / tau) under the current model: the Gumbel-top-k trick, which is exactly sequential
  sampling without replacement.

A user with fewer than S1 + S2 non-positives gets uniform draws with replacement instead (its memory
may then repeat an item).

The official pool of V = ``pool_size`` uniform non-positives per user, replaced every epoch, is equivalent
to drawing fresh uniform items when the memory holds item ids (the default): nothing of size U x V is
materialised. ``index_memory=True`` reproduces the official quirk instead: a per-user pool of V items
(int32, uniform non-positives with replacement) is drawn at every ``start_epoch`` and the memory holds
indices into it, kept across epochs, so after each epoch the memory silently points at new random items.

Snapshot scorers are functions: they are not part of ``state_dict`` (arrays and scalars only). A trainer
that resumes re-registers its saved snapshots with ``end_epoch``; otherwise std restarts at 0.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.config import require
from raysearch.errors import SamplingError
from raysearch.rng import make_rng
from raysearch.samplers.base import RngLike, Sampler, ScoreFn, call_scorer, register, sigmoid
from raysearch.samplers.exclusion import floyd_ranks, skip_ranks

_POOL_CHUNK = 1 << 22  # pool entries drawn per chunk of users


@register
class SRNS(Sampler):
    """Sampling with a memory, by score and score variance."""

    name = "srns"
    dynamic = True
    FRESH_PER_SLOT = 8  # S2 = 8 * S1
    HISTORY = 5  # epoch snapshots kept for the std term

    @dataclass(frozen=True)
    class Params:
        pool_size: int = 3000  # V: pool per user (used by index_memory only)
        memory_size: int = 8  # S1
        alpha: float = 5.0  # weight of the std term (< 0: std only)
        warmup: float = 50.0  # epochs over which the std weight ramps up
        tau: float = 10.0  # softmax temperature of the memory update
        index_memory: bool = False  # True: the official index-into-rotating-pool quirk

        def __post_init__(self) -> None:
            require(self.memory_size >= 1, "memory_size", f"must be >= 1, got {self.memory_size}")
            require(math.isfinite(self.alpha), "alpha", f"must be finite, got {self.alpha}")
            require(math.isfinite(self.warmup) and self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
            require(math.isfinite(self.tau) and self.tau > 0, "tau", f"must be > 0, got {self.tau}")
            need = self.memory_size * (1 + SRNS.FRESH_PER_SLOT)
            require(
                self.pool_size >= need,
                "pool_size",
                f"must be >= memory_size * 9 = {need} (memory plus fresh candidates), got {self.pool_size}",
            )

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        p = self.params
        self.memory = np.zeros((self.n_users, p.memory_size), dtype=np.int32 if p.index_memory else np.int64)
        self.initialized = np.zeros(self.n_users, dtype=bool)
        self.epoch = 0
        self.pool = np.zeros((self.n_users, p.pool_size), dtype=np.int32) if p.index_memory else None
        self.pool_ready = False
        self._snapshots: deque[ScoreFn] = deque(maxlen=self.HISTORY)

    # ----------------------------------------------------------------- hooks and state
    def start_epoch(self, epoch: int, rng: RngLike) -> None:
        self.epoch = int(epoch)
        if self.params.index_memory:
            self._new_pool(make_rng(rng))

    def end_epoch(self, epoch: int, snapshot_score_fn: ScoreFn) -> None:
        self._snapshots.append(snapshot_score_fn)

    @property
    def n_snapshots(self) -> int:
        return len(self._snapshots)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "memory": self.memory.copy(),
            "initialized": self.initialized.copy(),
            "epoch": self.epoch,
        }
        if self.pool is not None:
            state["pool"] = self.pool.copy()
            state["pool_ready"] = self.pool_ready
        return state

    def load_state_dict(self, state: Any) -> None:
        arrays = {"memory": self.memory, "initialized": self.initialized}
        if self.pool is not None:
            arrays["pool"] = self.pool
        scalars = self._restore(state, arrays)
        unexpected = set(scalars) - {"epoch", "pool_ready"}
        if unexpected:
            raise SamplingError(f"sampler 'srns': unexpected state {', '.join(sorted(unexpected))}")
        self.epoch = int(scalars.get("epoch", 0))
        self.pool_ready = bool(scalars.get("pool_ready", False))

    # ----------------------------------------------------------------- sampling
    def _new_pool(self, rng: np.random.Generator) -> None:
        """V uniform non-positives per user, with replacement (as the official code)."""
        assert self.pool is not None
        users = np.flatnonzero(self.complement.n_free > 0)
        step = max(1, _POOL_CHUNK // self.params.pool_size)
        for lo in range(0, users.size, step):  # a loop over chunks of users, bounding memory
            chunk = users[lo : lo + step]
            draws = self.complement.uniform(np.repeat(chunk, self.params.pool_size), rng)
            self.pool[chunk] = draws.reshape(chunk.size, self.params.pool_size)
        self.pool_ready = True

    def _items(self, users: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """Item ids (int64, entries' shape) of memory entries of ``users`` (R,)."""
        if self.pool is None:
            return entries.astype(np.int64, copy=False)
        return self.pool[users[:, None], entries].astype(np.int64)

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        assert score_fn is not None
        s1 = self.params.memory_size
        if k > s1:
            raise SamplingError(f"sampler 'srns': num_negatives={k} exceeds memory_size={s1}")
        if self.pool is not None and not self.pool_ready:
            self._new_pool(rng)
        distinct = np.unique(users)
        new = distinct[~self.initialized[distinct]]
        if new.size:
            self._init_memory(new, rng)

        items = self._items(users, self.memory[users])  # (B, S1)
        scores = call_scorer(score_fn, users[:, None], items)
        likelihood = sigmoid(scores - call_scorer(score_fn, users, pos_items)[:, None])
        alpha = self.params.alpha
        ramp = 1.0 if self.params.warmup == 0 else min(1.0, self.epoch / self.params.warmup)
        if alpha < 0:
            criterion = self._std(users, pos_items, items)
        elif alpha * ramp > 0:
            criterion = likelihood + alpha * ramp * self._std(users, pos_items, items)
        else:  # the std term has weight 0: skip the snapshot scoring
            criterion = likelihood
        # The sigmoid saturates (ties at 1.0 for gaps > ~37): ties go to the higher raw score, which is
        # the order the exact criterion has.
        choice = np.lexsort((-scores, -criterion), axis=-1)[:, :k]
        out = np.take_along_axis(items, choice, axis=1)
        self._update_memory(distinct, rng, score_fn)
        return out

    def _std(self, users: np.ndarray, pos_items: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float64 (B, S1): population std of sigmoid(s_uj - s_ui) over the stored snapshots."""
        if len(self._snapshots) < 2:
            return np.zeros(items.shape, dtype=np.float64)
        history = np.stack(
            [
                sigmoid(call_scorer(f, users[:, None], items) - call_scorer(f, users, pos_items)[:, None])
                for f in self._snapshots
            ]
        )
        return history.std(axis=0)

    def _init_memory(self, users: np.ndarray, rng: np.random.Generator) -> None:
        s1 = self.params.memory_size
        if self.pool is None:
            self.memory[users] = self.complement.distinct(users, s1, rng)
        else:
            self.memory[users] = floyd_ranks(np.full(users.size, self.params.pool_size), s1, rng)
        self.initialized[users] = True

    def _update_memory(self, users: np.ndarray, rng: np.random.Generator, score_fn: ScoreFn) -> None:
        """Memory of each distinct user <- S1 of (memory + S2 fresh), without replacement, by softmax(s / tau)."""
        s1 = self.params.memory_size
        s2 = self.FRESH_PER_SLOT * s1
        memory = self.memory[users].astype(np.int64)
        if self.pool is None:
            fresh = self.complement.distinct(users, s2, rng, avoid=memory)
        else:
            # Memory indices are distinct, so V - S1 indices are free.
            n_free = np.full(users.size, self.params.pool_size - s1)
            fresh = skip_ranks(floyd_ranks(n_free, s2, rng), memory)
        candidates = np.concatenate([memory, fresh], axis=1)
        scores = call_scorer(score_fn, users[:, None], self._items(users, candidates)) / self.params.tau
        keys = scores + rng.gumbel(size=scores.shape)
        keep = np.argpartition(-keys, s1 - 1, axis=1)[:, :s1]
        self.memory[users] = np.take_along_axis(candidates, keep, axis=1)
