"""Scale measurements of distributed training (``raysearch bench scale``).

For each backbone and worker count, one short training run on the same data (Gowalla by default,
``--quick``: the small synthetic dataset with a smaller batch, so an epoch has enough steps): time per epoch
and per step, sampler draws per second, bytes each worker sends per step through the sharded tables'
collectives, and parameter + optimiser bytes held by each worker. One worker is the single-process path
(dense tables); more run on Ray Train with row-sharded tables.

The times are **steady state**: each run trains ``warmup_epochs + 1`` epochs or more (default 2 on Gowalla,
``--quick`` 4) and the time per epoch and per step, the draws per second and the bytes per step are taken
over the epochs after the first ``warmup_epochs`` (default 1) only. What a run spends before them is
reported apart and never enters the comparison:

* ``warmup_epoch_seconds``: the mean time of the warm-up epoch(s) (first steps' allocations, lazy
  initialisation, caches);
* ``startup_seconds``: the run's wall time outside all of its epochs and its validations: process and Ray
  start, data load, model and sampler build, per-epoch checkpoints and the final test evaluation.

The speed-up of W workers is ``epoch_seconds`` at W = 1 over ``epoch_seconds`` at W (steady state only).
Validation runs once, after the last epoch (``trainer.eval_every`` = epochs), so it adds no time between
the timed epochs.

JSON rows (``--json FILE``), one per (model, workers): ``model, workers, epochs, warmup_epochs,
steps_per_epoch, epoch_seconds`` (steady-state mean), ``step_seconds`` (steady-state seconds per step),
``speedup`` (against W = 1 of the same model; None without a W = 1 row), ``warmup_epoch_seconds,
startup_seconds, run_seconds`` (the run's whole wall time), ``draws_per_second, comm_bytes_per_step``
(steady state), ``param_bytes, optimizer_bytes`` (per-worker lists).
"""

from __future__ import annotations

import math
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from raysearch.run import train

QUICK_EPOCHS = 4  # --quick: one warm-up epoch and three timed ones
QUICK_BATCH = 256  # --quick: about 40 steps an epoch on the synthetic data (2048 would give 5)


