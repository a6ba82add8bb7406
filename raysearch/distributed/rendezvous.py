"""Ray Train's torch process group, with its rendezvous store listening on the node's address only.

Rank 0 hosts the process group's rendezvous store (torch's ``TCPStore``). Created the usual way
(``init_process_group("env://")``, as Ray Train's ``TorchConfig`` does), that store listens on every
interface of rank 0's machine for the whole run. ``NodeAddressTorchConfig`` sets the group up itself:
rank 0 binds a socket to its node's address (127.0.0.1 on the loopback cluster raysearch starts, the
cluster address on a cluster of machines), hands it to the store (``master_listen_fd``), and every rank
joins with ``init_process_group(store=...)``. The rest (device set-up, shutdown) is Ray's own torch
backend. gloo's own sockets follow ``GLOO_SOCKET_IFNAME`` (``local_ray``), NCCL's ``NCCL_SOCKET_IFNAME``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ray
import torch.distributed as dist
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

# Rank 0's store, kept alive for as long as its process group lives.
_STORE: dict[str, Any] = {}


def _host_store(world_size: int, timeout_s: int) -> tuple[str, int]:
    """On rank 0: a TCPStore server on a socket bound to this node's address; returns (address, port)."""
    address = ray.util.get_node_ip_address()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    _STORE["server"] = dist.TCPStore(address, port, world_size, is_master=True,
                                     timeout=timedelta(seconds=timeout_s), wait_for_workers=False,
                                     master_listen_fd=listener.detach())
    return address, port


def _join_group(backend: str, rank: int, world_size: int, address: str, port: int, timeout_s: int) -> None:
    """On every rank: join the process group through rank 0's store."""
    if "nccl" in backend:
        # As Ray's own set-up: fail on a timed-out collective rather than hang.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=timeout_s)
    store = _STORE["server"] if rank == 0 else dist.TCPStore(address, port, world_size, is_master=False,
                                                              timeout=timeout)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


def _release_store() -> None:
    _STORE.clear()


class _NodeAddressTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config: NodeAddressTorchConfig) -> None:
        backend = backend_config.backend or "gloo"
        world_size = len(worker_group)
        worker_group.execute(_set_torch_distributed_env_vars)
        address, port = worker_group.execute_single(0, _host_store, world_size, backend_config.timeout_s)
        ray.get([worker_group.execute_single_async(rank, _join_group, backend, rank, world_size, address, port,
                                                   backend_config.timeout_s)
                 for rank in range(world_size)])

    def on_shutdown(self, worker_group, backend_config) -> None:
        super().on_shutdown(worker_group, backend_config)
        worker_group.execute(_release_store)


@dataclass
class NodeAddressTorchConfig(TorchConfig):
    """``TorchConfig`` whose rendezvous store listens on rank 0's node address only."""

    @property
    def backend_cls(self):
        return _NodeAddressTorchBackend
