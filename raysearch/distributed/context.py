"""The training context of one Ray Train worker: its users, its collectives, its checkpoints.

Users are sharded round-robin like the tables' rows (user ``u`` belongs to rank ``u % W``), so each
worker trains on and evaluates exactly the users whose embedding rows it holds. Per-rank random streams
come from the run's seed (``(seed, stage, "epoch", epoch, rank)``): a given seed and worker count gives
the same negatives every time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from raysearch.evaluation import EvalResult
from raysearch.train.batches import n_steps_for
from raysearch.train.context import TableHosting, make_sampler


class DistributedContext:
    """``TrainingContext`` over the default torch.distributed process group (gloo on CPU, NCCL on GPU)."""

    def __init__(self, report_to_ray: bool = True):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.report_to_ray = report_to_ray
        self.on_ray = report_to_ray  # False: a plain torch.distributed group (tests), no Ray workers

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def my_users(self, n_users: int) -> np.ndarray:
        return np.arange(self.rank, n_users, self.world_size, dtype=np.int64)

    def gather_eval(self, result: EvalResult) -> EvalResult:
        shards: list[EvalResult | None] = [None] * self.world_size
        dist.all_gather_object(shards, result)
        return EvalResult.merge([s for s in shards if s is not None and s.n_users > 0] or [result])

    def sum(self, values: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(values, dtype=np.float64))
        dist.all_reduce(t)
        return t.numpy()

    def broadcast_object(self, obj: object) -> object:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def n_steps(self, my_rows: int, batch_size: int) -> int:
        total = int(self.sum(np.array([my_rows]))[0])
        return n_steps_for(total, batch_size)

    def reduce_gradients(self, model: torch.nn.Module) -> None:
        """All-reduce (sum) the gradients of replicated parameters in one flat buffer."""
        sharded = {id(p) for p in model.tables.parameters()}
        grads = [p.grad for p in model.parameters() if id(p) not in sharded and p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def checkpoint_name(self, kind: str) -> str:
        return f"{kind}.rank{self.rank}-of-{self.world_size}.pt"

    def epoch_done(self, stage: str, epoch: int, stage_dir: Path, record: dict) -> None:
        """Report the epoch to Ray Train with this rank's checkpoint file (Ray merges all ranks' files
        into one checkpoint directory); a restarted worker group resumes from it."""
        if not self.report_to_ray:
            return
        import ray.train

        metrics = {"stage": stage, "epoch": epoch, "loss": record.get("loss")}
        metrics.update({f"valid/{k}": v for k, v in (record.get("valid") or {}).items()})
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "stages" / stage
            target.mkdir(parents=True)
            shutil.copy2(stage_dir / self.checkpoint_name("last"), target / self.checkpoint_name("last"))
            best = stage_dir / self.checkpoint_name("best")
            if best.exists():
                shutil.copy2(best, target / self.checkpoint_name("best"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


    def build_sampler(self, name: str, train: Any, params: dict[str, Any], hosting: TableHosting) -> Any:
        """ICPNS on Ray workers with ``hosting.actors`` > 0: the community tables live with Ray actors and
        reach every worker read-only through the object store; anything else is built in this process."""
        if name != "icpns" or not self.on_ray or hosting.actors == 0:
            return make_sampler(name, train, **params)
        from raysearch.distributed.table_actors import host_icpns

        params = dict(params)
        communities = params.pop("communities")
        return host_icpns(self, train, communities, params, hosting.actors, hosting.draws)


def restore_ray_checkpoint(run_dir: Path) -> str | None:
    """Copy the latest Ray Train checkpoint (if any) into ``run_dir``; returns its path for the log."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        for path in Path(directory).rglob("*.pt"):
            dest = run_dir / path.relative_to(directory)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        return str(checkpoint.path)
