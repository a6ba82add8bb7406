"""Row-sharded embedding tables over a torch.distributed process group.

Row ``r`` of a table with ``n`` rows lives on rank ``r % W`` at local index ``r // W`` (round-robin, so
every rank holds ``ceil`` or ``floor`` of ``n / W`` rows and contiguous id ranges spread evenly). Each
rank keeps only its rows as parameters, so its optimiser state covers only them: parameter + optimiser
bytes per rank are proportional to 1 / W.

Two access paths, both differentiable:

* ``users(ids)`` / ``items(ids)`` (MF-like backbones): the requested ids are de-duplicated, sent to
  their owners with one ``all_to_all`` (ids) and the rows come back with a second one; the backward pass
  returns each row's gradient to its owner with one ``all_to_all`` and accumulates it there.
  Communication per call: 8 bytes per distinct id and ``4 * dim`` bytes per distinct row, each way.
  With ``sparse_grad`` (row-sparse optimisers) the owner's gradient is a sparse COO tensor of the rows
  any rank looked up (``row_sparse_gradient``), so its optimiser updates only its rows the step touched.
* ``user_table()`` / ``item_table()`` / ``gather_nodes(rows)`` (full ranking, clustering, and graph
  propagation): the shards are ``all_gather``-ed into the whole table; the backward pass is a
  ``reduce_scatter`` (every rank's gradient summed, each owner keeping its rows).
  Communication per call: ``4 * dim * n`` bytes gathered, the same again for gradients.

Graph backbones propagate row-partitioned: rank r holds the rows of the normalised adjacency for its own
nodes (its users and items) and computes only those rows of every layer, ``X_r^(k+1) = A[r, :] X^(k)``,
after one ``gather_nodes`` of the previous layer. Per step and L layers: L + 1 all-gathers of the
(n_users + n_items, d) node table forward (the inputs of the L layers and the final layer mean) and as
many reduce-scatters backward, i.e. 2 (L + 1) * 4 * d * (n_users + n_items) * (W - 1) / W bytes per rank;
the sparse products are split W ways.

With one process (W = 1) both paths reduce to plain indexing of a local parameter.
Every collective must be entered by all ranks in the same order: callers issue the same sequence of
lookups on every rank (the trainer runs the same number of steps per epoch on every rank).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from raysearch.models.embeddings import EmbeddingTables, row_sparse_gradient


def local_rows(n: int, rank: int, world: int) -> int:
    """Number of rows of an ``n``-row table held by ``rank``."""
    return max(0, (n - rank + world - 1) // world)


def owned_ids(n: int, rank: int, world: int) -> np.ndarray:
    """int64: the global ids of the rows ``rank`` holds, in local order."""
    return np.arange(rank, n, world, dtype=np.int64)


class CommStats:
    """Bytes this rank sends to other ranks through the tables' collectives (for the scale benchmarks),
    counted as the ring algorithms move them: all-gather and reduce-scatter (W - 1) blocks, all-to-all
    the parts addressed to other ranks."""

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.calls = 0

    def add(self, nbytes: int) -> None:
        self.bytes_sent += int(nbytes)
        self.calls += 1


class _FetchRows(torch.autograd.Function):
    """Rows of a sharded table by global id: forward two all_to_all's, backward one."""

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor, world: int, stats: CommStats,  # noqa: D102
                sparse_grad: bool = False) -> Tensor:
        uniq, inverse = torch.unique(ids, return_inverse=True)
        owner = uniq % world
        order = torch.argsort(owner, stable=True)
        send_ids = uniq[order]
        send_counts = torch.bincount(owner, minlength=world)
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts)
        send_split, recv_split = send_counts.tolist(), recv_counts.tolist()
        recv_ids = torch.empty(sum(recv_split), dtype=ids.dtype)
        dist.all_to_all_single(recv_ids, send_ids, recv_split, send_split)
        local_index = recv_ids // world
        rows = weight.detach()[local_index]
        fetched = torch.empty(send_ids.numel(), weight.shape[1], dtype=weight.dtype)
        dist.all_to_all_single(fetched, rows.contiguous(), send_split, recv_split)
        rank = dist.get_rank()
        # bytes that leave this rank: ids to other owners, rows to other requesters
        row_bytes = weight.shape[1] * weight.element_size()
        stats.add(8 * (world - 1) + 8 * (send_ids.numel() - send_split[rank])
                  + row_bytes * (local_index.numel() - recv_split[rank]))
        uniq_rows = torch.empty_like(fetched)
        uniq_rows[order] = fetched
        ctx.save_for_backward(local_index, order, inverse)
        ctx.splits = (send_split, recv_split)
        ctx.shape = weight.shape
        ctx.n_uniq = uniq.numel()
        ctx.stats = stats
        ctx.sparse_grad = sparse_grad
        return uniq_rows[inverse]

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        local_index, order, inverse = ctx.saved_tensors
        send_split, recv_split = ctx.splits
        grad_uniq = torch.zeros(ctx.n_uniq, grad.shape[-1], dtype=grad.dtype)
        grad_uniq.index_add_(0, inverse, grad.contiguous())
        received = torch.empty(local_index.numel(), grad.shape[-1], dtype=grad.dtype)
        dist.all_to_all_single(received, grad_uniq[order].contiguous(), recv_split, send_split)
        rank = dist.get_rank()
        ctx.stats.add(grad.shape[-1] * grad.element_size() * (ctx.n_uniq - send_split[rank]))
        if ctx.sparse_grad:  # several ranks may have asked for the same row: summed per row
            return row_sparse_gradient(local_index, received, ctx.shape), None, None, None, None
        grad_weight = torch.zeros(ctx.shape, dtype=grad.dtype)
        grad_weight.index_add_(0, local_index, received)
        return grad_weight, None, None, None, None


