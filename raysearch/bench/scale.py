"""Scale measurements of distributed training (``raysearch bench scale``).

For each backbone and worker count, one short training run on the same data (Gowalla by default):
epoch time, sampler draws per second, bytes each worker sends per step through the sharded tables'
collectives, and parameter + optimiser bytes held by each worker. One worker is the single-process path
(dense tables); more run on Ray Train with row-sharded tables.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from raysearch.run import train


def run(report: Callable[[str], Any] = print, dataset: str = "gowalla", models: tuple[str, ...] = ("mf", "lightgcn"),
        workers: tuple[int, ...] = (1, 2), epochs: int = 1, quick: bool = False,
        data_dir: str | None = None) -> list[dict[str, Any]]:
    """Train each (model, workers) for ``epochs`` epochs; report and return one row each."""
    if quick:
        dataset, epochs = "synthetic", 1
    rows = []
    report(f"scale: dataset {dataset}, {epochs} epoch(s) per run, {platform.machine()} "
           f"{torch.get_num_threads()} threads available, torch {torch.__version__}")
    report(f"{'model':<9} {'W':>2} {'s/epoch':>8} {'draws/s':>10} {'MB/step/worker':>15} "
           f"{'param MB/worker':>16} {'optim MB/worker':>16}")
    for model in models:
        for w in workers:
            with tempfile.TemporaryDirectory() as tmp:
                results = train([f"dataset={dataset}", f"model={model}", f"trainer.epochs={epochs}",
                                 f"trainer.workers={w}", "trainer.progress=false", "eval.ks=[20]",
                                 "trainer.valid_metric=recall@20"], out=f"{tmp}/run", data_dir=data_dir)
                metrics = [line for line in _read_metrics(f"{tmp}/run")]
            stage = results["stages"]["train"]
            memory = stage.get("memory_per_process", {})
            comm = [m.get("comm_bytes_per_step", 0.0) for m in metrics]
            row = {
                "model": model, "workers": w, "epoch_seconds": stage["epoch_seconds_mean"],
                "draws_per_second": stage["draws_per_second"],
                "comm_bytes_per_step": sum(comm) / len(comm) if comm else 0.0,
                "param_bytes": memory.get("param_bytes", []), "optimizer_bytes": memory.get("optimizer_bytes", []),
                "steps_per_epoch": metrics[0]["steps"] if metrics else None,
            }
            rows.append(row)
            report(f"{model:<9} {w:>2} {row['epoch_seconds']:>8.1f} {row['draws_per_second'] or 0:>10.3g} "
                   f"{row['comm_bytes_per_step'] / 2**20:>15.2f} {_mb(row['param_bytes']):>16} "
                   f"{_mb(row['optimizer_bytes']):>16}")
    return rows


def _mb(values: list[int]) -> str:
    return "/".join(f"{v / 2**20:.1f}" for v in values) if values else "-"


def _read_metrics(run_dir: str) -> list[dict[str, Any]]:
    from raysearch.train.rundir import RunDir

    return RunDir(run_dir, writable=False).read_metrics()
