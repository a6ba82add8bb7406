"""Cost curves as the data grows (``raysearch bench grow``).

For each size (interactions; default 1M, 10M, 50M; ``--quick``: 2e4 and 1e5), the synthetic generator
(``raysearch/data/synthetic.py``) makes a Gowalla-like dataset and each stage of a run is measured in a
fresh subprocess (one thread: torch, BLAS and OpenMP), so that its peak RSS is its own:

**Size rule** (``users_items``): users = size / 35, items = size / 25 (Gowalla, the LightGCN split:
1,027,370 interactions, 29,858 users = 34.4 a user, 40,981 items = 25.1 an item). The generator gets
``mean_exposures`` = 125 (about 28% of exposures end observed: like_rate 0.35 x (1 - false_negative_rate
0.2), so about 35 observed interactions a user) and its other defaults (4 planted communities, Zipf
exponent 1, ratio split 8:1:1). Items nobody interacted with are dropped by preprocessing, so the
measured counts differ slightly from the rule; the fits use the **measured** interactions.

Stages and what each measures (seconds are wall-clock in the child, one thread):

- ``load``: ``load_dataset`` of the synthetic config without the cache (what ``raysearch train`` does the
  first time): the generator (``generate_seconds``), then id maps, preprocessing and the ratio split
  (``split_seconds``); ``seconds`` is both. The dataset is then written to a cache file in a temporary
  folder (``cache_write_seconds``, not part of the stage) that the other stages read.
- ``icpns``: the ICPNS build on random user representations (float32 N(0, 1), dimension 64, as the
  pipeline would hand over the pre-trained model's): ``kmeans_seconds`` (``raysearch.communities.kmeans``,
  scikit-learn k-means++ with K communities, default 64; ``kmeans_iterations``, Lloyd's iterations until
  convergence, and ``kmeans_seconds_per_iteration``); ``complement_seconds``, the exclusion index of the
  training positives every sampler builds (``Complement``: ``PairSet``, degrees); ``tables_seconds``,
  ``community_tables`` (in-community counts, the count^alpha smoothing with alpha 0.8, one alias table a
  community); ``acceptance_seconds``, the rest of ``ICPNS(...)`` given those tables and that index (the
  per-user acceptance mass of ``ExcludingTables``); ``table_bytes``, the alias tables' bytes.
- ``gdns``: ``make_sampler("gdns", train)`` with its defaults (group 32, pool M = 128 a user):
  ``init_seconds`` (the exclusion index and the pool arrays), ``state_bytes`` (``state_nbytes``: items
  int32, H and G float32, seen and pinned bool, (users, M) each), then every user's pool filled with M
  distinct uniform non-positives as the first visits of the first epoch do (``fill_seconds``, users in
  batches of 2048).
- ``mf``: one epoch of MF-BPR (dimension 64, batches of 2048 (user, positive) rows, RNS negatives, L2
  1e-4, lr 1e-3) through ``Trainer.train_step``, once with each ``trainer.optimizer``: ``adam`` (the
  default: dense, every row of both tables every step) and ``sparse_adam`` (the rows a step looks up), in
  that order in the same child, each from a fresh model, the peak RSS reset between them (figures
  ``adam.*`` and ``sparse_adam.*``). ``setup_seconds``: the model, the sampler (its exclusion index), the
  optimiser and the epoch's shuffled rows (the optimisers' one-off lazy imports are done before, untimed);
  then 3 warm-up steps and timed steps until at least 20 steps and ``min_step_seconds`` (default 5 s;
  ``--quick`` 1 s) have passed or the epoch is done: ``step_ms`` is their mean, ``epoch_seconds`` = setup
  + the epoch's steps x ``step_ms`` (``steps_timed`` of ``steps``; ``scaled`` when the epoch was not run
  to its end).
- ``eval``: full-ranking validation (``Evaluator.evaluate(model, "valid")``, the default protocol: ks 10
  and 20, five metrics, popularity bands, train items masked) of a freshly initialised MF of dimension
  64, on a random sample of ``eval_users`` (default 4096) of the users with validation items, scaled to
  all of them: ``ms_per_user``, ``seconds`` (= ms_per_user x validation users; measured directly when the
  sample is all of them). ``batch_users`` is ``eval.batch_users`` (2048) unless its score block (batch x
  items float32) would pass ``EVAL_BLOCK_BYTES`` (2 GiB; at 50M interactions the default batch would be
  16 GiB), then the largest batch under it.

Every stage reports ``rss_base_bytes`` (after imports and reading the dataset) and ``peak_rss_bytes``:
the stage's own peak, taken from ``VmHWM`` after resetting it once the dataset is read
(``/proc/self/clear_refs``), or ``ru_maxrss`` (the whole child's peak, loading included) where that reset
is not allowed (``peak_from`` says which).

Fits: for every figure, ``cost ~ a size^b`` by least squares on log-log over the sizes measured (two or
more), ``b`` printed per figure; ``b > FLAG_ABOVE`` (1.15) is flagged, with the reason where one is known
(``KNOWN_REASONS``: full ranking is users x items, dense Adam touches every row every step) and an empty
``note`` to fill in otherwise.

Memory: before starting, the estimated peak RSS of every stage at every size is printed
(``estimate_peak_bytes``, calibrated on measured runs); a size whose estimate passes ``--max-rss-gb``
(default 85% of the machine's RAM) is refused before anything runs, and a stage whose RSS passes it while
running is stopped (the parent polls it) and recorded as failed.

The machine, the threads and the load average before and after are printed with the table (a loaded
machine inflates every time; the exponents are more robust than the times, not immune).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.errors import RaysearchError

SIZES = (1e6, 1e7, 5e7)
QUICK_SIZES = (2e4, 1e5)
INTERACTIONS_PER_USER = 35  # Gowalla: 34.4
INTERACTIONS_PER_ITEM = 25  # Gowalla: 25.1
MEAN_EXPOSURES = 125  # generator exposures a user: ~28% end observed, ~35 interactions a user
# bench steps' settings (its trainer_step is the MF stage's step), repeated rather than imported: importing
# raysearch.bench.steps imports torch, which the load stage's child must not (its peak RSS is measured)
DIM, BATCH, LR, REG, SEED = 64, 2048, 1e-3, 1e-4, 2026
COMMUNITIES, ALPHA = 64, 0.8
OPTIMISERS = ("adam", "sparse_adam")
EVAL_USERS = 4096  # validation users ranked; the stage's time is scaled to all of them
EVAL_BATCH_USERS = 2048  # eval.batch_users' default
EVAL_BLOCK_BYTES = 2 << 30  # largest (batch_users x items) float32 score block
GDNS_FILL_BATCH = 2048
MIN_STEPS, WARMUP_STEPS, MIN_STEP_SECONDS = 20, 3, 5.0
FLAG_ABOVE = 1.15
STAGES = ("load", "icpns", "gdns", "mf", "eval")

# (stage, figure, unit) of every figure fitted and printed, in order
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("load", "seconds", "s"), ("load", "generate_seconds", "s"), ("load", "split_seconds", "s"),
    ("load", "dataset_bytes", "B"), ("load", "peak_rss_bytes", "B"),
    ("icpns", "kmeans_seconds", "s"), ("icpns", "kmeans_seconds_per_iteration", "s"),
    ("icpns", "complement_seconds", "s"), ("icpns", "tables_seconds", "s"), ("icpns", "acceptance_seconds", "s"),
    ("icpns", "table_bytes", "B"), ("icpns", "peak_rss_bytes", "B"),
    ("gdns", "init_seconds", "s"), ("gdns", "state_bytes", "B"), ("gdns", "fill_seconds", "s"),
    ("gdns", "peak_rss_bytes", "B"),
    *(("mf", f"{o}.{f}", u) for o in OPTIMISERS
      for f, u in (("setup_seconds", "s"), ("step_ms", "ms"), ("epoch_seconds", "s"), ("peak_rss_bytes", "B"))),
    ("eval", "ms_per_user", "ms"), ("eval", "seconds", "s"), ("eval", "peak_rss_bytes", "B"),
)

# Why a figure grows faster than linearly, where that is the nature of the computation.
KNOWN_REASONS = {
    ("mf", "adam.step_ms"): "dense Adam updates every row of both tables every step: a step is O((users + items) "
                            "x dim), linear in size",
    ("mf", "adam.epoch_seconds"): "dense Adam: O((users + items) x dim) a step times O(interactions / batch) steps "
                                  "= O(size^2); the row-sparse optimiser (sparse_adam) stays linear",
    ("eval", "seconds"): "full ranking scores every item for every validation user: users x items = O(size^2); "
                         "per user it is linear in items (eval ms_per_user)",
    ("icpns", "acceptance_seconds"): "one sort of the training pairs' (table, item) keys (n log n), then random "
                                     "gathers and scatters into arrays that outgrow the last-level cache between "
                                     "1M and 10M (the tables: table_bytes); each such piece alone grows 20-27x "
                                     "for 10x the size in a stand-alone measure",
    ("icpns", "kmeans_seconds"): "Lloyd's iterations until convergence vary with the data (kmeans_iterations); "
                                 "one iteration is linear (kmeans_seconds_per_iteration)",
}

# Peak-RSS model (bytes) calibrated on measured runs; see estimate_peak_bytes.
_BASE = 80 << 20  # python + numpy + raysearch.data
_TORCH = 260 << 20  # + torch (every stage but load)
_LOAD_PER_INTERACTION = 390  # the generator's exposures and temporaries (measured 384-388 B at 10M and 50M)
_DATASET_PER_INTERACTION = 40  # a read dataset (three CSR splits, id maps, extras) and its reading


def users_items(size: float) -> tuple[int, int]:
    """(users, items) of the synthetic dataset for ``size`` interactions: size / 35 and size / 25."""
    size = float(size)
    if not size > 0:
        raise ValueError(f"size must be > 0 interactions, got {size}")
    return max(10, round(size / INTERACTIONS_PER_USER)), max(MEAN_EXPOSURES + 1, round(size / INTERACTIONS_PER_ITEM))


def eval_batch_users(n_items: int, block_bytes: int = EVAL_BLOCK_BYTES) -> int:
    """``eval.batch_users`` of the stage: the default 2048 unless (batch x n_items) float32 passes ``block_bytes``."""
    return int(max(1, min(EVAL_BATCH_USERS, block_bytes // (4 * max(1, n_items)))))


def fit_exponent(sizes: Sequence[float], costs: Sequence[float | None]) -> dict[str, Any]:
    """Least squares of log(cost) = log(a) + b log(size) over the pairs with a positive cost: {"b", "a",
    "points"}; b and a None with fewer than two such pairs (or a single distinct size)."""
    pairs = [(float(s), float(c)) for s, c in zip(sizes, costs, strict=True)
             if c is not None and s > 0 and c > 0 and math.isfinite(c)]
    if len(pairs) < 2 or len({s for s, _ in pairs}) < 2:
        return {"b": None, "a": None, "points": len(pairs)}
    x = np.log([s for s, _ in pairs])
    y = np.log([c for _, c in pairs])
    b, log_a = np.polyfit(x, y, 1)
    return {"b": float(b), "a": float(math.exp(log_a)), "points": len(pairs)}


def flagged(b: float | None, limit: float = FLAG_ABOVE) -> bool:
    """Does exponent ``b`` grow faster than linearly beyond the tolerance (b > ``limit``)?"""
    return b is not None and b > limit


def estimate_peak_bytes(size: float, communities: int = COMMUNITIES, eval_block: int = EVAL_BLOCK_BYTES
                        ) -> dict[str, int]:
    """Estimated peak RSS of each stage at ``size`` interactions (bytes): a calibrated model of what each
    stage holds at once (the dataset, the stage's arrays, the largest temporaries)."""
    users, items = users_items(size)
    data = _TORCH + _DATASET_PER_INTERACTION * size
    complement = 40 * size  # PairSet: 4 slots a train pair, int32, plus its build's temporaries
    rows = 64 * size  # the epoch's (user, item) rows and their shuffle
    params = (users + items) * DIM * 4
    return {
        "load": int(_BASE + _LOAD_PER_INTERACTION * size),
        "icpns": int(data + complement + users * DIM * (4 + 8 + 8 + 8) + users * communities * 8 + 48 * size),
        "gdns": int(data + complement + users * 128 * 14 + 24 * size),
        "mf": int(data + complement + rows + 32 * size + 5 * params),
        "eval": int(data + 2 * params + 2 * eval_batch_users(items, eval_block) * items * 4),
    }


# --------------------------------------------------------------------------- the parent
def run(report: Callable[[str], Any] = print, quick: bool = False, sizes: str | Sequence[float] | None = None,
        max_rss_gb: float | None = None, communities: int = COMMUNITIES, eval_users: int = EVAL_USERS,
        min_step_seconds: float | None = None, stages: Sequence[str] = STAGES) -> dict[str, Any]:
    """Measure every stage at every size in fresh subprocesses; report a table and return all figures."""
    sizes = parse_sizes(sizes) if sizes is not None else (QUICK_SIZES if quick else SIZES)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise RaysearchError(f"bench grow: unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    stages = [s for s in STAGES if s in stages]
    if "load" not in stages:
        stages.insert(0, "load")
    min_step_seconds = (1.0 if quick else MIN_STEP_SECONDS) if min_step_seconds is None else min_step_seconds
    ram = _meminfo("MemTotal")
    limit = int(max_rss_gb * 2**30) if max_rss_gb is not None else int(0.85 * ram) if ram else None
    estimates = {_size_key(s): estimate_peak_bytes(s, communities) for s in sizes}
    machine = _machine()
    report(f"grow: synthetic generator, users = interactions / {INTERACTIONS_PER_USER}, items = interactions / "
           f"{INTERACTIONS_PER_ITEM} (Gowalla-like), mean_exposures {MEAN_EXPOSURES}; every stage in a fresh "
           f"subprocess, one thread (torch, BLAS, OpenMP)")
    report(f"machine: {machine['arch']}, {machine['cpu']}, {machine['cpus']} CPUs, {_gib(machine['ram_bytes'])} RAM "
           f"({_gib(machine['available_bytes'])} available); python {machine['python']}")
    report(f"estimated peak RSS per stage (guard {_gib(limit) if limit else 'none'}):")
    for s in sizes:
        est = estimates[_size_key(s)]
        users, items = users_items(s)
        report(f"  {_size_key(s):>6} ({users:,} users x {items:,} items): "
               + ", ".join(f"{k} {_gib(v)}" for k, v in est.items() if k in stages)
               + f"; max {_gib(max(est[k] for k in stages))}")
    if limit is not None:
        over = [(s, max((estimates[_size_key(s)][k], k) for k in stages)) for s in sizes]
        over = [(s, e) for s, e in over if e[0] > limit]
        if over:
            s, (peak, stage) = over[0]
            raise RaysearchError(
                f"bench grow: size {_size_key(s)} needs an estimated {_gib(peak)} peak RSS (stage {stage}), more "
                f"than the guard of {_gib(limit)} (--max-rss-gb; this machine has {_gib(ram)} RAM); choose smaller "
                f"--sizes or raise --max-rss-gb")
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for s in sizes:
        key = _size_key(s)
        results[key] = {}
        with tempfile.TemporaryDirectory(prefix="raysearch-grow-") as workdir:
            spec: dict[str, Any] = {"size": float(s), "workdir": workdir, "communities": communities,
                                    "eval_users": eval_users, "min_step_seconds": min_step_seconds}
            for stage in stages:
                if stage != "load" and "error" in results[key].get("load", {"error": "not run"}):
                    results[key][stage] = {"error": "skipped: the load stage failed"}
                    continue
                out = run_stage(stage, spec, limit)
                results[key][stage] = out
                if stage == "load" and "error" not in out:
                    spec["cache_key"] = out["cache_key"]
                    spec["cache_path"] = out["cache_path"]
                report(f"  {key:>6} {stage:<15} " + _stage_line(stage, out))
    load_after = os.getloadavg()
    x = [results[_size_key(s)].get("load", {}).get("interactions") for s in sizes]
    fits = []
    for stage, figure, unit in FIGURES:
        if stage not in stages:
            continue
        values = [_figure(results[_size_key(s)].get(stage, {}), figure) for s in sizes]
        ok = [(xi, v) for xi, v in zip(x, values, strict=True) if xi is not None]
        fit = fit_exponent([p[0] for p in ok], [p[1] for p in ok])
        is_flagged = flagged(fit["b"])
        fits.append({"stage": stage, "figure": figure, "unit": unit, "values": values, **fit, "flag": is_flagged,
                     "note": KNOWN_REASONS.get((stage, figure), "") if is_flagged else ""})
    out = {"bench": "grow", "machine": machine, "threads": 1, "load_average": {"before": list(load_before),
           "after": list(load_after)}, "seconds": time.perf_counter() - t_start,
           "rule": {"users": f"interactions / {INTERACTIONS_PER_USER}", "items": f"interactions / {INTERACTIONS_PER_ITEM}",
                    "mean_exposures": MEAN_EXPOSURES},
           "settings": {"dim": DIM, "batch": BATCH, "lr": LR, "reg": REG, "communities": communities, "alpha": ALPHA,
                        "eval_users": eval_users, "eval_block_bytes": EVAL_BLOCK_BYTES,
                        "min_step_seconds": min_step_seconds, "flag_above": FLAG_ABOVE, "max_rss_bytes": limit},
           "sizes": [float(s) for s in sizes], "interactions": x, "estimates": estimates, "stages": results,
           "fits": fits}
    _report_table(report, out, sizes)
    return out


def parse_sizes(value: str | Sequence[float]) -> tuple[float, ...]:
    """Sizes from ``"1e6,1e7"`` (or a sequence): positive, ascending, distinct."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        sizes = tuple(sorted({float(v) for v in items if str(v).strip()}))
    except ValueError:
        raise RaysearchError(f"--sizes: expected interactions separated by commas (e.g. 1e6,1e7), got {value!r}") from None
    if not sizes or sizes[0] < 1000:
        raise RaysearchError(f"--sizes: give sizes of at least 1000 interactions, got {value!r}")
    return sizes


def run_stage(stage: str, spec: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """Run ``stage`` in a fresh ``python -m raysearch.bench.grow`` child; its figures, or {"error": ...}.
    The child's RSS is polled: past ``limit`` bytes it is stopped."""
    out_path = Path(spec["workdir"]) / f"{stage}.json"
    out_path.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "raysearch.bench.grow", stage, json.dumps({**spec, "out": str(out_path)})]
    log = Path(spec["workdir"]) / f"{stage}.log"  # a file, not a pipe: a chatty child never blocks
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        seen_peak, killed = 0, False
        while proc.poll() is None:
            rss = _child_rss(proc.pid)
            seen_peak = max(seen_peak, rss)
            if limit is not None and rss > limit:
                proc.kill()
                killed = True
            time.sleep(0.2)
    output = log.read_text(errors="replace")
    wall = time.perf_counter() - t0
    if killed:
        return {"error": f"stopped: RSS {_gib(seen_peak)} passed the guard of {_gib(limit)}", "wall_seconds": wall}
    if proc.returncode != 0 or not out_path.is_file():
        tail = " | ".join(line for line in output.strip().splitlines()[-3:])
        return {"error": f"exit status {proc.returncode}: {tail}", "wall_seconds": wall}
    result = json.loads(out_path.read_text())
    result["wall_seconds"] = wall
    return result


# --------------------------------------------------------------------------- the child
def _child(stage: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one stage in this (fresh) process."""
    if stage == "load":
        return _stage_load(spec)
    import torch
    from threadpoolctl import threadpool_limits

    from raysearch.data.loader import load_cache

    torch.set_num_threads(1)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        dataset = load_cache(Path(spec["cache_path"]), spec["cache_key"])
        if dataset is None:
            raise RaysearchError(f"bench grow: the dataset cache {spec['cache_path']} could not be read")
        read = time.perf_counter() - t0
        base = _rss()
        peak_from = "VmHWM" if _reset_peak() else "ru_maxrss"
        fn = {"icpns": _stage_icpns, "gdns": _stage_gdns, "mf": _stage_mf, "eval": _stage_eval}.get(stage)
        if fn is None:
            raise RaysearchError(f"bench grow: unknown stage {stage!r}")
        result = fn(dataset, spec)
    return {"cache_read_seconds": read, "rss_base_bytes": base, "peak_rss_bytes": _peak(), "peak_from": peak_from,
            "torch": torch.__version__, **result}


def _stage_load(spec: dict[str, Any]) -> dict[str, Any]:
    import raysearch.data.synthetic as synthetic
    from raysearch.data.loader import load_dataset, save_cache

    users, items = users_items(spec["size"])
    config = synthetic.synthetic_config(n_users=users, n_items=items, mean_exposures=MEAN_EXPOSURES)
    generated: list[float] = []
    generate = synthetic.generate

    def timed_generate(cfg: Any) -> Any:
        t = time.perf_counter()
        out = generate(cfg)
        generated.append(time.perf_counter() - t)
        return out

    base = _rss()
    synthetic.generate = timed_generate  # _read_synthetic looks it up at call time
    try:
        t0 = time.perf_counter()
        dataset = load_dataset(config, use_cache=False)
        seconds = time.perf_counter() - t0
    finally:
        synthetic.generate = generate
    peak = _peak()
    path = Path(spec["workdir"]) / "dataset.npz"
    t0 = time.perf_counter()
    save_cache(dataset, path)
    write = time.perf_counter() - t0
    splits = (dataset.train, dataset.valid, dataset.test)
    nbytes = sum(p.indptr.nbytes + p.indices.nbytes for p in splits) + dataset.user_ids.nbytes + dataset.item_ids.nbytes
    nbytes += sum(a.nbytes for a in dataset.extras.values())
    return {"seconds": seconds, "generate_seconds": generated[0], "split_seconds": seconds - generated[0],
            "users": dataset.n_users, "items": dataset.n_items, "interactions": int(sum(p.nnz for p in splits)),
            "train": dataset.train.nnz, "valid": dataset.valid.nnz, "test": dataset.test.nnz,
            "rule_users": users, "rule_items": items, "dataset_bytes": int(nbytes), "cache_write_seconds": write,
            "cache_path": str(path), "cache_key": dataset.fingerprint, "rss_base_bytes": base,
            "peak_rss_bytes": peak, "peak_from": "ru_maxrss"}


def _stage_icpns(dataset: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import sklearn.cluster

    from raysearch.communities import kmeans
    from raysearch.rng import make_rng
    from raysearch.samplers.exclusion import Complement
    from raysearch.samplers.icpns import ICPNS, community_tables

    train, k = dataset.train, min(int(spec["communities"]), dataset.n_users)
    reps = make_rng(SEED, "bench-grow", "representations").standard_normal((dataset.n_users, DIM), dtype=np.float32)
    iterations: list[int] = []
    original = sklearn.cluster.KMeans

    class Counting(original):  # records Lloyd's iterations of the real kmeans() call
        def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
            out = super().fit(X, y, sample_weight)
            iterations.append(int(self.n_iter_))
            return out

    sklearn.cluster.KMeans = Counting
    try:
        t0 = time.perf_counter()
        communities, _ = kmeans(reps, k, SEED)
        t_kmeans = time.perf_counter() - t0
    finally:
        sklearn.cluster.KMeans = original
    del reps
    t0 = time.perf_counter()
    complement = Complement(train)
    t_complement = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables, _ = community_tables(train, communities, ALPHA)
    t_tables = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampler = ICPNS(train, {"communities": communities, "alpha": ALPHA}, tables=tables, complement=complement)
    t_accept = time.perf_counter() - t0
    n_iter = iterations[0] if iterations else None
    return {"communities": k, "kmeans_seconds": t_kmeans, "kmeans_iterations": n_iter,
            "kmeans_seconds_per_iteration": t_kmeans / n_iter if n_iter else None,
            "complement_seconds": t_complement, "tables_seconds": t_tables, "acceptance_seconds": t_accept,
            "table_bytes": int(sampler.table_nbytes), "support_entries": int(tables.outcomes.size),
            "complement_bytes": int(complement.pairs.nbytes)}


def _stage_gdns(dataset: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from raysearch.rng import make_rng
    from raysearch.samplers import make_sampler

    t0 = time.perf_counter()
    sampler = make_sampler("gdns", dataset.train)
    t_init = time.perf_counter() - t0
    rss_init = _rss()
    users = np.flatnonzero(dataset.train.user_counts() > 0)
    rng = make_rng(SEED, "bench-grow", "gdns")
    t0 = time.perf_counter()
    for lo in range(0, users.size, GDNS_FILL_BATCH):
        sampler._fill(users[lo:lo + GDNS_FILL_BATCH], rng)
    t_fill = time.perf_counter() - t0
    m = sampler.params.pool_size
    return {"pool_size": m, "init_seconds": t_init, "state_bytes": int(sampler.state_nbytes),
            "state_bytes_per_user": sampler.state_nbytes / max(1, dataset.n_users), "rss_after_init_bytes": rss_init,
            "fill_seconds": t_fill, "users_filled": int(users.size)}


def _stage_mf(dataset: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """One epoch of each optimiser in turn, each from a fresh model; the peak RSS is reset between them."""
    import gc

    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # the optimisers' lazy imports (torch._dynamo), untimed
    out: dict[str, Any] = {}
    for optimiser in OPTIMISERS:
        gc.collect()
        base, reset = _rss(), _reset_peak()
        figures = _mf_epoch(dataset, optimiser, spec)
        out[optimiser] = {**figures, "rss_base_bytes": base, "peak_rss_bytes": _peak() if reset else None}
        gc.collect()
    peaks = [out[o]["peak_rss_bytes"] for o in OPTIMISERS]
    if all(p is not None for p in peaks):
        out["peak_rss_bytes"] = max(peaks)  # the stage's: the larger of the two
    return out


def _mf_epoch(dataset: Any, optimiser: str, spec: dict[str, Any]) -> dict[str, Any]:
    from raysearch.bench.steps import trainer_step
    from raysearch.rng import make_rng
    from raysearch.train.batches import n_steps_for, pair_batches, pair_rows

    t0 = time.perf_counter()
    step_on = trainer_step(dataset, optimiser, spec["workdir"], stream="bench-grow")  # bench steps' step
    users_all, items_all = pair_rows(dataset.train)
    n_steps = n_steps_for(users_all.size, BATCH)
    batches = pair_batches(users_all, items_all, n_steps, make_rng(SEED, "bench-grow", "shuffle", optimiser))
    first = next(batches)  # the shuffle happens here
    setup = time.perf_counter() - t0
    warmup = min(WARMUP_STEPS, n_steps - 1) if n_steps > 1 else 0  # at least one step is timed
    done = 0
    pending = [first]
    for _ in range(warmup):
        step_on(pending.pop() if pending else next(batches))
        done += 1
    timed, t0 = 0, time.perf_counter()
    while done < n_steps and (timed < MIN_STEPS or time.perf_counter() - t0 < spec["min_step_seconds"]):
        step_on(pending.pop() if pending else next(batches))
        done += 1
        timed += 1
    step = (time.perf_counter() - t0) / timed
    return {"steps": n_steps, "steps_timed": timed, "warmup_steps": warmup, "scaled": done < n_steps,
            "setup_seconds": setup, "step_ms": step * 1e3, "epoch_seconds": setup + n_steps * step}


def _stage_eval(dataset: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from raysearch.config import EvalConfig
    from raysearch.evaluation.full_ranking import evaluated_users
    from raysearch.models import make_model
    from raysearch.rng import make_rng
    from raysearch.train.evaluator import Evaluator

    torch.manual_seed(SEED)
    model = make_model("mf", dataset.n_users, dataset.n_items, dataset.train, dim=DIM)
    batch = eval_batch_users(dataset.n_items)
    t0 = time.perf_counter()
    evaluator = Evaluator(dataset, EvalConfig(batch_users=batch), "ndcg@10")
    t_setup = time.perf_counter() - t0
    valid_users = evaluated_users(dataset.valid, None)
    n = min(int(spec["eval_users"]), valid_users.size)
    sample = np.sort(make_rng(SEED, "bench-grow", "eval").choice(valid_users, n, replace=False))
    evaluator.users = sample
    t0 = time.perf_counter()
    result = evaluator.evaluate(model, "valid")
    seconds = time.perf_counter() - t0
    per_user = seconds / n
    return {"batch_users": batch, "users_ranked": n, "valid_users": int(valid_users.size),
            "scaled": n < valid_users.size, "setup_seconds": t_setup, "sample_seconds": seconds,
            "ms_per_user": per_user * 1e3, "seconds": per_user * valid_users.size,
            "ndcg@10": float(result.means["ndcg@10"])}


# --------------------------------------------------------------------------- memory, machine, table
def _proc_bytes(path: str, field: str) -> int | None:
    """A size field (kB) of a ``/proc`` file such as ``/proc/self/status`` or ``/proc/meminfo``, in bytes
    (None where unreadable)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _status(field: str, pid: int | str = "self") -> int | None:
    return _proc_bytes(f"/proc/{pid}/status", field)


def _rss() -> int:
    return _status("VmRSS") or 0


def _peak() -> int:
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status("VmHWM") is not None


def _child_rss(pid: int) -> int:
    return _status("VmRSS", pid) or 0


def _meminfo(field: str) -> int | None:
    return _proc_bytes("/proc/meminfo", field)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"arch": platform.machine(), "cpu": cpu or "unknown CPU", "cpus": os.cpu_count(),
            "ram_bytes": _meminfo("MemTotal"), "available_bytes": _meminfo("MemAvailable"),
            "python": platform.python_version(), "platform": platform.platform()}


def _size_key(size: float) -> str:
    """1e6 -> "1e6", 2.5e7 -> "2.5e7", 20000 -> "2e4"."""
    mantissa, exponent = f"{float(size):e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _gib(n: int | float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _value(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "B":
        return _gib(v)
    return f"{v:.3g} {unit}"


def _figure(result: dict[str, Any], figure: str) -> Any:
    """``result[figure]``, a dotted figure ("adam.step_ms") read level by level; None where absent."""
    for part in figure.split("."):
        result = result.get(part) if isinstance(result, dict) else None
    return result


def _stage_line(stage: str, out: dict[str, Any]) -> str:
    if "error" in out:
        return f"FAILED: {out['error']}"
    peak = f"peak RSS {_gib(out.get('peak_rss_bytes'))}"
    if stage == "load":
        return (f"{out['interactions']:,} interactions ({out['users']:,} users x {out['items']:,} items) in "
                f"{out['seconds']:.2f} s (generator {out['generate_seconds']:.2f} s); {peak}")
    if stage == "icpns":
        return (f"k-means {out['kmeans_seconds']:.2f} s ({out['kmeans_iterations']} iterations), exclusion index "
                f"{out['complement_seconds']:.2f} s, tables {out['tables_seconds']:.2f} s, acceptance "
                f"{out['acceptance_seconds']:.2f} s; tables {_gib(out['table_bytes'])}; {peak}")
    if stage == "gdns":
        return (f"pool state {_gib(out['state_bytes'])} ({out['pool_size']} slots a user), init "
                f"{out['init_seconds']:.2f} s, fill {out['fill_seconds']:.2f} s; {peak}")
    if stage == "mf":
        parts = []
        for o in OPTIMISERS:
            r = out[o]
            how = f"scaled from {r['steps_timed']} of {r['steps']} steps" if r["scaled"] else f"all {r['steps']} steps"
            parts.append(f"{o} {r['step_ms']:.2f} ms a step, epoch {r['epoch_seconds']:.2f} s ({how}; setup "
                         f"{r['setup_seconds']:.2f} s; peak RSS {_gib(r['peak_rss_bytes'])})")
        return "; ".join(parts)
    how = f"scaled from {out['users_ranked']:,}" if out["scaled"] else "all"
    return (f"{out['ms_per_user']:.3f} ms a user, all {out['valid_users']:,} validation users {out['seconds']:.2f} s "
            f"({how}; batch {out['batch_users']}); {peak}")


def _report_table(report: Callable[[str], Any], out: dict[str, Any], sizes: Sequence[float]) -> None:
    keys = [_size_key(s) for s in sizes]
    load = out["load_average"]
    m = out["machine"]
    report("")
    report(f"cost ~ size^b, least squares on log-log over measured interactions; b > {FLAG_ABOVE} flagged (!)")
    report(f"machine {m['arch']}, {m['cpu']}, {m['cpus']} CPUs; threads 1; load average before "
           f"{load['before'][0]:.2f}, after {load['after'][0]:.2f}; {out['seconds']:.0f} s in all")
    header = f"  {'stage':<15} {'figure':<30}" + "".join(f"{k:>11}" for k in keys) + f" {'b':>6}"
    report(header)
    report("  " + " " * 46 + "".join(f"{(x or 0):>11.3g}" for x in out["interactions"]) + "  <- interactions")
    if max(sizes) < 1e6:
        report("  (sizes this small measure fixed per-call costs and cache effects more than growth: the "
               "exponents mean little here; the full run is the measurement)")
    for fit in out["fits"]:
        b = "-" if fit["b"] is None else f"{fit['b']:.2f}"
        mark = " !" if fit["flag"] else ""
        report(f"  {fit['stage']:<15} {fit['figure']:<30}"
               + "".join(f"{_value(v, fit['unit']):>11}" for v in fit["values"]) + f" {b:>6}{mark}")
    flagged_fits = [f for f in out["fits"] if f["flag"]]
    for f in flagged_fits:
        report(f"  ! {f['stage']} {f['figure']}: b = {f['b']:.2f}: {f['note'] or '(no reason recorded: fill in note)'}")
    failed = [(k, st, r["error"]) for k, row in out["stages"].items() for st, r in row.items() if "error" in r]
    for k, st, err in failed:
        report(f"  FAILED {k} {st}: {err}")


def main(argv: Sequence[str]) -> int:
    """The child's entry point: ``python -m raysearch.bench.grow STAGE SPEC_JSON``."""
    stage, spec = argv[0], json.loads(argv[1])
    result = _child(stage, spec)
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
