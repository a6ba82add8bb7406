"""``raysearch train ... trainer.workers=N``: the same pipeline on N Ray Train workers.

The driver builds a ``TorchTrainer`` (Ray Train V2) whose workers each run ``worker_loop``: the same
``run_training`` as the single-process path, given a ``DistributedContext`` (its users, collectives and
checkpoints) and row-sharded embedding tables. Process group: gloo on CPU, NCCL on GPU (Ray sets it
up). Every epoch each worker writes its shard's checkpoint and reports it to Ray; with
``trainer.max_failures`` a worker group that dies is restarted from the latest reported checkpoint.

Tracking settings are passed in the train loop config (environment variables of the driver do not reach
the workers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from raysearch.config import RunConfig, build_run_config, config_tree
from raysearch.errors import ConfigError, RaysearchError
from raysearch.train.rundir import RunDir


def worker_loop(loop_config: dict[str, Any]) -> None:
    """Entry point of every Ray Train worker."""
    import ray.train
    import torch

    from raysearch.data import load_dataset
    from raysearch.distributed.context import DistributedContext, restore_ray_checkpoint
    from raysearch.distributed.sharded import ShardedEmbeddings
    from raysearch.models import MODELS
    from raysearch.train.pipeline import run_training

    cfg = build_run_config(loop_config["config"])
    torch.set_num_threads(int(loop_config["threads"]))
    context = DistributedContext(report_to_ray=True)
    # Only rank 0 writes the run's shared files; every rank writes its own checkpoint shard.
    run_dir = RunDir(loop_config["run_dir"], writable=context.is_main)
    restore_ray_checkpoint(run_dir.path)
    dataset = load_dataset(cfg.dataset, data_dir=loop_config.get("data_dir"), cache_dir=loop_config.get("cache_dir"))
    dim = MODELS.get(cfg.model.name).Params(**dict(cfg.model.params)).dim
    tables = ShardedEmbeddings(dataset.n_users, dataset.n_items, dim)
    from raysearch.metrics import RayMetricsCallback
    from raysearch.tracking import tracking_callbacks

    callbacks = [RayMetricsCallback(dataset.name, cfg.model.name),
                 *tracking_callbacks(cfg, dataset, run_dir.path.name, is_main=context.is_main)]
    results = run_training(cfg, dataset, run_dir, context=context, tables=tables, threads=loop_config["threads"],
                           callbacks=callbacks)
    if context.is_main:
        ray.train.report({"done": 1, **{f"test/{k}": v for k, v in results["test"].items()}})
    else:
        ray.train.report({"done": 1})


def cpus_per_worker(cfg: RunConfig, available: float) -> int:
    """CPUs (and torch threads) per worker: trainer.threads when set, else an even share of the node's
    share of this run (its CPUs / trainer.shared_by)."""
    if cfg.trainer.threads:
        return cfg.trainer.threads
    return max(1, int(available // cfg.trainer.shared_by // cfg.trainer.workers))


def train_distributed(cfg: RunConfig, run_dir: RunDir, data_dir: str | None = None,
                      cache_dir: str | None = None) -> dict[str, Any]:
    """Run ``cfg`` on ``cfg.trainer.workers`` Ray Train workers; returns the results rank 0 wrote."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as TrainRunConfig
    from ray.train.torch import TorchTrainer

    from raysearch.distributed.local_ray import init_ray
    from raysearch.distributed.rendezvous import NodeAddressTorchConfig

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    # RAY_ADDRESS joins that cluster; otherwise a fresh local one starts, on loopback only.
    init_ray()
    available = ray.cluster_resources().get("CPU", 1.0)
    threads = cpus_per_worker(cfg, available)
    if threads * cfg.trainer.workers > available:
        raise ConfigError(f"trainer.workers={cfg.trainer.workers} x {threads} CPU each exceeds the cluster's "
                          f"{available:g} CPUs (set trainer.threads or fewer workers)")
    use_gpu = cfg.trainer.device == "cuda"
    path = run_dir.path.resolve()
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "config": config_tree(cfg),
            "run_dir": str(path),
            "threads": threads,
            "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
            "cache_dir": str(Path(cache_dir).resolve()) if cache_dir else None,
            "tracking": {"uri": cfg.tracking.uri, "experiment": cfg.tracking.experiment},
        },
        # gloo on CPU, NCCL on GPU; rank 0's rendezvous store listens on its node's address only
        torch_config=NodeAddressTorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.trainer.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": threads}),
        run_config=TrainRunConfig(
            name="ray",
            storage_path=str(path),
            failure_config=FailureConfig(max_failures=cfg.trainer.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise RaysearchError(f"distributed training failed: {result.error}") from result.error
    if not run_dir.results_path.exists():
        raise RaysearchError(f"distributed training ended without {run_dir.results_path}")
    return json.loads(run_dir.results_path.read_text())
