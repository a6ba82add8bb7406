"""LightGCN (He et al., SIGIR 2020): K propagation layers on D^-1/2 A D^-1/2, layer mean, dot product.

Initialisation (``model.init``): normal(0, ``init_std`` = 0.1) as LightGCN-PyTorch by default; RecBole-GNN's
LightGCN (which the official ICPNS code runs) draws Xavier-uniform tables, ``model.init=xavier_uniform``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raysearch.config import require
from raysearch.models.base import MODELS, Recommender, Representations
from raysearch.models.graph import SparseGraph, split_nodes, symmetric_normalised
from raysearch.models.initialisers import INITIALISERS, check_init


@dataclass(frozen=True)
class LightGCNParams:
    dim: int = 64
    n_layers: int = 3
    init_std: float = 0.1  # LightGCN-PyTorch: normal(0, 0.1)
    init: str = "normal"  # LightGCN-PyTorch's; RecBole-GNN's (the official ICPNS code's): xavier_uniform

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        require(self.n_layers >= 0, "model.n_layers", "must be >= 0")
        check_init(self.init, self.init_std)


@MODELS.register("lightgcn")
class LightGCN(Recommender):
    name = "lightgcn"
    propagates = True
    layer_pool = "mean"
    Params = LightGCNParams

    def __init__(self, n_users, n_items, params, train, tables=None):
        super().__init__(n_users, n_items, params, train, tables=tables)
        # This process's rows of the adjacency (all of it in one process).
        self.graph = SparseGraph(symmetric_normalised(train)[self.tables.local_node_ids()])

    def reset_parameters(self) -> None:
        self.tables.initialise(INITIALISERS.get(self.params.init).tables(self.params.init_std))

    def propagate(self) -> Representations:
        local = self.tables.local_nodes()  # layer 0, this process's node rows
        self.graph = self.graph.to(local.device)  # no-op once the graph sits where the parameters are
        layer0 = self.tables.gather_nodes(local)  # every node's row (the identity in one process)
        x, total = layer0, local
        layers = [local]
        for k in range(self.params.n_layers):
            x_local = self.graph.propagate(x)  # this process's rows of layer k + 1
            total = total + x_local
            layers.append(x_local)
            if k + 1 < self.params.n_layers:
                x = self.tables.gather_nodes(x_local)
        final = self.tables.gather_nodes(total / (self.params.n_layers + 1))
        u = self.n_users
        views = {}
        if self.keep_layers:  # (n, L + 1, d), for layer-mixing samplers
            stacked = self.tables.gather_nodes(torch.cat(layers, dim=1)).view(final.shape[0], len(layers), -1)
            user_layers, item_layers = split_nodes(stacked, u)
            views = {"user_layers": user_layers, "item_layers": item_layers}
        return Representations(*split_nodes(final, u), *split_nodes(layer0, u), views=views)