def run(report: Callable[[str], Any] = print, dataset: str = "gowalla", models: tuple[str, ...] = ("mf", "lightgcn"),
        workers: tuple[int, ...] = (1, 2), epochs: int = 2, warmup_epochs: int = 1, quick: bool = False,
        data_dir: str | None = None, overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Train each (model, workers) for ``epochs`` epochs; report and return one row each, timed over the
    epochs after the first ``warmup_epochs`` (``overrides``: more ``key=value`` for every run)."""
    extra: list[str] = []
    if quick:
        dataset, epochs = "synthetic", max(epochs, QUICK_EPOCHS)
        extra.append(f"trainer.batch_size={QUICK_BATCH}")
    if warmup_epochs < 0 or epochs <= warmup_epochs:
        raise ValueError(f"bench scale needs more epochs ({epochs}) than warm-up epochs ({warmup_epochs}): "
                         "the steady-state figures come from the epochs after the warm-up")
    rows = []
    report(f"scale: dataset {dataset}, {epochs} epochs per run, timed over epochs {warmup_epochs + 1}..{epochs} "
           f"(steady state; the first {_epochs(warmup_epochs)} and the start-up reported apart), "
           f"{platform.machine()} {torch.get_num_threads()} threads available, torch {torch.__version__}")
    report(f"{'model':<9} {'W':>2} {'steps':>5} {'s/epoch':>8} {'ms/step':>8} {'speed-up':>8} {'draws/s':>9} "
           f"{'MB/step/worker':>14} {'param MB/worker':>15} {'optim MB/worker':>15} | "
           f"{'warm-up s/epoch':>15} {'start-up s':>10}")
    for model in models:
        for w in workers:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                results = train([f"dataset={dataset}", f"model={model}", f"trainer.epochs={epochs}",
                                 f"trainer.workers={w}", "trainer.progress=false", "eval.ks=[20]",
                                 "trainer.valid_metric=recall@20", f"trainer.eval_every={epochs}", *extra,
                                 *overrides], out=f"{tmp}/run", data_dir=data_dir)
                run_seconds = time.perf_counter() - t0
                metrics = _read_metrics(f"{tmp}/run")
            memory = results["stages"]["train"].get("memory_per_process", {})
            row = {"model": model, "workers": w,
                   **summarise(metrics, warmup_epochs=warmup_epochs, run_seconds=run_seconds),
                   "param_bytes": memory.get("param_bytes", []), "optimizer_bytes": memory.get("optimizer_bytes", [])}
            rows.append(row)
            _speedups(rows)
            report(f"{model:<9} {w:>2} {row['steps_per_epoch']:>5} {row['epoch_seconds']:>8.2f} "
                   f"{row['step_seconds'] * 1e3:>8.1f} {_x(row['speedup']):>8} {row['draws_per_second'] or 0:>9.3g} "
                   f"{row['comm_bytes_per_step'] / 2**20:>14.2f} {_mb(row['param_bytes']):>15} "
                   f"{_mb(row['optimizer_bytes']):>15} | {_f(row['warmup_epoch_seconds'], '.2f'):>15} "
                   f"{_f(row['startup_seconds'], '.1f'):>10}")
    for model in models:
        mine = {r["workers"]: r for r in rows if r["model"] == model}
        for w, r in sorted(mine.items()):
            if w != 1 and r["speedup"] is not None:
                report(f"{model}: speed-up of {w} workers over 1, steady state: {r['speedup']:.2f}x "
                       f"({r['epoch_seconds']:.2f} s against {mine[1]['epoch_seconds']:.2f} s an epoch; start-up "
                       f"{r['startup_seconds']:.1f} s against {mine[1]['startup_seconds']:.1f} s, not counted)")
    return rows


def summarise(records: Sequence[dict[str, Any]], warmup_epochs: int = 1, run_seconds: float | None = None,
              stage: str = "train") -> dict[str, Any]:
    """Steady-state figures of one run from its ``metrics.jsonl`` epoch records (those of ``stage``):
    time per epoch and per step, draws per second and bytes per step over the epochs after the first
    ``warmup_epochs``; the warm-up epochs' mean time and, given the run's wall time, the start-up (the wall
    time outside every epoch and validation) apart."""
    epochs = sorted((r for r in records if r.get("stage", stage) == stage and "epoch_seconds" in r),
                    key=lambda r: r["epoch"])
    warm, steady = epochs[:warmup_epochs], epochs[warmup_epochs:]
    if not steady:
        raise ValueError(f"{len(epochs)} epoch record(s) of stage {stage!r}: none after the {warmup_epochs} "
                         "warm-up epoch(s) to time")
    seconds = sum(r["epoch_seconds"] for r in steady)
    steps = sum(r["steps"] for r in steady)
    sampling = sum(r.get("sampling_seconds") or 0.0 for r in steady)
    draws = sum(r.get("draws") or 0 for r in steady)
    comm = [r["comm_bytes_per_step"] for r in steady if "comm_bytes_per_step" in r]
    startup = None
    if run_seconds is not None:
        inside = sum(r["epoch_seconds"] + (r.get("eval_seconds") or 0.0) for r in epochs)
        startup = max(0.0, run_seconds - inside)
    return {
        "epochs": len(epochs), "warmup_epochs": len(warm), "steps_per_epoch": steady[0]["steps"],
        "epoch_seconds": seconds / len(steady),
        "step_seconds": seconds / steps if steps else math.nan,
        "speedup": None,
        "warmup_epoch_seconds": sum(r["epoch_seconds"] for r in warm) / len(warm) if warm else None,
        "startup_seconds": startup, "run_seconds": run_seconds,
        "draws_per_second": draws / sampling if sampling else None,
        "comm_bytes_per_step": sum(comm) / len(comm) if comm else 0.0,
    }


def _speedups(rows: list[dict[str, Any]]) -> None:
    """Each row's ``speedup``: steady-state seconds per epoch at W = 1 of its model over its own."""
    base = {r["model"]: r["epoch_seconds"] for r in rows if r["workers"] == 1}
    for r in rows:
        b = base.get(r["model"])
        r["speedup"] = b / r["epoch_seconds"] if b is not None and r["epoch_seconds"] > 0 else None


def _epochs(n: int) -> str:
    return "epoch" if n == 1 else f"{n} epochs"


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _f(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def _mb(values: list[int]) -> str:
    return "/".join(f"{v / 2**20:.1f}" for v in values) if values else "-"


def _read_metrics(run_dir: str) -> list[dict[str, Any]]:
    from raysearch.train.rundir import RunDir

    return RunDir(run_dir, writable=False).read_metrics()