class _GatherTable(torch.autograd.Function):
    """The whole table from its shards: forward all_gather, backward reduce_scatter."""

    @staticmethod
    def forward(ctx, weight: Tensor, n: int, world: int, stats: CommStats) -> Tensor:  # noqa: D102
        per_rank = -(-n // world)
        padded = torch.zeros(per_rank, weight.shape[1], dtype=weight.dtype)
        padded[: weight.shape[0]] = weight.detach()
        gathered = torch.empty(world * per_rank, weight.shape[1], dtype=weight.dtype)
        dist.all_gather_single(gathered, padded)
        # a ring all-gather sends this rank's block to each of the W - 1 others (in W - 1 hops)
        stats.add((world - 1) * padded.numel() * padded.element_size())
        # gathered[r * per_rank + j] is global row j * world + r: reorder to global order.
        table = gathered.view(world, per_rank, -1).transpose(0, 1).reshape(world * per_rank, -1)[:n]
        ctx.n, ctx.world, ctx.per_rank, ctx.local = n, world, per_rank, weight.shape[0]
        ctx.stats = stats
        return table

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        n, world, per_rank = ctx.n, ctx.world, ctx.per_rank
        full = torch.zeros(world * per_rank, grad.shape[1], dtype=grad.dtype)
        full[:n] = grad
        # back to rank-major order: block r holds the rows rank r owns
        by_rank = full.view(per_rank, world, -1).transpose(0, 1).reshape(world * per_rank, -1).contiguous()
        mine = torch.empty(per_rank, grad.shape[1], dtype=grad.dtype)
        dist.reduce_scatter_single(mine, by_rank)
        # a ring reduce-scatter sends (W - 1) / W of the full gradient from each rank
        ctx.stats.add((world - 1) * mine.numel() * mine.element_size())
        return mine[: ctx.local], None, None, None


class ShardedEmbeddings(EmbeddingTables):
    """User and item tables split row-wise over the ranks of the default process group."""

    def __init__(self, n_users: int, n_items: int, dim: int, rank: int | None = None, world: int | None = None):
        super().__init__()
        self.rank = dist.get_rank() if rank is None else rank
        self.world = dist.get_world_size() if world is None else world
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_weight = nn.Parameter(torch.empty(local_rows(n_users, self.rank, self.world), dim))
        self.item_weight = nn.Parameter(torch.empty(local_rows(n_items, self.rank, self.world), dim))
        self.stats = CommStats()

    def users(self, ids: Tensor) -> Tensor:
        return _FetchRows.apply(self.user_weight, ids.reshape(-1), self.world, self.stats,
                                self.sparse_grad).view(*ids.shape, -1)

    def items(self, ids: Tensor) -> Tensor:
        return _FetchRows.apply(self.item_weight, ids.reshape(-1), self.world, self.stats,
                                self.sparse_grad).view(*ids.shape, -1)

    def user_table(self) -> Tensor:
        return _GatherTable.apply(self.user_weight, self.n_users, self.world, self.stats)

    def item_table(self) -> Tensor:
        return _GatherTable.apply(self.item_weight, self.n_items, self.world, self.stats)

    @torch.no_grad()
    def initialise(self, init: Callable[[Tensor], object], seed_offset: int = 0) -> None:
        """Initialise as a dense table would be, then keep this rank's rows.

        Every rank draws the whole table from the same torch seed and keeps its rows, so W ranks start
        from exactly the weights of one process (a one-off O(n * dim) cost at start-up).
        """
        for weight, n in ((self.user_weight, self.n_users), (self.item_weight, self.n_items)):
            full = torch.empty(n, self.dim)
            init(full)
            weight.copy_(full[torch.from_numpy(owned_ids(n, self.rank, self.world))])

    def local_node_ids(self) -> np.ndarray:
        return np.concatenate([owned_ids(self.n_users, self.rank, self.world),
                               self.n_users + owned_ids(self.n_items, self.rank, self.world)])

    def local_nodes(self) -> Tensor:
        return torch.cat([self.user_weight, self.item_weight], dim=0)

    def gather_nodes(self, local: Tensor) -> Tensor:
        n_local_users = self.user_weight.shape[0]
        users = _GatherTable.apply(local[:n_local_users], self.n_users, self.world, self.stats)
        items = _GatherTable.apply(local[n_local_users:], self.n_items, self.world, self.stats)
        return torch.cat([users, items], dim=0)

    def param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in (self.user_weight, self.item_weight))
