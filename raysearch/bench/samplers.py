"""Sampler speed: draws per second on one core, table build times, and dynamic samplers' cost per epoch.

``run()`` measures, for each catalogue size, on a synthetic training split with Zipf-like popularity
(exponent 1; 20k users with ~20 positives each drawn by popularity, so positive exclusion is exercised):

- draws per second, positives excluded, of RNS, PNS (beta 1), ICPNS (K = 8 communities, alpha 0.8),
  in-batch, mixed (share 0.5) and DNS (M = 10, a dot-product scorer over 32-dim random embeddings);
- the same for two baselines without exclusion: ``Generator.choice(n, 4096, p=p)`` and
  ``torch.multinomial(p, 4096, replacement=True)``, each called once per batch (both rebuild the CDF);
- the build time of the PNS and ICPNS tables;

then the per-epoch sampling cost of GDNS and SRNS against RNS on an ML-1M-like setting (6k users x 3.5k
items, ~90 positives a user, a GMF-like random scorer of dimension 32).

Timing: one process, ``torch.set_num_threads(1)`` and ``threadpoolctl.threadpool_limits(1)`` (numpy's
own array operations are single-threaded; the limit covers BLAS/OpenMP pools). Each batch is timed on
its own; the reported rate uses the median batch time (robust to other processes on a shared machine)
and the mean rate (total draws / total time) is recorded next to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from raysearch.data.interactions import Interactions
from raysearch.rng import make_rng
from raysearch.samplers import make_sampler

USERS = 20_000
POSITIVES = 20
COMMUNITIES = 8
DIM = 32


def _single_thread():
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's array operations are single-threaded anyway; only BLAS would differ
        return nullcontext()
    return threadpool_limits(1)


def zipf_train(n_items: int, rng: np.random.Generator, n_users: int = USERS, per_user: int = POSITIVES
               ) -> tuple[Interactions, np.ndarray]:
    """(train, popularity p float64 (n_items,)): ~``per_user`` positives a user drawn by p ~ rank^-1."""
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=users.size, p=p)
    return Interactions.from_pairs(users, items, n_users, n_items), p


def dot_scorer(n_users: int, n_items: int, rng: np.random.Generator) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Mock model: <u, i> over random 32-dim float32 embeddings (numpy in, numpy float32 out)."""
    user_emb = rng.standard_normal((n_users, DIM), dtype=np.float32) / np.sqrt(DIM)
    item_emb = rng.standard_normal((n_items, DIM), dtype=np.float32)

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("nd,nd->n", user_emb[users], item_emb[items])

    return score


