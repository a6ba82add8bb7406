"""LightGCN (He et al., SIGIR 2020): K propagation layers on D^-1/2 A D^-1/2, layer mean, dot product."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raysearch.config import require
from raysearch.models.base import MODELS, Recommender, Representations
from raysearch.models.graph import SparseGraph, symmetric_normalised


@dataclass(frozen=True)
class LightGCNParams:
    dim: int = 64
    n_layers: int = 3
    init_std: float = 0.1  # LightGCN-PyTorch: normal(0, 0.1)

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        require(self.n_layers >= 0, "model.n_layers", "must be >= 0")
        require(self.init_std > 0, "model.init_std", "must be > 0")


@MODELS.register("lightgcn")
class LightGCN(Recommender):
    name = "lightgcn"
    propagates = True
    Params = LightGCNParams

    def __init__(self, n_users, n_items, params, train, tables=None):
        super().__init__(n_users, n_items, params, train, tables=tables)
        self.graph = SparseGraph(symmetric_normalised(train))

    def reset_parameters(self) -> None:
        std = self.params.init_std
        self.tables.initialise(lambda w: nn.init.normal_(w, std=std))

    def propagate(self) -> Representations:
        users0, items0 = self.tables.user_table(), self.tables.item_table()
        x = torch.cat([users0, items0], dim=0)
        self.graph = self.graph.to(x.device)  # no-op once the graph sits where the parameters are
        total = x
        for _ in range(self.params.n_layers):
            x = self.graph.propagate(x)
            total = total + x
        final = total / (self.params.n_layers + 1)
        return Representations(final[: self.n_users], final[self.n_users :], users0, items0)
