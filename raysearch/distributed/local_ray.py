"""Start or join the Ray cluster a raysearch command runs on.

With ``RAY_ADDRESS`` set (by ``ray job submit``, or by you: ``auto`` joins the cluster ``ray start`` made
on this machine) the command joins that cluster as it is. Otherwise it starts a fresh local cluster
that listens on loopback only:

- every Ray process (GCS, raylet, workers, the node's agents and their metrics export) binds
  127.0.0.1: Ray binds its gRPC servers to all interfaces unless the node's address is 127.0.0.1, and
  on Linux it resolves "127.0.0.1" to the machine's outward address unless
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the single-machine mode Ray uses on macOS and Windows);
- the gloo process groups of Ray Train workers listen on the loopback interface (``GLOO_SOCKET_IFNAME``);
- no dashboard;
- one malloc arena a process (``raysearch.heap.WORKER_HEAP_ENVIRONMENT``): Tune and Train run the training
  function in a thread, whose own arena would page-fault every large step buffer anew;
- token authentication stays as configured (``RAY_AUTH_MODE``; unset, Ray 2.60 turns it on for a new
  local cluster and writes ``~/.ray/auth_token``). Nothing here turns it off.

A variable you set yourself wins over these defaults (e.g. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` for
a local node that others may reach).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from raysearch.heap import WORKER_HEAP_ENVIRONMENT

LOOPBACK_NODE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_interface() -> str | None:
    """The name of this machine's loopback network interface ('lo' on Linux, 'lo0' on macOS), if any."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


def loopback_environment() -> dict[str, str]:
    """The environment variables that keep a local Ray cluster (and the processes it starts) on loopback."""
    env = {LOOPBACK_NODE: "0"}
    if (interface := loopback_interface()) is not None:
        env["GLOO_SOCKET_IFNAME"] = interface
    return env


def init_ray(**options: Any) -> None:
    """``ray.init`` for raysearch's commands and tests: join ``RAY_ADDRESS`` if set, else start a local
    cluster on loopback only (see the module docstring). ``options`` go to ``ray.init`` (e.g.
    ``num_cpus``); no-op when Ray is already initialised."""
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        for key, value in {**loopback_environment(), **WORKER_HEAP_ENVIRONMENT}.items():
            os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return
    if not address:
        # Ray reads this switch once, when it is first imported; a caller may have imported it before
        # the environment above was set.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = os.environ[LOOPBACK_NODE].lower() in ("1", "true")  # as Ray reads it
    defaults = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    ray.init(address=address or "local", **{**defaults, **options})
