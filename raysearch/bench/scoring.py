"""Dynamic samplers' scoring: the trainer's scorer against scoring pair by pair (``raysearch bench scoring``).

SRNS, DNS and GDNS spend most of their time scoring (user, item) pairs with the current model. The
trainer's scorer (``models.base.make_scorer``) takes user ids broadcast against item ids ((B, 1) against
(B, k)), gathers each user's row once, multiplies in place in the gathered item rows and works in
cache-sized chunks. The baseline is the formula it replaced: every user id repeated for each of its items
(``call_scorer`` with a plain function), both rows gathered per pair, ``(q[u] * v[i]).sum(-1)`` in one go.

Measured, in one process on one core, on the samplers bench's ML-1M-like setting (6,000 users x 3,500
items, ~90 positives a user, Zipf popularity) with a random MF model of dimension 64 (the ICPNS
protocol's): one epoch of sampling per sampler, every batch drawn by two sampler instances with the same
seed, one per scorer, the two calls of each batch back to back with the order rotating. The two draw
identical negatives (the floats are the same; checked at every batch), so the ratio is the cost of
scoring alone.

- SRNS (S1 = 8, five epoch snapshots: the std term is on): every training row once, batches of 4096 rows;
- DNS (M = 10 candidates, the ICPNS protocol's): every training row once, batches of 4096 rows;
- GDNS (pools of 128, groups of 32): every user once, batches of 128 users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from raysearch.bench.samplers import _single_thread, zipf_train
from raysearch.errors import SamplingError
from raysearch.models import make_model
from raysearch.rng import make_rng
from raysearch.samplers import make_sampler

DIM = 64
ROW_BATCH = 4096  # the ICPNS protocol's batch
USER_BATCH = 128  # GDNS under the ICPNS protocol (128 users x 32 rows = 4096 rows a step)


def _scorers(n_users: int, n_items: int, seed: int) -> tuple[Callable, Callable]:
    """(the trainer's scorer, the pair-by-pair scorer it replaced) of one random MF model."""
    torch.manual_seed(seed)
    model = make_model("mf", n_users, n_items, None, dim=DIM)
    reps = model.propagate()

    def pair_by_pair(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """1-d user and item ids of equal length (``call_scorer`` repeats the users) -> float32 scores:
        the model's interaction on one gathered user row per pair."""
        with torch.no_grad():
            u, i = torch.as_tensor(np.array(users)), torch.as_tensor(np.array(items))
            return model.interaction(reps.users[u], reps.items[i]).numpy()

    return model.frozen_scorer(reps), pair_by_pair


BatchCall = Callable[[Any, Callable, np.random.Generator], np.ndarray]  # (sampler, scorer, rng) -> draws


def _epoch(name: str, params: dict[str, Any], train: Any, calls: list[BatchCall], seed: int,
           snapshots: int = 0) -> dict[str, Any]:
    """Seconds of one epoch of ``calls`` (one per batch) with each scorer, interleaved a batch at a time."""
    fast, plain = _scorers(train.n_users, train.n_items, seed)
    contenders = {"trainer": fast, "pair_by_pair": plain}
    samplers = {k: make_sampler(name, train, **params) for k in contenders}
    rngs = {k: make_rng(seed, "bench-scoring", name) for k in contenders}
    for k, sampler in samplers.items():
        for e in range(snapshots):  # identical snapshot models for both, so their draws stay identical
            snap_fast, snap_plain = _scorers(train.n_users, train.n_items, seed + 1 + e)
            sampler.end_epoch(e, snap_fast if k == "trainer" else snap_plain)
        sampler.start_epoch(snapshots, rngs[k])
    for f in contenders.values():  # the first torch calls of a process are slow: keep them out of the timing
        f(np.zeros((ROW_BATCH, 1), dtype=np.int64), np.zeros((ROW_BATCH, 8), dtype=np.int64))
    seconds = dict.fromkeys(contenders, 0.0)
    order = list(contenders)
    for b, call in enumerate(calls):
        out = {}
        for k in order[b % 2:] + order[: b % 2]:
            start = time.perf_counter()
            out[k] = call(samplers[k], contenders[k], rngs[k])
            seconds[k] += time.perf_counter() - start
        if not np.array_equal(out["trainer"], out["pair_by_pair"]):
            raise SamplingError(f"{name}: the two scorers drew different negatives at batch {b}")
    return {"sampler": name, "batches": len(calls), **{f"{k}_s": v for k, v in seconds.items()},
            "speedup": seconds["pair_by_pair"] / seconds["trainer"]}


def run(report: Callable[[str], Any] = print, seed: int = 0, quick: bool = False) -> list[dict[str, Any]]:
    """One row per sampler: seconds of an epoch's sampling with each scorer and their ratio."""
    n_users, n_items, per_user = (600, 1000, 40) if quick else (6000, 3500, 90)
    rng = make_rng(seed, "bench-scoring")
    train, _ = zipf_train(n_items, rng, n_users=n_users, per_user=per_user)
    users_all, items_all = train.pairs()
    order = rng.permutation(train.nnz)
    rows = [(users_all[i], items_all[i]) for i in np.array_split(order, max(1, order.size // ROW_BATCH))]
    perm = rng.permutation(n_users)
    groups = [perm[i : i + USER_BATCH] for i in range(0, n_users, USER_BATCH)]

    def row_calls():
        return [lambda s, f, g, u=u, p=p: s.sample(u, p, 1, rng=g, score_fn=f) for u, p in rows]

    group_calls = [lambda s, f, g, u=u: np.concatenate(s.sample_groups(u, g, f)) for u in groups]
    out = []
    with _single_thread():
        report(f"sampling seconds per epoch, one core, {n_users} users x {n_items} items, {train.nnz} train "
               f"pairs, MF dim {DIM}: the trainer's scorer against scoring pair by pair")
        for name, params, calls, snaps in (("srns", {}, row_calls(), 5),
                                           ("dns", {"num_candidates": 10}, row_calls(), 0),
                                           ("gdns", {}, group_calls, 0)):
            row = _epoch(name, params, train, calls, seed, snapshots=snaps)
            out.append(row)
            report(f"  {name:5} trainer's scorer {row['trainer_s']:6.2f} s | pair by pair "
                   f"{row['pair_by_pair_s']:6.2f} s | {row['speedup']:.2f}x  ({row['batches']} batches, "
                   "identical draws)")
    return out
