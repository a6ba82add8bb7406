"""Ray actors that host ICPNS's per-community alias tables for the workers of a distributed run.

After clustering, ``CommunityTableService.rebuild`` has one ``CommunityTableActor`` per group of
communities (contiguous id ranges, ``community_groups``) build its communities' tables from the training
split, then a ``TableDirectory`` actor concatenates the groups' tables (plus the global table when
``global_mix`` > 0) into the one table set a sampler reads and publishes it read-only through the object
store under a version number. Workers hold a ``HostedICPNS`` sampler: at the start of every epoch it
asks the directory for the current version and, when it changed (communities recomputed during
fine-tuning, ``sampler.recluster_every``: rank 0 publishes through ``HostedICPNS.use_communities``, every
rank waits at a barrier, then every rank's next ``start_epoch`` picks the version up), fetches the
new tables: ``ray.get`` maps them zero-copy from the node's shared memory, so W workers on a node hold
one copy of the tables between them, not W.

Draws are local by default (``draws="local"``: the worker's own rejection sampler over the shared
tables, no communication). ``draws="remote"`` sends each batch's rows to the actors of their users'
groups (``CommunityTableActor.sample``), for tables too large to map on every node; ``raysearch bench
tables`` measures both designs. A table is built on its own, so the concatenated set is
array for array the single-process ``community_tables``: local draws follow exactly the single-process
distribution; remote draws follow it too (the same tables and rejection of the user's positives) with a
different random stream (the actor draws from a seed the worker's generator gives).

The actors take no CPU reservation (``num_cpus=0``): they work between epochs (builds) or while the
caller waits on them (remote draws), so they must not hold back the CPUs Ray Train's workers reserve.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, SamplingError
from raysearch.metrics import record_table_draws
from raysearch.samplers.alias import RaggedAliasTable
from raysearch.samplers.base import Sampler, ScoreFn
from raysearch.samplers.exclusion import Complement, ExcludingTables
from raysearch.samplers.icpns import (
    ICPNS,
    community_ids,
    global_table,
    in_community_tables,
    mixture_components,
)
from raysearch.train.context import TABLE_DRAWS


def community_groups(n_communities: int, n_groups: int) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) ranges of community ids, one a group, sizes differing by at most one.

    ``n_groups`` is capped at ``n_communities`` (no empty group)."""
    if n_communities < 1 or n_groups < 1:
        raise ConfigError(f"community groups: need >= 1 community and >= 1 group, got {n_communities} and {n_groups}")
    bounds = np.linspace(0, n_communities, min(n_groups, n_communities) + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def group_split(train: Interactions, communities: np.ndarray, lo: int, hi: int) -> tuple[Interactions, np.ndarray]:
    """(the training pairs of the users of communities [lo, hi), in the full (n_users, n_items) shape;
    int64 (n_users,) local community ids 0..hi-lo-1, users outside the group clipped in: they have no pairs)."""
    users, items = train.pairs()
    community = communities[users]
    keep = (community >= lo) & (community < hi)
    sub = Interactions.from_pairs(users[keep], items[keep], train.n_users, train.n_items)
    return sub, np.clip(communities - lo, 0, hi - lo - 1)


def group_tables(train: Interactions, communities: np.ndarray, lo: int, hi: int, alpha: float,
                 smoothing: float = 0.0) -> RaggedAliasTable:
    """Tables of communities lo..hi-1 (hi - lo tables): tables lo..hi-1 of ``in_community_tables``."""
    sub, local = group_split(train, communities, lo, hi)
    return in_community_tables(sub, local, alpha, smoothing, n_communities=hi - lo)


class CommunityTableActor:
    """Hosts the tables of one group of communities [lo, hi): builds them, serves draws, reports stats.

    Used as a Ray actor (``ray.remote(num_cpus=0)(CommunityTableActor)``); the methods work the same on a
    plain instance (the tests call both).
    """

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = int(lo), int(hi)
        self.version = -1
        self.draws_served = 0
        self.calls_served = 0
        self._tables: RaggedAliasTable | None = None
        self._sampler: ExcludingTables | None = None
        self._communities: np.ndarray | None = None
        self._published: Any = None

    def build(self, version: int, pairs: tuple[np.ndarray, np.ndarray, int, int], communities: np.ndarray,
              alpha: float, smoothing: float, global_mix: float,
              global_arrays: dict[str, np.ndarray] | None) -> dict[str, Any]:
        """Build the group's tables for ``version``. ``pairs``: (users int64 (nnz,), items int64 (nnz,),
        n_users, n_items) of the training split; ``global_arrays``: the global table's arrays when mixed.
        Returns ``stats()``."""
        users, items, n_users, n_items = pairs
        train = Interactions.from_pairs(users, items, n_users, n_items)
        communities = np.asarray(communities, dtype=np.int64)
        sub, local = group_split(train, communities, self.lo, self.hi)
        size = self.hi - self.lo
        own = in_community_tables(sub, local, alpha, smoothing, n_communities=size)
        tables = own
        if global_mix > 0:
            tables = RaggedAliasTable.concatenate([own, RaggedAliasTable.from_arrays(global_arrays)])
        self._sampler = ExcludingTables(Complement(sub), tables,
                                        mixture_components(local, global_mix, n_communities=size))
        self._tables, self._communities, self.version = own, communities, int(version)
        self._published = None
        return self.stats()

    def arrays(self) -> list[Any]:
        """[an ObjectRef to the group's table arrays] (``RaggedAliasTable.to_arrays``), put once a version
        (wrapped in a list so that the caller receives the reference, not the arrays)."""
        import ray

        if self._tables is None:
            raise SamplingError(f"community tables [{self.lo}, {self.hi}): not built yet")
        if self._published is None:
            self._published = ray.put(self._tables.to_arrays())
        return [self._published]

    def sample(self, version: int, users: np.ndarray, k: int, seed: int) -> np.ndarray:
        """int64 (R, k): ICPNS negatives for ``users`` (int64 (R,), all in this group), drawn from the
        tables of ``version`` with the users' positives rejected, from ``numpy.random.default_rng(seed)``."""
        if self._sampler is None or version != self.version:
            raise SamplingError(f"community tables [{self.lo}, {self.hi}): asked for version {version}, "
                                f"hosting {self.version}")
        users = np.asarray(users, dtype=np.int64)
        community = self._communities[users]
        if users.size and (community.min() < self.lo or community.max() >= self.hi):
            raise SamplingError(f"community tables [{self.lo}, {self.hi}): a user of another group was sent here")
        rows = users if k == 1 else np.repeat(users, k)
        out = self._sampler.draw(rows, np.random.default_rng(seed)).reshape(users.size, k)
        self.draws_served += int(rows.size)
        self.calls_served += 1
        record_table_draws(f"communities-{self.lo}-{self.hi}", int(rows.size))  # the Grafana dashboard's panel
        return out

    def stats(self) -> dict[str, Any]:
        """What the dashboards show: version, the group's communities, their sizes, bytes, draws served."""
        built = self._tables is not None
        sizes = (np.bincount(self._communities, minlength=self.hi)[self.lo:self.hi] if built
                 else np.zeros(self.hi - self.lo, dtype=np.int64))
        return {
            "version": self.version,
            "communities": [self.lo, self.hi],
            "community_users": sizes.tolist(),
            "support_sizes": self._tables.sizes.tolist() if built else [],
            "table_bytes": self._tables.nbytes if built else 0,
            "draws_served": self.draws_served,
            "calls_served": self.calls_served,
        }


class TableDirectory:
    """Holds the published version: the concatenated table set, the communities, the group actors.

    Used as a Ray actor; ``current()`` is what workers poll once an epoch."""

    def __init__(self):
        self.version = -1
        self._entry: dict[str, Any] = {}

    def publish(self, version: int, communities_ref: list[Any], group_refs: list[Any], global_ref: list[Any],
                groups: list[tuple[int, int]], actors: list[Any]) -> int:
        """Concatenate the groups' tables (``group_refs``: ObjectRefs in community order, then the global
        table's in ``global_ref`` if any) into one read-only table set and make it ``version``;
        ``communities_ref``: [the ObjectRef of the int64 (n_users,) assignment], kept as it is."""
        import ray

        parts = [RaggedAliasTable.from_arrays(a) for a in ray.get(list(group_refs) + list(global_ref))]
        tables = RaggedAliasTable.concatenate(parts)
        self._entry = {
            "version": int(version),
            "tables": [ray.put(tables.to_arrays())],
            "communities": list(communities_ref),
            "groups": [tuple(g) for g in groups],
            "actors": list(actors),
            "table_bytes": tables.nbytes,
        }
        self.version = int(version)
        return self.version

    def current_version(self) -> int:
        return self.version

    def current(self) -> dict[str, Any]:
        """The published entry: version, [tables ref], [communities ref], groups, group actors, bytes."""
        if self.version < 0:
            raise SamplingError("community tables: nothing published yet")
        return self._entry

    def stats(self) -> dict[str, Any]:
        """The directory's version and bytes, and every group actor's ``stats()``."""
        import ray

        if self.version < 0:
            return {"version": -1, "groups": []}
        return {"version": self.version, "table_bytes": self._entry["table_bytes"],
                "groups": ray.get([a.stats.remote() for a in self._entry["actors"]])}


class CommunityTableService:
    """The actors of one run, on the process that owns them (rank 0 of a distributed run, or a driver).

    ``directory_name`` names the ``TableDirectory`` actor (in the job's namespace) that workers look up.
    The actors live as long as their owner process (Ray's fate sharing): a restarted worker group builds
    new ones. ``shutdown()`` ends them.
    """

    def __init__(self, n_groups: int = 1, name: str | None = None):
        import ray

        if n_groups < 1:
            raise ConfigError(f"sampler.table_actors: must be >= 1, got {n_groups}")
        self.n_groups = int(n_groups)
        self.directory_name = name or f"raysearch-icpns-tables-{uuid.uuid4().hex[:12]}"
        self.directory = ray.remote(num_cpus=0)(TableDirectory).options(name=self.directory_name).remote()
        self.actors: list[Any] = []
        self.groups: list[tuple[int, int]] = []
        self.version = -1

    def rebuild(self, train: Interactions, communities: np.ndarray, alpha: float, smoothing: float = 0.0,
                global_mix: float = 0.0) -> int:
        """Build and publish the tables of ``communities`` (int64 (n_users,)) as the next version."""
        import ray

        communities = community_ids(communities)
        k = int(communities.max()) + 1
        groups = community_groups(k, self.n_groups)
        if groups != self.groups:  # a new community count regroups: new actors
            for actor in self.actors:
                ray.kill(actor)
            actor_cls = ray.remote(num_cpus=0)(CommunityTableActor)
            self.actors = [actor_cls.remote(lo, hi) for lo, hi in groups]
            self.groups = groups
        users, items = train.pairs()
        pairs = ray.put((users, items, train.n_users, train.n_items))
        comm_ref = ray.put(communities)
        global_arrays = global_table(train, alpha, smoothing).to_arrays() if global_mix > 0 else None
        global_ref = [ray.put(global_arrays)] if global_arrays is not None else []
        version = self.version + 1
        ray.get([a.build.remote(version, pairs, comm_ref, alpha, smoothing, global_mix,
                                global_ref[0] if global_ref else None) for a in self.actors])
        group_refs = [r[0] for r in ray.get([a.arrays.remote() for a in self.actors])]
        ray.get(self.directory.publish.remote(version, [comm_ref], group_refs, global_ref, groups, self.actors))
        self.version = version
        return version

    def stats(self) -> dict[str, Any]:
        import ray

        return ray.get(self.directory.stats.remote())

    def shutdown(self) -> None:
        import ray

        for actor in [*self.actors, self.directory]:
            ray.kill(actor)
        self.actors = []


def host_icpns(context: Any, train: Interactions, communities: np.ndarray, sampler_params: dict[str, Any],
               n_groups: int, draws: str) -> HostedICPNS:
    """On every rank of a Ray Train run: rank 0 starts the table actors and publishes version 0, then
    every rank makes its ``HostedICPNS``. Rank 0's sampler keeps the service (the actors live while it does)."""
    service = None
    if context.is_main:
        p = ICPNS.validate_params({**sampler_params, "communities": communities})
        service = CommunityTableService(n_groups)
        service.rebuild(train, communities, p.alpha, p.smoothing, p.global_mix)
    name = context.broadcast_object(service.directory_name if service is not None else None)
    sampler = HostedICPNS(train, sampler_params, name, draws)
    sampler.service = service
    return sampler


class HostedICPNS(Sampler):
    """ICPNS whose tables live with the run's table actors; picks up a new version at an epoch's start.

    ``params``: ICPNS's parameters without ``communities`` (the directory publishes them).
    ``directory``: the ``TableDirectory`` actor handle (or its name). ``draws``: "local" (draw from the
    shared read-only tables in this process) or "remote" (the group actors draw).
    """

    name = "icpns"
    has_log_q = True
    batch_independent = True  # ICPNS's draws (remote ones too: a function of the call's rows and generator)

    def __init__(self, train: Any, params: Any, directory: Any, draws: str = "local", **kwargs: Any):
        import ray

        if draws not in TABLE_DRAWS:
            raise ConfigError(f"sampler.table_draws: must be one of {', '.join(TABLE_DRAWS)}, got {draws!r}")
        self.directory = ray.get_actor(directory) if isinstance(directory, str) else directory
        self.draws = draws
        self.sampler_params = {k: v for k, v in dict(params or {}).items() if k != "communities"}
        self.version = -1
        self.inner: ICPNS | None = None
        self._groups: list[tuple[int, int]] = []
        self._actors: list[Any] = []
        self.service: CommunityTableService | None = None  # set on the rank that owns the actors
        super().__init__(train, None, **kwargs)
        self.refresh()

    def refresh(self) -> bool:
        """Fetch the published tables if their version is new; True when it was."""
        import ray

        if ray.get(self.directory.current_version.remote()) == self.version:
            return False
        entry = ray.get(self.directory.current.remote())
        communities, arrays = ray.get([entry["communities"][0], entry["tables"][0]])
        tables = RaggedAliasTable.from_arrays(arrays)
        self.inner = ICPNS(self.train, {"communities": communities, **self.sampler_params}, tables=tables,
                           complement=self.complement)
        self.params = self.inner.params
        self.version = int(entry["version"])
        self._groups, self._actors = entry["groups"], entry["actors"]
        self._group_of = np.repeat(np.arange(len(self._groups)), [hi - lo for lo, hi in self._groups])
        return True

    def use_communities(self, communities: np.ndarray, membership: tuple[Any, Any] | None = None) -> int | None:
        """Publish the tables of the int (n_users,) assignment ``communities`` as the next version, from
        the rank that owns the actors: every rank draws from them once its next ``start_epoch``
        (``refresh``) sees the new version, so the caller must make every rank wait until this returns
        (``sampler.recluster_every``: a barrier of the training context). ``membership``: soft membership's
        (member_ids, member_weights), the same on every rank (not published: every rank is given them).
        Returns the version published (None on a rank without the actors)."""
        if membership is not None:
            self.sampler_params.update(member_ids=membership[0], member_weights=membership[1])
        if self.service is None:
            return None
        p = self.inner.params
        return self.service.rebuild(self.train, communities, p.alpha, p.smoothing, p.global_mix)

    def table_stats(self) -> dict[str, Any]:
        """The directory's and every group actor's stats (``TableDirectory.stats``), plus the draw mode."""
        import ray

        return {**ray.get(self.directory.stats.remote()), "draws": self.draws}

    # ----------------------------------------------------------------- forwarded to the tables
    @property
    def communities(self) -> np.ndarray:
        return self.inner.communities

    @property
    def n_communities(self) -> int:
        return self.inner.n_communities

    @property
    def tables(self) -> RaggedAliasTable:
        return self.inner.tables

    @property
    def table_nbytes(self) -> int:
        return self.inner.table_nbytes

    def probabilities(self, community: int) -> np.ndarray:
        return self.inner.probabilities(community)

    def acceptance(self) -> np.ndarray:
        return self.inner.acceptance()

    # ----------------------------------------------------------------- the contract
    def start_epoch(self, epoch: int, rng: Any) -> None:
        self.refresh()

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        # Local and remote draws follow the published tables' law, which this process holds read-only.
        return self.inner._log_q(users, pos_items, negatives)

    def _sample(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                score_fn: ScoreFn | None) -> np.ndarray:
        if self.draws == "local":
            return self.inner._sample(users, pos_items, k, rng, score_fn)
        import ray

        group = self._group_of[self.inner.communities[users]]
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(len(self._groups) + 1))
        seeds = rng.integers(0, 2**63, len(self._groups))
        calls = {g: self._actors[g].sample.remote(self.version, users[order[bounds[g]:bounds[g + 1]]], k,
                                                  int(seeds[g]))
                 for g in range(len(self._groups)) if bounds[g + 1] > bounds[g]}
        out = np.empty((users.size, k), dtype=np.int64)
        for g, part in zip(calls, ray.get(list(calls.values())), strict=True):
            out[order[bounds[g]:bounds[g + 1]]] = part
        return out
