"""Layer-0 embedding tables of users and items, behind one small interface.

Models never touch ``nn.Embedding`` directly: they ask ``tables.users(ids)`` / ``tables.items(ids)`` for
rows and ``tables.user_table()`` / ``tables.item_table()`` for whole tables (graph propagation, full
ranking). ``DenseEmbeddings`` keeps both tables in this process; the distributed package provides a
row-sharded implementation with the same interface.

Row-sparse gradients (``sparse_grad = True``, set by the trainer for ``trainer.optimizer=sparse_adam`` or
``rowwise_adagrad``): a lookup by id then gives its table a gradient that holds only the looked-up rows,
a coalesced sparse COO tensor (``row_sparse_gradient``), instead of a whole-table dense one, so that
backward and the optimiser's step cost O(rows a step touches), not O(rows of the table). Whole tables
(``user_table()``, ``local_nodes()``) keep dense gradients: a model that reads them in training is not
row-sparse (the trainer refuses those optimisers for models that propagate).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn


def row_sparse_gradient(ids: Tensor, grad: Tensor, shape: torch.Size) -> Tensor:
    """The gradient of a table of ``shape`` (n, d) w.r.t. its rows looked up at ``ids`` (m,), given the
    gradient ``grad`` (m, d) of those rows: a coalesced sparse COO tensor with one row per distinct id
    (sorted), the rows of repeated ids summed."""
    rows, inverse = torch.unique(ids, return_inverse=True)
    values = grad.new_zeros(rows.numel(), grad.shape[-1]).index_add_(0, inverse, grad)
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, shape, is_coalesced=True, check_invariants=False)


class _RowLookup(torch.autograd.Function):
    """``weight[ids]`` for 1-d ``ids`` whose backward is ``row_sparse_gradient`` (not a dense (n, d) tensor)."""

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(ids)
        ctx.shape = weight.shape
        return weight.index_select(0, ids)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        (ids,) = ctx.saved_tensors
        return row_sparse_gradient(ids, grad.contiguous(), ctx.shape), None


def lookup_rows(weight: Tensor, ids: Tensor, sparse_grad: bool) -> Tensor:
    """``weight``'s rows at ``ids`` (any shape): ids.shape + (d,); ``sparse_grad``: a row-sparse gradient."""
    if not sparse_grad:
        return weight[ids]
    return _RowLookup.apply(weight, ids.reshape(-1)).view(*ids.shape, weight.shape[1])


class EmbeddingTables(nn.Module):
    """Interface: user/item rows by id and whole tables, (n, dim) float32."""

    n_users: int
    n_items: int
    dim: int
    # Lookups by id give the tables row-sparse gradients (sparse COO, coalesced); whole tables stay dense.
    sparse_grad: bool = False

    def users(self, ids: Tensor) -> Tensor:
        raise NotImplementedError

    def items(self, ids: Tensor) -> Tensor:
        raise NotImplementedError

    def user_table(self) -> Tensor:
        raise NotImplementedError

    def item_table(self) -> Tensor:
        raise NotImplementedError

    def initialise(self, init: Callable[[Tensor], object], seed_offset: int = 0) -> None:
        """Apply an in-place ``torch.nn.init`` function to both tables."""
        raise NotImplementedError

    # Graph backbones work on "nodes": users then items, (n_users + n_items) rows in global order.
    def local_node_ids(self) -> np.ndarray:
        """int64: global node ids (users 0..U-1, items U..U+I-1) of this process's rows, in local order."""
        raise NotImplementedError

    def local_nodes(self) -> Tensor:
        """This process's layer-0 node rows (len(local_node_ids()), dim)."""
        raise NotImplementedError

    def gather_nodes(self, local: Tensor) -> Tensor:
        """All processes' node rows (n_users + n_items, d) in global order, from each one's ``local``
        rows (differentiable: the gradient of every row returns to the process that owns it)."""
        raise NotImplementedError


class DenseEmbeddings(EmbeddingTables):
    """Both tables whole in this process: ``user_weight`` (n_users, dim), ``item_weight`` (n_items, dim)."""

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_weight = nn.Parameter(torch.empty(n_users, dim))
        self.item_weight = nn.Parameter(torch.empty(n_items, dim))

    def users(self, ids: Tensor) -> Tensor:
        return lookup_rows(self.user_weight, ids, self.sparse_grad)

    def items(self, ids: Tensor) -> Tensor:
        return lookup_rows(self.item_weight, ids, self.sparse_grad)

    def user_table(self) -> Tensor:
        return self.user_weight

    def item_table(self) -> Tensor:
        return self.item_weight

    @torch.no_grad()
    def initialise(self, init: Callable[[Tensor], object], seed_offset: int = 0) -> None:
        init(self.user_weight)
        init(self.item_weight)

    def local_node_ids(self) -> np.ndarray:
        return np.arange(self.n_users + self.n_items, dtype=np.int64)

    def local_nodes(self) -> Tensor:
        return torch.cat([self.user_weight, self.item_weight], dim=0)

    def gather_nodes(self, local: Tensor) -> Tensor:
        return local