def gmf_scorer(n_users: int, n_items: int, rng: np.random.Generator) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Mock GMF: h^T (p_u * q_i), random 32-dim float32 parameters."""
    p = rng.standard_normal((n_users, DIM), dtype=np.float32)
    q = rng.standard_normal((n_items, DIM), dtype=np.float32)
    h = rng.standard_normal(DIM, dtype=np.float32) / DIM

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return (p[users] * q[items]) @ h

    return score


def _time_batches(fn: Callable[[int], Any], n_batches: int) -> np.ndarray:
    times = np.empty(n_batches)
    for b in range(n_batches):
        start = time.perf_counter()
        fn(b)
        times[b] = time.perf_counter() - start
    return times


def _rates(times: np.ndarray, per_batch: int) -> dict[str, float]:
    return {
        "us_per_batch": float(np.median(times) * 1e6),
        "draws_per_s": float(per_batch / np.median(times)),
        "draws_per_s_mean": float(per_batch * times.size / times.sum()),
    }


def bench_draws(n_items: int, draws: int, batch: int, seed: int) -> dict[str, Any]:
    """Draw rates at one catalogue size (one row of the report)."""
    rng = make_rng(seed, "bench-samplers", n_items)
    train, p = zipf_train(n_items, rng)
    communities = rng.integers(0, COMMUNITIES, USERS)
    n_batches = max(1, draws // batch)
    users_all, items_all = train.pairs()
    rows = rng.integers(0, train.nnz, size=(n_batches, batch))  # batches of training (user, item) rows
    scorer = dot_scorer(USERS, n_items, rng)
    row: dict[str, Any] = {"n_items": n_items, "n_users": USERS, "train_pairs": train.nnz,
                           "batch": batch, "batches": n_batches}

    start = time.perf_counter()
    make_sampler("pns", train, beta=1.0)
    row["build_pns_s"] = time.perf_counter() - start
    start = time.perf_counter()
    icpns = make_sampler("icpns", train, communities=communities, alpha=0.8)
    row["build_icpns_s"] = time.perf_counter() - start
    row["icpns_table_mb"] = icpns.table_nbytes / 2**20

    samplers = {
        "rns": make_sampler("rns", train),
        "pns": make_sampler("pns", train, beta=1.0),
        "icpns": icpns,
        "inbatch": make_sampler("inbatch", train),
        "mixed": make_sampler("mixed", train, uniform_share=0.5),
        "dns": make_sampler("dns", train, num_candidates=10),
    }
    for name, sampler in samplers.items():
        draw_rng = make_rng(seed, "draws", name)

        def one(b: int, s=sampler, g=draw_rng) -> None:
            s.sample(users_all[rows[b]], items_all[rows[b]], 1, rng=g, score_fn=scorer)

        one(0)  # warm-up: lazily built structures
        row[name] = _rates(_time_batches(one, n_batches), batch)

    g = make_rng(seed, "draws", "choice")
    row["choice"] = _rates(_time_batches(lambda b: g.choice(n_items, size=batch, p=p), n_batches), batch)
    torch.manual_seed(seed)
    p_t = torch.from_numpy(p)
    row["multinomial"] = _rates(
        _time_batches(lambda b: torch.multinomial(p_t, batch, replacement=True), n_batches), batch
    )
    return row


def bench_epochs(seed: int, n_users: int = 6000, n_items: int = 3500, per_user: int = 90,
                 batch: int = 1000, group_batch: int = 1024) -> dict[str, Any]:
    """Seconds of sampling in one epoch: RNS and SRNS over every training row, GDNS over every user."""
    rng = make_rng(seed, "bench-epochs")
    train, _ = zipf_train(n_items, rng, n_users=n_users, per_user=per_user)
    scorer = gmf_scorer(n_users, n_items, rng)
    users_all, items_all = train.pairs()
    order = rng.permutation(train.nnz)
    row_batches = [order[i : i + batch] for i in range(0, order.size, batch)]
    out: dict[str, Any] = {"n_users": n_users, "n_items": n_items, "train_pairs": train.nnz,
                           "row_batch": batch, "user_batch": group_batch}

    def epoch_rows(sampler, g) -> float:
        start = time.perf_counter()
        for idx in row_batches:
            sampler.sample(users_all[idx], items_all[idx], 1, rng=g, score_fn=scorer)
        return time.perf_counter() - start

    out["rns_s"] = epoch_rows(make_sampler("rns", train), make_rng(seed, "epoch", "rns"))
    srns = make_sampler("srns", train)
    g = make_rng(seed, "epoch", "srns")
    for e in range(5):  # five snapshots, so the std term is computed as in a late epoch
        srns.end_epoch(e, gmf_scorer(n_users, n_items, make_rng(seed, "snapshot", e)))
    srns.start_epoch(60, g)
    out["srns_first_epoch_s"] = epoch_rows(srns, g)  # includes filling the memories
    srns.start_epoch(61, g)
    out["srns_s"] = epoch_rows(srns, g)
    gdns = make_sampler("gdns", train)
    g = make_rng(seed, "epoch", "gdns")

    def epoch_groups() -> float:
        start = time.perf_counter()
        users = g.permutation(n_users)
        for i in range(0, n_users, group_batch):
            gdns.sample_groups(users[i : i + group_batch], rng=g, score_fn=scorer)
        return time.perf_counter() - start

    out["gdns_first_epoch_s"] = epoch_groups()  # includes filling the pools
    out["gdns_s"] = epoch_groups()
    out["srns_over_rns"] = out["srns_s"] / out["rns_s"]
    out["gdns_over_rns"] = out["gdns_s"] / out["rns_s"]
    return out


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:7.2f}M"


def run(report: Callable[[str], Any] = print, sizes: tuple[int, ...] = (10**3, 10**4, 10**5, 10**6),
        draws: int = 10**6, batch: int = 4096, seed: int = 0, quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark, ``report`` a table line by line, return one dict a row (plus the epoch row).

    ``quick``: smaller sizes and fewer draws (a smoke run for CI).
    """
    if quick:
        sizes, draws = tuple(s for s in sizes if s <= 10**4) or (10**3,), min(draws, 10 * batch)
    rows: list[dict[str, Any]] = []
    names = ("rns", "pns", "icpns", "inbatch", "mixed", "dns", "choice", "multinomial")
    with _single_thread():
        report(f"sampler draws per second, one core, batch {batch}, {draws:.0e} draws per cell "
               f"(median batch time); baselines choice(p) and torch.multinomial without exclusion")
        report(f"{'n_items':>9} " + " ".join(f"{n:>9}" for n in names) + "   build pns / icpns (s)")
        for n_items in sizes:
            row = bench_draws(n_items, draws, batch, seed)
            rows.append(row)
            report(f"{n_items:>9} " + " ".join(f"{_fmt_rate(row[n]['draws_per_s']):>9}" for n in names)
                   + f"   {row['build_pns_s']:.3f} / {row['build_icpns_s']:.3f}")
        report("")
        for row in rows:
            ratio = {n: row["choice"]["us_per_batch"] / row[n]["us_per_batch"] for n in ("pns", "icpns")}
            row["speedup_vs_choice"] = ratio
            report(f"n_items {row['n_items']:>8}: per 4096-batch choice(p) {row['choice']['us_per_batch']:8.0f} us, "
                   f"pns {row['pns']['us_per_batch']:6.0f} us ({ratio['pns']:.1f}x), "
                   f"icpns {row['icpns']['us_per_batch']:6.0f} us ({ratio['icpns']:.1f}x)")
        by_size = {r["n_items"]: r for r in rows}
        targets: dict[str, Any] = {}
        if 10**5 in by_size:
            r = by_size[10**5]["speedup_vs_choice"]
            targets["10x_faster_than_choice_at_1e5"] = {k: bool(v >= 10) for k, v in r.items()}
        if 10**4 in by_size and 10**6 in by_size:
            growth = {k: by_size[10**6][k]["us_per_batch"] / by_size[10**4][k]["us_per_batch"]
                      for k in ("pns", "icpns")}
            targets["growth_1e4_to_1e6"] = growth
            targets["growth_at_most_2x"] = {k: bool(v <= 2) for k, v in growth.items()}
        if targets:
            report(f"targets: {targets}")
            rows.append({"targets": targets})
        report("")
        if not quick:
            epochs = bench_epochs(seed)
            report(f"sampling seconds per epoch, {epochs['n_users']} users x {epochs['n_items']} items, "
                   f"{epochs['train_pairs']} train pairs, GMF-like random scorer (dim {DIM}):")
            report(f"  rns {epochs['rns_s']:.2f} s | srns {epochs['srns_s']:.2f} s "
                   f"({epochs['srns_over_rns']:.1f}x rns; first epoch {epochs['srns_first_epoch_s']:.2f} s) | "
                   f"gdns {epochs['gdns_s']:.2f} s ({epochs['gdns_over_rns']:.2f}x rns; first epoch "
                   f"{epochs['gdns_first_epoch_s']:.2f} s)")
            report("  (rns/srns: every training row once, batches of 1000 rows; gdns: every user once, "
                   "batches of 1024 users, groups of 32 from pools of 128)")
            rows.append({"epochs": epochs})
    return rows
