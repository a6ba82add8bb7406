"""Local vs remote draws from the ICPNS table actors (``raysearch bench tables``).

On a local Ray cluster: ``CommunityTableService`` builds and publishes the community tables of a
Zipf-popularity training split (the samplers bench's setting: 1e5 items, 8 communities); this process
plays a worker. Measured, interleaved in one run:
- the build + publish time, and the time a worker takes to fetch a version (``ray.get``, zero-copy);
- per batch of ``rows`` rows (4096 and 65536): local draws (the worker's rejection sampler over the shared
  tables) against remote draws (``CommunityTableActor.sample`` on each group's actor, one call a group),
  as latency per batch and draws per second.
The default draw mode (``sampler.table_draws``) is chosen from these figures (see BENCHMARKS.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from raysearch.bench.samplers import TARGET_ITEMS, _batches, _setting, interleaved

ROWS = (4096, 65_536)


def run(report: Callable[[str], Any] = print, n_items: int = TARGET_ITEMS, groups: tuple[int, ...] = (1, 2),
        reps: int = 60, seed: int = 0, quick: bool = False) -> list[dict[str, Any]]:
    """One row per (groups, rows a batch): local and remote latency and draws per second."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from raysearch.distributed.local_ray import init_ray
    from raysearch.distributed.table_actors import CommunityTableService, HostedICPNS

    if quick:
        n_items, reps = 10**4, 10
    started = not ray.is_initialized()
    if started:
        init_ray(num_cpus=2)
    train, _, communities, rng = _setting(n_items, seed)
    out = []
    report(f"table actors: {train.n_users} users x {n_items} items, {train.nnz} pairs, "
           f"{int(communities.max()) + 1} communities; batches of training rows, 1 negative a row; "
           f"median of {reps} interleaved repetitions")
    report(f"{'groups':>6} {'rows':>7} {'local us':>10} {'remote us':>10} {'local draws/s':>14} "
           f"{'remote draws/s':>15} {'remote/local':>13}")
    try:
        for n_groups in groups:
            service = CommunityTableService(n_groups)
            start = time.perf_counter()
            service.rebuild(train, communities, alpha=0.8)
            build_s = time.perf_counter() - start
            start = time.perf_counter()
            local = HostedICPNS(train, {"alpha": 0.8}, service.directory_name)
            fetch_s = time.perf_counter() - start
            remote = HostedICPNS(train, {"alpha": 0.8}, service.directory_name, draws="remote")
            for rows in ROWS:
                batches = _batches(train, rows, 8, rng)

                def drawer(sampler: HostedICPNS, batches=batches) -> Callable[[int], None]:
                    def draw(rep: int) -> None:
                        users, items = batches[rep % len(batches)]
                        sampler.sample(users, items, 1, rng=np.random.default_rng(rep))

                    return draw

                times = interleaved({"local": drawer(local), "remote": drawer(remote)}, reps)
                t_local, t_remote = float(np.median(times["local"])), float(np.median(times["remote"]))
                row = {"groups": n_groups, "rows": rows, "n_items": n_items, "build_publish_s": build_s,
                       "fetch_s": fetch_s, "table_bytes": local.table_nbytes,
                       "local_us_per_batch": t_local * 1e6, "remote_us_per_batch": t_remote * 1e6,
                       "local_draws_per_s": rows / t_local, "remote_draws_per_s": rows / t_remote,
                       "remote_over_local": t_remote / t_local}
                out.append(row)
                report(f"{n_groups:>6} {rows:>7} {row['local_us_per_batch']:>10.0f} {row['remote_us_per_batch']:>10.0f} "
                       f"{row['local_draws_per_s']:>14.3g} {row['remote_draws_per_s']:>15.3g} "
                       f"{row['remote_over_local']:>12.1f}x")
            report(f"       build + publish {build_s:.2f} s, a worker's fetch of the tables {fetch_s * 1e3:.0f} ms, "
                   f"tables {local.table_nbytes / 2**20:.1f} MB")
            service.shutdown()
    finally:
        if started:
            ray.shutdown()
    return out
