"""The actors hosting ICPNS's community tables: the same tables and distribution as one process, versions
picked up at an epoch's start, remote draws, stats for the dashboards."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from test_samplers_static import P_MIN, chi2_pvalue, icpns_reference, icpns_train

from raysearch.distributed.table_actors import CommunityTableActor, community_groups, group_tables
from raysearch.errors import ConfigError, SamplingError
from raysearch.samplers import make_sampler
from raysearch.samplers.alias import RaggedAliasTable
from raysearch.samplers.icpns import community_tables, in_community_tables


def assert_same_tables(a: RaggedAliasTable, b: RaggedAliasTable) -> None:
    for name in RaggedAliasTable.ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# --------------------------------------------------------------------------- pure pieces, no Ray
def test_community_groups_are_contiguous_balanced_and_never_empty():
    assert community_groups(8, 3) == [(0, 3), (3, 5), (5, 8)]  # linspace 0, 2.67, 5.33, 8 rounded
    assert community_groups(3, 5) == [(0, 1), (1, 2), (2, 3)]  # capped at one community a group
    assert community_groups(4, 1) == [(0, 4)]
    with pytest.raises(ConfigError, match="need >= 1 community and >= 1 group"):
        community_groups(4, 0)


def test_group_tables_concatenated_are_the_single_process_tables_array_for_array():
    train, communities = icpns_train()
    for smoothing in (0.0, 0.5):
        whole = in_community_tables(train, communities, 0.8, smoothing)
        parts = [group_tables(train, communities, lo, hi, 0.8, smoothing) for lo, hi in community_groups(3, 2)]
        assert [p.n_tables for p in parts] == [2, 1]
        assert_same_tables(RaggedAliasTable.concatenate(parts), whole)


def test_concatenate_shifts_offsets_and_aliases():
    a = RaggedAliasTable.from_segments(np.array([0, 2, 5]), np.array([1.0, 3.0, 1.0, 1.0, 2.0]))
    b = RaggedAliasTable.from_segments(np.array([0, 3]), np.array([5.0, 1.0, 2.0]), np.array([7, 8, 9]))
    both = RaggedAliasTable.concatenate([a, b])
    direct = RaggedAliasTable.from_segments(np.array([0, 2, 5, 8]), np.array([1.0, 3.0, 1.0, 1.0, 2.0, 5.0, 1.0, 2.0]),
                                            np.array([0, 1, 0, 1, 2, 7, 8, 9]))
    assert_same_tables(both, direct)
    assert both.offsets.tolist() == [0, 2, 5, 8] and both.alias[5:].min() >= 5  # b's aliases moved past a
    with pytest.raises(SamplingError, match="nothing to concatenate"):
        RaggedAliasTable.concatenate([])


def test_a_group_actor_draws_the_single_process_distribution_and_counts_them():
    # A plain instance: the same methods the Ray actor runs.
    train, communities = icpns_train()
    users, items = train.pairs()
    actor = CommunityTableActor(1, 3)  # communities 1 and 2: users 40..43
    stats = actor.build(0, (users, items, train.n_users, train.n_items), communities, 0.8, 0.0, 0.0, None)
    assert stats["community_users"] == [3, 1] and stats["support_sizes"] == [60, 2]
    for user in (40, 41, 42, 43):  # rejection, exact path, rejection, uniform fallback
        draws = actor.sample(0, np.full(20_000, user), 2, seed=user)
        assert chi2_pvalue(draws, icpns_reference(train, communities, user, 0.8)) > P_MIN, user
    assert actor.stats()["draws_served"] == 4 * 40_000 and actor.stats()["calls_served"] == 4
    with pytest.raises(SamplingError, match=r"a user of another group was sent here"):
        actor.sample(0, np.array([0]), 1, seed=0)
    with pytest.raises(SamplingError, match=r"asked for version 1, hosting 0"):
        actor.sample(1, np.array([40]), 1, seed=0)


# --------------------------------------------------------------------------- on Ray
@contextmanager
def table_service(n_groups: int, communities: np.ndarray, **params):
    """A ``CommunityTableService`` that published ``icpns_train()``'s tables as version 0; shut down after."""
    from raysearch.distributed.table_actors import CommunityTableService

    train, _ = icpns_train()
    service = CommunityTableService(n_groups=n_groups)
    try:
        assert service.rebuild(train, communities, alpha=0.8, **params) == 0
        yield service
    finally:
        service.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("global_mix", [0.0, 0.3])
