"""An epoch's negatives drawn ahead in a few large calls (``trainer.epoch_draws``).

A static sampler (``Sampler.batch_independent``: RNS, PNS, ICPNS's fine-tuning, attribute, social) draws a
row's negatives from a law that depends on the row alone, so the trainer may draw the whole epoch's
negatives before its steps, and the steps slice them. Large calls run at the samplers' large-call
throughput (BENCHMARKS.md, ``raysearch bench samplers`` at 10^5 items: PNS 3.0x numpy's ``choice(p)`` per
4096-row call, 4.7x at 2^16 rows a call, 8.3x at 2^20); ``raysearch bench epoch-draws`` measures it inside
the trainer.

Keying: the same negatives for a seed on any number of workers. The rows are the training split's
(user, item) rows in their canonical order (``pair_rows(train)``: users ascending, each user's items
ascending). They are cut into chunks that depend on the split and ``num_negatives`` (k) only, never on
the rank or the number of workers:

- class ``c`` in [0, M): the rows of the users ``u`` with ``u % M == c``, M being the largest of 12, 6,
  4, 2, 1 that leaves the classes ``MIN_CLASS_DRAWS`` = 2^18 draws each on average (rows x k >= M x 2^18);
- block ``b``: consecutive runs of at most ``max(1, CHUNK_DRAWS // k)`` rows of a class (``CHUNK_DRAWS``
  = 2^20 draws a call: bounded temporaries).

Chunk (c, b) is one ``sample`` call on the generator of stream ``(seed, stage, "epoch-draws", epoch, c,
b)``. So a (user, positive) row's negatives are a function of the seed, the stage, the epoch, the split,
k and the sampler's state at the epoch's start (after ``start_epoch``: ICPNS's re-clustering is done by
then): a run resumed from epoch e's checkpoint draws epoch e + 1 as an uninterrupted run does. The
batches' order still comes from the process's own stream (seed, stage, "epoch", epoch, rank), so 1 and 2
workers train on the same rows with the same negatives, in other orders. (ICPNS on Ray workers with
``sampler.table_draws=remote`` is the exception it already is: the table actors draw each call from
seeds of its generator, the same law, other values than one process's local draws.)

Cost per worker (chosen: classes of users, not contiguous row ranges). Workers own the users
``u % W == rank`` (``TrainingContext.my_users``), so a contiguous range of rows holds every worker's users
and each worker would draw the whole epoch: W times its share. A worker instead draws only the classes
that hold one of its users and keeps its own rows. When W divides M, every user of class c belongs to
rank ``c % W`` and nothing is drawn twice; otherwise a worker draws the classes ``c = rank (mod gcd(M,
W))``, W / gcd(M, W) times its share (``drawn_share``). Gowalla (0.66M training rows): k = 1 gives M = 2
(2 workers waste nothing, 4 draw twice their share), k = 4 M = 6 (1, 2, 3, 6 waste nothing, 4 draw
twice), k >= 8 M = 12 (1, 2, 3, 4, 6 waste nothing, 8 draw twice). A split under 2 x 2^18 draws has
M = 1: every worker draws it all (W times its share, a fraction of a second an epoch at such sizes).
Fewer, larger classes are the other side of the trade: calls of at least 2^18 draws on average, where
smaller calls lose much of the large-call gain. One worker draws exactly its rows.

Memory: the worker's rows' negatives, (rows, k) int32 (int64 beyond 2^31 items): 4 bytes a draw,
0.35 GB for Gowalla at k = 128; plus one call's temporaries (at most ``CHUNK_DRAWS`` draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.data.interactions import Interactions
from raysearch.rng import make_rng
from raysearch.train.batches import pair_rows

CHUNK_DRAWS = 1 << 20  # draws (rows x num_negatives) of one sample() call at most: bounds its temporaries
MIN_CLASS_DRAWS = 1 << 18  # draws a user class holds on average at least (its calls stay large)
CLASS_COUNTS = (12, 6, 4, 2, 1)  # M's candidates: divisors of 12, so that 1, 2, 3, 4, 6 workers waste nothing
STREAM = "epoch-draws"


def user_classes(n_rows: int, num_negatives: int) -> int:
    """M, the number of user classes of a split of ``n_rows`` training rows with ``num_negatives`` negatives a
    row (independent of the workers)."""
    return next(m for m in CLASS_COUNTS if m == 1 or n_rows * num_negatives >= m * MIN_CLASS_DRAWS)


def drawn_share(n_rows: int, num_negatives: int, world_size: int) -> float:
    """Rows a worker draws per row it trains on, at most: W / gcd(M, W) (1: nothing drawn twice)."""
    return world_size / math.gcd(user_classes(n_rows, num_negatives), world_size)


@dataclass(frozen=True)
class DrawPlan:
    """Which chunks a process draws and where its rows go, fixed for a split and a process's users.

    ``users``/``items``: the split's rows in canonical order, int64 (n,). ``n_mine``: the process's rows.
    ``classes``: per user class it draws, (c, rows, mine, to): ``rows`` the class's global rows (None: all
    rows, M = 1), ``mine`` whether each is the process's (None: all are), ``to`` each row's index among
    the process's rows (None: the same as ``rows``'s, one process)."""

    users: np.ndarray
    items: np.ndarray
    num_negatives: int
    n_mine: int
    classes: list[tuple[int, np.ndarray | None, np.ndarray | None, np.ndarray | None]]


def plan_draws(train: Interactions, my_users: np.ndarray, num_negatives: int) -> DrawPlan:
    """The ``DrawPlan`` of the process that trains on ``my_users`` with ``num_negatives`` negatives a row
    (computed once, reused every epoch)."""
    users, items = pair_rows(train)
    my_users = np.asarray(my_users, dtype=np.int64)
    keep = np.zeros(train.n_users, dtype=bool)
    keep[my_users] = True
    row_mine = keep[users]
    everything = bool(row_mine.all())
    local = None if everything else np.cumsum(row_mine) - 1  # global row -> its index among the process's
    m = user_classes(users.size, num_negatives)
    classes = []
    for c in np.unique(my_users % m):
        rows = None if m == 1 else np.flatnonzero(users % m == c)
        if everything:
            classes.append((int(c), rows, None, rows))
            continue
        sel = row_mine if rows is None else row_mine[rows]
        classes.append((int(c), rows, None if sel.all() else sel, local if rows is None else local[rows]))
    return DrawPlan(users, items, int(num_negatives), int(row_mine.sum()), classes)


def draw_epoch(sampler: Any, plan: DrawPlan, seed: int, stage: str, epoch: int,
               chunk_draws: int | None = None) -> tuple[np.ndarray, int]:
    """(negatives, drawn): the negatives of the process's rows (``plan``), (rows, plan.num_negatives) int32
    (int64 for catalogues beyond 2^31 items), row i being row i of ``pair_rows(train, my_users)``; and the
    number of draws made (more than rows x num_negatives when a class is shared with another process).
    ``chunk_draws``: draws a call at most (default ``CHUNK_DRAWS``)."""
    k = plan.num_negatives
    dtype = np.int32 if sampler.n_items <= np.iinfo(np.int32).max else np.int64
    out = np.empty((plan.n_mine, k), dtype=dtype)
    per_call = max(1, (CHUNK_DRAWS if chunk_draws is None else chunk_draws) // k)
    drawn = 0
    for c, rows, mine, to in plan.classes:
        n = plan.users.size if rows is None else rows.size
        for b, lo in enumerate(range(0, n, per_call)):
            hi = min(lo + per_call, n)
            r = slice(lo, hi) if rows is None else rows[lo:hi]
            negatives = sampler.sample(plan.users[r], plan.items[r], num_negatives=k,
                                       rng=make_rng(seed, stage, STREAM, epoch, c, b))
            drawn += negatives.size
            at = slice(lo, hi) if to is None else to[lo:hi]
            if mine is None:
                out[at] = negatives
            else:
                kept = mine[lo:hi]
                out[at[kept]] = negatives[kept]
    return out, drawn
