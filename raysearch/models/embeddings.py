"""Layer-0 embedding tables of users and items, behind one small interface.

Models never touch ``nn.Embedding`` directly: they ask ``tables.users(ids)`` / ``tables.items(ids)`` for
rows and ``tables.user_table()`` / ``tables.item_table()`` for whole tables (graph propagation, full
ranking). ``DenseEmbeddings`` keeps both tables in this process; the distributed package provides a
row-sharded implementation with the same interface.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn


class EmbeddingTables(nn.Module):
    """Interface: user/item rows by id and whole tables, (n, dim) float32."""

    n_users: int
    n_items: int
    dim: int

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
        return self.user_weight[ids]

    def items(self, ids: Tensor) -> Tensor:
        return self.item_weight[ids]

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
