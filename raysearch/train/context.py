"""What the training loop needs to know about the processes it runs among.

The loop is written once. In one process it gets ``LocalContext`` (rank 0 of 1: every user, no
communication); under Ray Train it gets the distributed context of ``raysearch.distributed``, which
shards users across ranks and gathers per-user evaluation values. Nothing else in the loop changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from raysearch.evaluation import EvalResult
from raysearch.samplers import make_sampler
from raysearch.train.batches import n_steps_for

TABLE_DRAWS = ("local", "remote")  # where a hosted sampler's draws run: in each worker, or in the actors


@dataclass(frozen=True)
class TableHosting:
    """How a run on Ray may share a static sampler's tables: ``actors`` Ray actors host them (0: every
    process builds its own), and ``draws`` says where draws run (one of ``TABLE_DRAWS``)."""

    actors: int = 0
    draws: str = "local"


class TrainingContext(Protocol):
    rank: int
    world_size: int
    on_ray: bool  # the processes are Ray workers (Ray's API, e.g. actors and the object store, is at hand)

    @property
    def is_main(self) -> bool: ...

    def my_users(self, n_users: int) -> np.ndarray:
        """int64: the users this process trains on and evaluates."""

    def gather_eval(self, result: EvalResult) -> EvalResult:
        """Every process's per-user values merged (each user exactly once)."""

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over processes (float64)."""

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` on every process."""

    def n_steps(self, my_rows: int, batch_size: int) -> int:
        """Steps of the epoch, equal on every process: the global rows over the global batch size."""

    def reduce_gradients(self, model: torch.nn.Module) -> None:
        """Sum the gradients of replicated (not sharded) parameters over processes."""

    def checkpoint_name(self, kind: str) -> str:
        """File name of this process's ``kind`` ("last" or "best") checkpoint."""

    def epoch_done(self, stage: str, epoch: int, stage_dir: Path, record: dict) -> None:
        """Called by every process after the epoch's checkpoint is written (e.g. to report it to Ray)."""

    def build_sampler(self, name: str, train: Any, params: dict[str, Any], hosting: TableHosting) -> Any:
        """The sampler ``name`` on ``train``: built here, or (a distributed context) served from tables
        hosted as ``hosting`` says. The draws are the same either way."""


class LocalContext:
    """A single process: it owns every user."""

    rank = 0
    world_size = 1
    on_ray = False

    @property
    def is_main(self) -> bool:
        return True

    def my_users(self, n_users: int) -> np.ndarray:
        return np.arange(n_users, dtype=np.int64)

    def gather_eval(self, result: EvalResult) -> EvalResult:
        return result

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def broadcast_object(self, obj: object) -> object:
        return obj

    def n_steps(self, my_rows: int, batch_size: int) -> int:
        return n_steps_for(my_rows, batch_size)

    def reduce_gradients(self, model: torch.nn.Module) -> None:
        return None

    def checkpoint_name(self, kind: str) -> str:
        return f"{kind}.pt"

    def epoch_done(self, stage: str, epoch: int, stage_dir: Path, record: dict) -> None:
        return None

    def build_sampler(self, name: str, train: Any, params: dict[str, Any], hosting: TableHosting) -> Any:
        return make_sampler(name, train, **params)
