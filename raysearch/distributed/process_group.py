"""Run a function on W local processes joined in a gloo process group (tests and benchmarks).

Ray Train sets up the process group itself in real runs; this helper gives tests and micro-benchmarks
the same collectives without a Ray cluster.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple, queue) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        queue.put((rank, fn(rank, world, *args)))
    finally:
        dist.destroy_process_group()


def run_in_process_group(fn: Callable[..., Any], world: int, *args: Any) -> list[Any]:
    """``[fn(rank, world, *args) for rank in range(world)]``, each in its own process; ``fn`` must be
    importable (module level) and return something picklable."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_entry, args=(world, free_port(), fn, args, queue), nprocs=world, join=True,
                       start_method="spawn")
    results = dict(queue.get() for _ in range(world))
    return [results[r] for r in range(world)]
