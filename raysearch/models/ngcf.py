"""NGCF (Wang et al., SIGIR 2019), as its official PyTorch code (NGCF-PyTorch).

Per layer k: side = A_hat @ e; e' = LeakyReLU_0.2(side W_gc + b_gc + (e * side) W_bi + b_bi), message
dropout, then the L2-normalised e' is kept; the final representation concatenates layer 0 and every
normalised layer. A_hat = D^-1 (A + I) (the official ``norm_adj``), with node dropout on its entries.
Departure: the official code regularises the final concatenated representations; raysearch applies
the same L2 term as every other backbone (the batch's layer-0 rows) so that ``trainer.reg`` means one
thing across backbones. Initialisation (``model.init``, tables and the linear layers alike): the official
code's Xavier-uniform on tables, weights and biases by default (``xavier_uniform_bias``); RecBole's and
RecBole-GNN's NGCF (the official ICPNS code's) is ``xavier_normal`` with biases 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raysearch.config import require
from raysearch.errors import ConfigError
from raysearch.models.base import MODELS, Recommender, Representations
from raysearch.models.graph import SparseGraph, mean_normalised_with_self_loops, split_nodes
from raysearch.models.initialisers import INITIALISERS, check_init


@dataclass(frozen=True)
class NGCFParams:
    dim: int = 64
    layer_sizes: tuple[int, ...] = (64, 64, 64)
    node_dropout: float = 0.1
    message_dropout: float = 0.1
    # NGCF-PyTorch's: Xavier-uniform tables, weights and biases; RecBole's (and RecBole-GNN's): xavier_normal,
    # biases 0. The linear layers follow model.init, as RecBole's self.apply(...) does.
    init: str = "xavier_uniform_bias"
    init_std: float = 0.1  # std of init=normal / trunc_normal

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        require(all(s >= 1 for s in self.layer_sizes), "model.layer_sizes", "must be positive sizes")
        require(0 <= self.node_dropout < 1, "model.node_dropout", "must be in [0, 1)")
        require(0 <= self.message_dropout < 1, "model.message_dropout", "must be in [0, 1)")
        check_init(self.init, self.init_std)


@MODELS.register("ngcf")
class NGCF(Recommender):
    name = "ngcf"
    propagates = True
    layer_pool = "concat"  # the final representation concatenates layer 0 and every normalised layer
    Params = NGCFParams

    def __init__(self, n_users, n_items, params, train, tables=None):
        self._sizes = (params.dim, *params.layer_sizes)
        self.gc = None
        super().__init__(n_users, n_items, params, train, tables=tables)
        self.graph = SparseGraph(mean_normalised_with_self_loops(train)[self.tables.local_node_ids()])

    def reset_parameters(self) -> None:
        init, std = INITIALISERS.get(self.params.init), self.params.init_std
        self.tables.initialise(init.tables(std))
        if self.gc is None:
            pairs = list(zip(self._sizes[:-1], self._sizes[1:], strict=True))
            self.gc = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
            self.bi = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        with torch.no_grad():
            for layer in (*self.gc, *self.bi):
                # default: the official code draws both W and b (as a (1, out) matrix) with Xavier-uniform
                init.linear(layer, std)

    def propagate(self) -> Representations:
        ego_local = self.tables.local_nodes()  # this process's node rows (all of them in one process)
        self.graph = self.graph.to(ego_local.device)
        graph = self.graph.with_dropout(self.params.node_dropout) if self.training else self.graph
        layer0 = ego = self.tables.gather_nodes(ego_local)
        layers = [ego_local]
        for k, (gc, bi) in enumerate(zip(self.gc, self.bi, strict=True)):
            if k:
                ego = self.tables.gather_nodes(ego_local)
            side = graph.propagate(ego)  # this process's rows of A_hat @ ego
            ego_local = F.leaky_relu(gc(side) + bi(ego_local * side), negative_slope=0.2)
            ego_local = F.dropout(ego_local, p=self.params.message_dropout, training=self.training)
            layers.append(F.normalize(ego_local, p=2, dim=1))
        final = self.tables.gather_nodes(torch.cat(layers, dim=1))
        u = self.n_users
        views = {}
        if self.keep_layers:
            if len(set(self._sizes)) != 1:
                raise ConfigError(f"model.layer_sizes: mixing NGCF's layers needs every layer of model.dim="
                                  f"{self.params.dim}, got {list(self.params.layer_sizes)}")
            stacked = final.view(final.shape[0], len(layers), -1)  # the concatenation, layer by layer
            user_layers, item_layers = split_nodes(stacked, u)
            views = {"user_layers": user_layers, "item_layers": item_layers}
        return Representations(*split_nodes(final, u), *split_nodes(layer0, u), views=views)
