"""Sharded embedding tables: lookups and gradients equal a dense table's on the same batch (2 gloo ranks)."""

import numpy as np
import torch

from raysearch.distributed.process_group import run_in_process_group
from raysearch.distributed.sharded import ShardedEmbeddings, local_rows, owned_ids
from raysearch.models.embeddings import DenseEmbeddings

N_USERS, N_ITEMS, DIM = 11, 7, 3


def _dense_reference(ids_per_rank):
    """Dense forward/backward of the same loss summed over all ranks' batches."""
    torch.manual_seed(0)
    dense = DenseEmbeddings(N_USERS, N_ITEMS, DIM)
    dense.initialise(torch.nn.init.normal_)
    outs = []
    total = 0
    for users, items in ids_per_rank:
        u = dense.users(torch.tensor(users))
        i = dense.items(torch.tensor(items))
        outs.append((u.detach().numpy(), i.detach().numpy()))
        total = total + (u * torch.arange(1, DIM + 1)).sum() + (i ** 2).sum()
    table_loss = (dense.user_table() * 3).sum() + dense.item_table().pow(3).sum()
    (total + table_loss * len(ids_per_rank)).backward()
    return outs, dense.user_weight.grad.numpy(), dense.item_weight.grad.numpy()


def _sharded_worker(rank, world, ids_per_rank):
    torch.manual_seed(0)
    tables = ShardedEmbeddings(N_USERS, N_ITEMS, DIM)
    tables.initialise(torch.nn.init.normal_)
    users, items = ids_per_rank[rank]
    u = tables.users(torch.tensor(users))
    i = tables.items(torch.tensor(items))
    loss = (u * torch.arange(1, DIM + 1)).sum() + (i ** 2).sum()
    loss = loss + (tables.user_table() * 3).sum() + tables.item_table().pow(3).sum()
    loss.backward()
    return (u.detach().numpy(), i.detach().numpy(), tables.user_weight.grad.numpy(),
            tables.item_weight.grad.numpy(), tables.stats.bytes_sent)


def test_local_rows_partition_the_table():
    for n in (0, 1, 7, 11):
        for world in (1, 2, 3):
            ids = np.concatenate([owned_ids(n, r, world) for r in range(world)])
            assert np.array_equal(np.sort(ids), np.arange(n))
            assert sum(local_rows(n, r, world) for r in range(world)) == n


def test_sharded_lookup_and_gradient_equal_dense():
    ids_per_rank = [([0, 3, 3, 10, 5], [6, 0, 1]), ([1, 1, 4], [2, 2, 6, 5])]  # repeated ids on purpose
    outs, du, di = _dense_reference(ids_per_rank)
    results = run_in_process_group(_sharded_worker, 2, ids_per_rank)
    for rank, (u, i, gu, gi, sent) in enumerate(results):
        np.testing.assert_allclose(u, outs[rank][0], rtol=1e-6)
        np.testing.assert_allclose(i, outs[rank][1], rtol=1e-6)
        np.testing.assert_allclose(gu, du[owned_ids(N_USERS, rank, 2)], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gi, di[owned_ids(N_ITEMS, rank, 2)], rtol=1e-5, atol=1e-6)
        assert sent > 0


def test_one_process_sharded_equals_dense():
    ids = [([0, 3, 3, 10], [6, 0])]
    outs, du, di = _dense_reference(ids)
    (u, i, gu, gi, sent), = run_in_process_group(_sharded_worker, 1, ids)
    assert sent == 0  # nothing leaves a lone process
    np.testing.assert_allclose(u, outs[0][0], rtol=1e-6)
    np.testing.assert_allclose(gu, du, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gi, di, rtol=1e-5, atol=1e-6)