def test_published_tables_equal_the_single_process_build_and_draw_its_distribution(ray_session, global_mix):
    from raysearch.distributed.table_actors import HostedICPNS

    train, communities = icpns_train()
    with table_service(2, communities, global_mix=global_mix) as service:
        local = HostedICPNS(train, {"alpha": 0.8, "global_mix": global_mix}, service.directory_name)
        remote = HostedICPNS(train, {"alpha": 0.8, "global_mix": global_mix}, service.directory_name, draws="remote")
        direct, _ = community_tables(train, communities, 0.8, global_mix=global_mix)
        assert_same_tables(local.tables, direct)
        assert not local.tables.cells.flags.writeable  # the object store's read-only arrays, used as they are
        single = make_sampler("icpns", train, communities=communities, alpha=0.8, global_mix=global_mix)
        rows = np.repeat(np.arange(44), 50)
        pos = np.array([train.row(u)[0] for u in rows])
        # Local draws: the single-process sampler's draws, the same stream.
        np.testing.assert_array_equal(local.sample(rows, pos, 3, rng=np.random.default_rng(1)),
                                      single.sample(rows, pos, 3, rng=np.random.default_rng(1)))
        # Remote draws: the same distribution (the actors draw from their own seeded streams).
        for user in (0, 40, 41, 43):
            draws = remote.sample(np.full(4000, user), np.full(4000, train.row(user)[0]), 5,
                                  rng=np.random.default_rng(user))
            ref = single.probabilities(communities[user])
            ref[train.row(user)] = 0.0
            if ref.sum() == 0:  # user 43 without global mix: community support all positives, uniform fallback
                ref = np.ones(train.n_items)
                ref[train.row(user)] = 0.0
            assert chi2_pvalue(draws, ref) > P_MIN, user
        stats = service.stats()
        assert stats["version"] == 0 and [g["communities"] for g in stats["groups"]] == [[0, 2], [2, 3]]
        assert sum(g["draws_served"] for g in stats["groups"]) == 4 * 4000 * 5
        assert [g["community_users"] for g in stats["groups"]] == [[40, 3], [1]]
        assert stats["table_bytes"] == direct.nbytes


@pytest.mark.ray
def test_recomputed_communities_are_a_new_version_picked_up_at_the_next_epoch(ray_session):
    from raysearch.distributed.table_actors import HostedICPNS

    train, communities = icpns_train()
    with table_service(2, communities) as service:
        sampler = HostedICPNS(train, {"alpha": 0.8}, service.directory_name)
        merged = np.minimum(communities, 1)  # communities 1 and 2 merged: 2 communities, one a group
        assert service.rebuild(train, merged, alpha=0.8) == 1
        assert sampler.version == 0 and sampler.n_communities == 3  # mid-epoch: the old tables still serve
        sampler.start_epoch(1, np.random.default_rng(0))
        assert sampler.version == 1 and sampler.n_communities == 2
        assert_same_tables(sampler.tables, community_tables(train, merged, 0.8)[0])
        assert not sampler.refresh()  # nothing new
        assert [g["communities"] for g in service.stats()["groups"]] == [[0, 1], [1, 2]]


@pytest.mark.ray
def test_hosted_sampler_rejects_an_unknown_draw_mode(ray_session):
    from raysearch.distributed.table_actors import HostedICPNS

    train, communities = icpns_train()
    message = "sampler.table_draws: must be one of local, remote, got 'nearby'"
    with table_service(1, communities) as service, pytest.raises(ConfigError, match=message):
        HostedICPNS(train, {"alpha": 0.8}, service.directory_name, draws="nearby")
