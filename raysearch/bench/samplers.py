"""Sampler speed: draws per second on one core, against ``Generator.choice(p)``, and dynamic samplers' cost per epoch.

``run()`` measures, for each catalogue size, on a synthetic training split with Zipf-like popularity
(exponent 1; 20k users with ~20 positives each drawn by popularity, so positive exclusion is exercised):

- the time of one ``sample()`` call of ``batch`` rows, positives excluded, of RNS, PNS (beta 1), ICPNS
  (K = 8 communities, alpha 0.8), in-batch, mixed (share 0.5) and DNS (M = 10, a dot-product scorer over
  32-dim random embeddings), next to two baselines without exclusion called once per batch:
  ``Generator.choice(n, batch, p=p)`` and ``torch.multinomial(p, batch, replacement=True)`` (both rebuild
  the CDF each call);
- the build time of the PNS and ICPNS tables;
- at the target size (1e5 items), the cost per ``batch`` rows of PNS and ICPNS called with ``batch``,
  65536 and 2^20 rows a call, against ``choice(p)`` per ``batch``;

then the per-epoch sampling cost of GDNS and SRNS against RNS on an ML-1M-like setting (6k users x 3.5k
items, ~90 positives a user, a GMF-like random scorer of dimension 32); and the cost of a call of the samplers
that synthesise negatives from a graph backbone's per-layer representations (MixGCF, DENS) beside RNS, DNS and
AHNS scoring with the same model (``bench_synthesisers``: a random LightGCN, dimension 64, 3 layers, on the
same ML-1M-like setting; ``quick``: a small one).

The targets (from the project's issue): PNS and ICPNS at least 10x faster than ``choice(p)`` per batch of
4096 at 1e5 items, and their cost growing at most 2x from 1e4 to 1e6 items.

Timing: one process, ``torch.set_num_threads(1)`` and ``threadpoolctl.threadpool_limits(1)``. Shared,
noisy machines: every repetition times one call of each contender in turn (the order rotates), so that a
slow spell hits them all, and the figures are medians over repetitions; ratios are of medians taken in
the same run. The batches' id arrays are gathered before timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
TARGET_ITEMS = 10**5  # the catalogue size of the speed target
TARGET_SPEEDUP = 10.0  # at least this many times faster than choice(p) per batch
TARGET_GROWTH = 2.0  # at most this growth of a batch's cost from 1e4 to 1e6 items
LARGE_CALLS = (4096, 65_536, 1 << 20)  # rows a call in the larger-batch comparison
MAX_LARGE_REPS = 300  # repetitions a row count at most (small calls: enough for stable medians)
POOL = 16  # distinct pre-gathered batches cycled through by the repetitions


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


def interleaved(fns: Mapping[str, Callable[[int], Any]], reps: int) -> dict[str, np.ndarray]:
    """Seconds (reps,) of each ``fns[name](rep)``: every repetition calls each function once, rotating the order."""
    names = list(fns)
    times = {name: np.empty(reps) for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name](rep)
            times[name][rep] = time.perf_counter() - start
    return times


def _rates(times: np.ndarray, per_call: int) -> dict[str, float]:
    return {
        "us_per_batch": float(np.median(times) * 1e6),
        "draws_per_s": float(per_call / np.median(times)),
        "draws_per_s_mean": float(per_call * times.size / times.sum()),
    }


def _setting(n_items: int, seed: int) -> tuple[Interactions, np.ndarray, np.ndarray, np.random.Generator]:
    rng = make_rng(seed, "bench-samplers", n_items)
    train, p = zipf_train(n_items, rng)
    return train, p, rng.integers(0, COMMUNITIES, USERS), rng


def _batches(train: Interactions, rows: int, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    """``count`` batches of ``rows`` training (user, item) rows, gathered up front (int64 arrays)."""
    users_all, items_all = train.pairs()
    picks = rng.integers(0, train.nnz, size=(count, rows))
    return [(users_all[r], items_all[r]) for r in picks]


def bench_draws(n_items: int, draws: int, batch: int, seed: int) -> dict[str, Any]:
    """Per-call times at one catalogue size, every contender interleaved (one row of the report)."""
    train, p, communities, rng = _setting(n_items, seed)
    reps = max(1, draws // batch)
    batches = _batches(train, batch, min(reps, POOL), rng)
    scorer = dot_scorer(USERS, n_items, rng)
    row: dict[str, Any] = {"n_items": n_items, "n_users": USERS, "train_pairs": train.nnz,
                           "batch": batch, "batches": reps}

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
        "ahns": make_sampler("ahns", train, n_negs=10),
    }
    fns: dict[str, Callable[[int], Any]] = {}
    for name, sampler in samplers.items():
        g = make_rng(seed, "draws", name)

        def one(rep: int, s=sampler, g=g) -> None:
            users, items = batches[rep % len(batches)]
            s.sample(users, items, 1, rng=g, score_fn=scorer)

        one(0)  # warm-up: lazily built structures
        fns[name] = one
    g_choice = make_rng(seed, "draws", "choice")
    fns["choice"] = lambda rep: g_choice.choice(n_items, size=batch, p=p)
    torch.manual_seed(seed)
    p_t = torch.from_numpy(p)
    fns["multinomial"] = lambda rep: torch.multinomial(p_t, batch, replacement=True)
    for name, times in interleaved(fns, reps).items():
        row[name] = _rates(times, batch)
    row["speedup_vs_choice"] = {k: row["choice"]["us_per_batch"] / row[k]["us_per_batch"] for k in ("pns", "icpns")}
    return row


def bench_large_calls(n_items: int, calls: tuple[int, ...], batch: int, seed: int, budget_rows: int = 1 << 22
                      ) -> list[dict[str, Any]]:
    """PNS and ICPNS called with ``calls`` rows at a time, against choice(p) per ``batch``, interleaved.

    Figures are costs per ``batch`` rows (call time x batch / rows). Repetitions: about ``budget_rows`` rows
    a sampler, at least 5, at most ``MAX_LARGE_REPS``; each repetition times ``choice(p)`` three times.
    """
    train, p, communities, rng = _setting(n_items, seed)
    samplers = {"pns": make_sampler("pns", train, beta=1.0),
                "icpns": make_sampler("icpns", train, communities=communities, alpha=0.8)}
    g_choice = make_rng(seed, "draws", "choice-large")
    out = []
    for rows in calls:
        pool = _batches(train, rows, 2, rng)
        fns: dict[str, Callable[[int], Any]] = {f"choice{i}": (lambda rep: g_choice.choice(n_items, size=batch, p=p))
                                                for i in range(3)}
        for name, sampler in samplers.items():
            g = make_rng(seed, "draws-large", name, rows)

            def one(rep: int, s=sampler, g=g, pool=pool) -> None:
                users, items = pool[rep % 2]
                s.sample(users, items, 1, rng=g)

            fns[name] = one
        times = interleaved(fns, min(MAX_LARGE_REPS, max(5, budget_rows // rows)))
        choice_times = np.concatenate([times.pop(f"choice{i}") for i in range(3)])
        entry: dict[str, Any] = {"n_items": n_items, "rows_per_call": rows, "batch": batch,
                                 "choice_us_per_batch": float(np.median(choice_times) * 1e6)}
        for name, t in times.items():
            entry[f"{name}_us_per_batch"] = float(np.median(t) * 1e6 * batch / rows)
            entry[f"{name}_speedup_vs_choice"] = entry["choice_us_per_batch"] / entry[f"{name}_us_per_batch"]
        out.append(entry)
    return out


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


SYNTH_DIM, SYNTH_LAYERS = 64, 3  # LightGCN's defaults: MixGCF and DENS pick among L + 1 = 4 layers of d = 64
SYNTH_SAMPLERS = {  # name: keys (official settings: MixGCF's Yelp2018 README, DENS's and AHNS's parsers, DNS the ICPNS configs')
    "rns": {}, "dns": {"num_candidates": 10}, "ahns": {"n_negs": 32}, "mixgcf": {"n_negs": 64}, "dens": {"n_negs": 6},
}


def bench_synthesisers(seed: int, n_users: int = 6000, n_items: int = 3500, per_user: int = 90, batch: int = 4096,
                       reps: int = 10) -> dict[str, Any]:
    """Seconds of one sampling call of ``batch`` rows (one negative a row) on a random LightGCN, interleaved.

    MixGCF and DENS synthesise from one propagation's per-layer representations (``synthesise``), the others
    draw ids scoring with the same model (``make_scorer``), as in the trainer; autograd is on, as in a
    training step, whose sampling time counts a synthesiser's forward (its graph included; the backward is
    the step's). The propagation is done once, outside the timing: it is the backbone's cost, not the
    sampler's. Figures: ``{name: {us_per_batch, draws_per_s, ...}}`` and ``over_rns`` (time ratio).
    """
    from raysearch.models import make_model
    from raysearch.models.base import make_scorer

    rng = make_rng(seed, "bench-synthesisers")
    train, _ = zipf_train(n_items, rng, n_users=n_users, per_user=per_user)
    torch.manual_seed(seed)
    model = make_model("lightgcn", n_users, n_items, train, dim=SYNTH_DIM, n_layers=SYNTH_LAYERS)
    representations = model.propagate()
    user_layers, item_layers = model.layer_representations(representations)
    scorer = make_scorer(model, representations)
    batches = _batches(train, batch, POOL, rng)
    fns: dict[str, Callable[[int], Any]] = {}
    for name, keys in SYNTH_SAMPLERS.items():
        sampler = make_sampler(name, train, **keys)
        sampler.prepare(model, seed)  # DENS builds its gates
        g = make_rng(seed, "bench-synthesisers", name)
        if sampler.synthesises:
            def one(rep: int, s=sampler, g=g) -> None:
                users, items = batches[rep % len(batches)]
                s.synthesise(users, items, 1, g, user_layers, item_layers, model.layer_pool, model.query)
        else:
            def one(rep: int, s=sampler, g=g) -> None:
                users, items = batches[rep % len(batches)]
                s.sample(users, items, 1, rng=g, score_fn=scorer)
        one(0)  # warm-up
        fns[name] = one
    out: dict[str, Any] = {"n_users": n_users, "n_items": n_items, "train_pairs": train.nnz, "batch": batch,
                           "dim": SYNTH_DIM, "n_layers": SYNTH_LAYERS, "reps": reps,
                           "keys": {k: dict(v) for k, v in SYNTH_SAMPLERS.items()}}
    for name, times in interleaved(fns, reps).items():
        out[name] = _rates(times, batch)
    out["over_rns"] = {k: out[k]["us_per_batch"] / out["rns"]["us_per_batch"] for k in SYNTH_SAMPLERS}
    return out


def _report_synthesisers(report: Callable[[str], Any], figures: dict[str, Any]) -> None:
    report(f"one sampling call of {figures['batch']} rows on a random LightGCN (dim {figures['dim']}, "
           f"{figures['n_layers']} layers; {figures['n_users']} users x {figures['n_items']} items), autograd on "
           f"as in training, {figures['reps']} interleaved repetitions, medians:")
    for name, keys in figures["keys"].items():
        setting = ", ".join(f"{k} {v}" for k, v in keys.items())
        report(f"  {name:<7} {figures[name]['us_per_batch'] / 1e3:9.2f} ms  {_fmt_rate(figures[name]['draws_per_s'])}"
               f" draws/s  {figures['over_rns'][name]:8.1f}x rns" + (f"  ({setting})" if setting else ""))


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:7.2f}M"


def _targets(rows: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    by_size = {r["n_items"]: r for r in rows}
    targets: dict[str, Any] = {}
    if TARGET_ITEMS in by_size and batch == 4096:
        speedup = by_size[TARGET_ITEMS]["speedup_vs_choice"]
        targets["speedup_vs_choice_at_1e5"] = dict(speedup)
        targets["10x_faster_than_choice_at_1e5"] = {k: bool(v >= TARGET_SPEEDUP) for k, v in speedup.items()}
    if 10**4 in by_size and 10**6 in by_size:
        growth = {k: by_size[10**6][k]["us_per_batch"] / by_size[10**4][k]["us_per_batch"] for k in ("pns", "icpns")}
        targets["growth_1e4_to_1e6"] = growth
        targets["growth_at_most_2x"] = {k: bool(v <= TARGET_GROWTH) for k, v in growth.items()}
    return targets


def run(report: Callable[[str], Any] = print, sizes: tuple[int, ...] = (10**3, 10**4, 10**5, 10**6),
        draws: int = 10**6, batch: int = 4096, seed: int = 0, quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark, ``report`` a table line by line, return one dict a row (then targets, large calls, epochs).

    ``quick``: smaller sizes and fewer draws, no larger-call or epoch runs (a smoke run for CI).
    """
    if quick:
        sizes, draws = tuple(s for s in sizes if s <= 10**4) or (10**3,), min(draws, 10 * batch)
    rows: list[dict[str, Any]] = []
    names = ("rns", "pns", "icpns", "inbatch", "mixed", "dns", "ahns", "choice", "multinomial")
    with _single_thread():
        report(f"sampler draws per second, one core, batch {batch}, {draws:.0e} draws per cell (median call time, "
               f"all contenders interleaved); baselines choice(p) and torch.multinomial without exclusion")
        report(f"{'n_items':>9} " + " ".join(f"{n:>9}" for n in names) + "   build pns / icpns (s)")
        for n_items in sizes:
            row = bench_draws(n_items, draws, batch, seed)
            rows.append(row)
            report(f"{n_items:>9} " + " ".join(f"{_fmt_rate(row[n]['draws_per_s']):>9}" for n in names)
                   + f"   {row['build_pns_s']:.3f} / {row['build_icpns_s']:.3f}")
        report("")
        report(f"per {batch}-row call (medians of the same interleaved repetitions):")
        for row in rows:
            ratio = row["speedup_vs_choice"]
            report(f"  n_items {row['n_items']:>8}: choice(p) {row['choice']['us_per_batch']:7.0f} us | "
                   f"pns {row['pns']['us_per_batch']:6.0f} us ({ratio['pns']:.1f}x) | "
                   f"icpns {row['icpns']['us_per_batch']:6.0f} us ({ratio['icpns']:.1f}x)")
        targets = _targets(rows, batch)
        if targets:
            report(f"targets: {targets}")
            rows.append({"targets": targets})
        if not quick and TARGET_ITEMS in sizes:
            large = bench_large_calls(TARGET_ITEMS, LARGE_CALLS, batch, seed)
            report(f"larger calls at n_items {TARGET_ITEMS}: cost per {batch} rows (call time x {batch} / rows), "
                   f"choice(p) called per {batch}, interleaved:")
            for e in large:
                report(f"  rows a call {e['rows_per_call']:>8}: choice(p) {e['choice_us_per_batch']:7.0f} us | "
                       + " | ".join(f"{k} {e[f'{k}_us_per_batch']:6.0f} us ({e[f'{k}_speedup_vs_choice']:.1f}x)"
                                    for k in ("pns", "icpns")))
            rows.append({"large_calls": large})
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
        synth = (bench_synthesisers(seed, n_users=300, n_items=200, per_user=10, batch=256, reps=3) if quick
                 else bench_synthesisers(seed))
        _report_synthesisers(report, synth)
        rows.append({"synthesisers": synth})
    return rows
