"""Communities that follow the model during fine-tuning (ICPNS's ``sampler.recluster_every``, beyond the paper).

The ICPNS paper clusters the users once, after pre-training, and freezes the assignment; it names
re-clustering during fine-tuning as its next step. ``Reclustering`` wraps the fine-tuning stage's ICPNS
sampler (built in this process, or served by the run's table actors under Ray Train) and, at the start of
fine-tuning epochs R, 2R, 3R, ... (never epoch 0), before any draw of the epoch:

1. every process takes the current user representations (sharded tables gather them collectively);
2. the main process runs k-means on them, warm-started from the previous centroids so that community ids
   stay comparable (``communities.recluster``), and broadcasts the new assignment and centroids;
3. every process hands the assignment to its sampler (``use_communities``: a sampler with its own tables
   rebuilds and swaps them; a hosted one has the rank that owns the table actors publish the next version
   through their directory), waits for the others (a barrier, so that the version is published before
   anyone looks), then the inner sampler's ``start_epoch`` picks the new version up: every process draws
   from the new tables from the same epoch on.

A refresh draws nothing from the epoch's random stream (nor from torch's), so the draws that follow are
exactly those of a sampler built fresh on the new assignment with the same generator. The assignment,
the centroids, the version and the refresh records are the sampler's checkpointed state: a run resumed
from epoch e's checkpoint draws epoch e + 1 from epoch e's assignment, or repeats the refresh due at
e + 1 from the same weights and centroids, and so ends where an uninterrupted run ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raysearch.communities import assignment_change, recluster, soft_membership
from raysearch.errors import SamplingError
from raysearch.rng import make_rng
from raysearch.samplers.base import Sampler, ScoreFn
from raysearch.samplers.icpns import community_ids

STATE_KEYS = ("communities", "centroids", "version", "history")
SOFT_STATE_KEYS = ("member_ids", "member_weights")  # soft membership's too

Membership = tuple[np.ndarray, np.ndarray]  # int64 (n_users, m) community ids, float64 (n_users, m) weights


@dataclass(frozen=True)
class ReclusterParams:
    """When and how the fine-tuning stage re-clusters its users."""

    every: int  # fine-tuning epochs between re-clusterings (> 0: epochs every, 2 * every, ... start with one)
    warm_start: bool = True  # k-means from the previous centroids (False: a fresh k-means++ run each time)
    seed: int = 0  # cold starts seed k-means with a stream of (seed, "recluster", version)
    top_communities: int | None = None  # soft membership: communities in each user's mixture (None: hard)
    temperature: float = 1.0  # soft membership: softmax temperature over the negative centroid distances


def is_due(epoch: int, every: int) -> bool:
    """Whether fine-tuning epoch ``epoch`` starts with a re-clustering (``every`` 0: never)."""
    return every > 0 and epoch > 0 and epoch % every == 0


def current_representations(model: Any) -> np.ndarray:
    """float (n_users, d'): the model's user representations as they are now, computed in evaluation mode
    and without gradients (no dropout: nothing is drawn from torch's generator), the mode put back after.
    Sharded tables gather them collectively, so every process calls this."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.user_representations()
    finally:
        model.train(was_training)


def cold_start_seed(seed: int, version: int) -> int:
    """k-means seed of version ``version`` when not warm-started."""
    return int(make_rng(seed, "recluster", version).integers(2**31))


def same_assignment(a: tuple[np.ndarray, Membership | None], b: tuple[np.ndarray, Membership | None]) -> bool:
    """Whether two (communities, soft membership or None) are equal, array for array."""
    (ca, ma), (cb, mb) = a, b
    if not np.array_equal(ca, cb) or (ma is None) != (mb is None):
        return False
    return ma is None or all(np.array_equal(x, y) for x, y in zip(ma, mb, strict=True))


def merge_history(mine: list[dict[str, Any]], loaded: list[dict[str, Any]], version: int) -> list[dict[str, Any]]:
    """Refresh records after a checkpoint of ``version`` is loaded: the checkpoint's records up to that
    version, then those held here of later versions (loading the best epoch's state at the end of a stage
    must not forget the refreshes that came after it)."""
    kept = [dict(r) for r in loaded if int(r["version"]) <= version]
    return kept + [r for r in mine if int(r["version"]) > version]


class Reclustering(Sampler):
    """An ICPNS sampler (``inner``: ``ICPNS`` or the hosted one) whose communities are re-clustered on
    ``model``'s user representations every ``params.every`` fine-tuning epochs.

    ``communities`` int (n_users,) and ``centroids`` float (K, d'): the assignment the stage starts from
    (version 0) and its k-means centroids; ``membership``: its soft membership (``communities.
    soft_membership``), recomputed from the new centroids at each refresh, when ``params.top_communities``
    is set. ``context``: the training context (broadcasts and barriers).
    ``on_refresh``: functions called with each new record (e.g. to rewrite ``communities.json``).
    Attributes the wrapper does not define (``tables``, ``table_stats``, ``probabilities``, ...) are the
    inner sampler's.
    """

    name = "icpns"
    has_log_q = True
    batch_independent = True  # the inner ICPNS's draws; a refresh happens in start_epoch, before any draw

    def __init__(self, inner: Any, model: Any, context: Any, params: ReclusterParams, communities: np.ndarray,
                 centroids: np.ndarray, membership: Membership | None = None):
        self.inner = inner
        super().__init__(inner.train, inner.params, complement=inner.complement)
        self.model, self.context, self.recluster = model, context, params
        self.communities = community_ids(communities)
        self.centroids = np.array(centroids, dtype=np.float64)
        if (membership is None) != (params.top_communities is None):
            raise SamplingError("sampler 'icpns' (recluster_every): soft membership needs top_communities and a "
                                "starting membership, hard membership neither")
        self.membership = membership
        self.version = 0
        self.history: list[dict[str, Any]] = [refresh_record(0, 0, self.communities, len(self.centroids))]
        self._applied = (self.communities, self.membership)  # what the inner sampler draws from
        self.on_refresh: list[Callable[[dict[str, Any]], None]] = []

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (during construction)
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ----------------------------------------------------------------- the refresh
    def start_epoch(self, epoch: int, rng: Any) -> None:
        due = is_due(epoch, self.recluster.every)
        # After a resume the checkpoint's assignment may not be the one the inner sampler was built on.
        if not due and same_assignment(self._applied, (self.communities, self.membership)):
            self.inner.start_epoch(epoch, rng)
            return
        t0 = time.perf_counter()
        target, centroids, membership = self._cluster() if due else (self.communities, None, self.membership)
        t1 = time.perf_counter()
        self.inner.use_communities(target, membership)
        self.context.sum(np.zeros(1))  # a barrier: the new version is published before any process looks
        self.inner.start_epoch(epoch, rng)
        self._applied = (target, membership)
        if not due:
            return
        published = self._published_everywhere(target)
        t2 = time.perf_counter()
        record = refresh_record(self.version + 1, epoch, target, len(self.centroids), previous=self.communities,
                                warm_start=self.recluster.warm_start, cluster_seconds=t1 - t0,
                                table_seconds=t2 - t1, **published)
        self.communities, self.centroids, self.version = target, centroids, self.version + 1
        self.membership = membership
        self.history = [r for r in self.history if r["version"] < self.version] + [record]
        for callback in self.on_refresh:
            callback(record)

    def _cluster(self) -> tuple[np.ndarray, np.ndarray, Membership | None]:
        """The next assignment, centroids (and soft membership): computed on the main process, broadcast."""
        reps = current_representations(self.model)  # every process: a collective on sharded tables
        found = None
        if self.context.is_main:
            p = self.recluster
            labels, centroids = recluster(reps, self.centroids, cold_start_seed(p.seed, self.version + 1),
                                          p.warm_start)
            soft = None if p.top_communities is None else soft_membership(reps, centroids, p.top_communities,
                                                                          p.temperature)
            found = labels, centroids, soft
        labels, centroids, soft = self.context.broadcast_object(found)
        return community_ids(labels), np.asarray(centroids, dtype=np.float64), soft

    def _published_everywhere(self, target: np.ndarray) -> dict[str, Any]:
        """Per process: the table version its sampler now draws from (the hosted directory's, else this
        sampler's next version), and whether every process's sampler draws from ``target``."""
        world, rank = self.context.world_size, self.context.rank
        version = getattr(self.inner, "version", self.version + 1)
        # A fingerprint of the assignment the process's inner sampler holds: sum_u (u + 1) c(u), exact in
        # float64 (below 2^53) for the catalogues raysearch trains on.
        mine = np.dot(np.asarray(self.inner.communities, dtype=np.float64), np.arange(1.0, target.size + 1))
        expected = np.dot(target.astype(np.float64), np.arange(1.0, target.size + 1))
        row = np.zeros((2, world))
        row[:, rank] = (version, mine == expected)
        everyone = self.context.sum(row)
        return {"tables_version_by_rank": everyone[0].astype(int).tolist(),
                "same_tables_on_every_rank": bool(np.all(everyone[1] == 1))}

    # ----------------------------------------------------------------- draws: the inner sampler's
    def prepare(self, model: Any, seed: int) -> None:
        self.inner.prepare(model, seed)

    def parameters(self) -> list[Any]:
        return self.inner.parameters()

    def _sample(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                score_fn: ScoreFn | None) -> np.ndarray:
        return self.inner._sample(users, pos_items, k, rng, score_fn)

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        return self.inner._log_q(users, pos_items, negatives)

    # ----------------------------------------------------------------- checkpointed state
    def state_dict(self) -> dict[str, Any]:
        """The assignment (int64 (n_users,)), the centroids (float64 (K, d')), the version and the refresh
        records (plain dicts), and a soft membership's arrays; the inner sampler keeps none of its own."""
        state = {"communities": self.communities, "centroids": self.centroids, "version": self.version,
                 "history": [dict(r) for r in self.history]}
        if self.membership is not None:
            state.update(zip(SOFT_STATE_KEYS, self.membership, strict=True))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; the assignment is handed to the inner sampler at the next
        ``start_epoch`` (a collective under Ray Train: every process restores, then every process starts)."""
        keys = STATE_KEYS + (SOFT_STATE_KEYS if self.membership is not None else ())
        missing = [k for k in keys if k not in state]
        extra = sorted(set(state) - set(keys))
        if missing or extra:
            problem = f"is missing {', '.join(missing)}" if missing else f"has unexpected {', '.join(extra)}"
            raise SamplingError(f"sampler 'icpns' (recluster_every): state {problem}")
        communities = community_ids(state["communities"])
        centroids = np.asarray(state["centroids"], dtype=np.float64)
        if communities.shape != self.communities.shape or centroids.shape != self.centroids.shape:
            raise SamplingError(f"sampler 'icpns' (recluster_every): state of {communities.size} users and centroids "
                                f"{centroids.shape}, this run has {self.communities.size} and {self.centroids.shape}")
        membership = None
        if self.membership is not None:
            membership = tuple(np.asarray(state[k]) for k in SOFT_STATE_KEYS)
            if any(a.shape != b.shape for a, b in zip(membership, self.membership, strict=True)):
                raise SamplingError(f"sampler 'icpns' (recluster_every): soft membership of shape "
                                    f"{membership[0].shape}, this run has {self.membership[0].shape}")
        version = int(state["version"])
        self.history = merge_history(self.history, list(state["history"]), version)
        self.communities, self.centroids, self.version = communities, centroids, version
        self.membership = membership


def refresh_record(version: int, epoch: int, communities: np.ndarray, n_communities: int,
                   previous: np.ndarray | None = None, **extra: Any) -> dict[str, Any]:
    """One version of the assignment as plain data: the fine-tuning epoch it is drawn from on, the
    community sizes (K = ``n_communities`` entries) and, against ``previous``, how many users changed
    community and the adjusted Rand index (None for version 0)."""
    change = assignment_change(previous, communities) if previous is not None else {
        "changed_users": None, "adjusted_rand_index": None}
    return {"version": int(version), "epoch": int(epoch),
            "sizes": np.bincount(communities, minlength=n_communities).astype(int).tolist(), **change, **extra}
