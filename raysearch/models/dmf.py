"""DMF (Xue et al., IJCAI 2017), as RecBole's ``DMF``: a user's row and an item's column of the training
interaction matrix through two MLPs, then a similarity of the two.

p_u = MLP_u(R[u, :] W_u), q_i = MLP_i(R[:, i]^T W_i), r_ui = <p_u, q_i>; R is the 0/1 matrix of the
*training* split only (never validation or test). The first layers W_u (n_items x d) and W_i (n_users x d)
have no bias; each MLP is RecBole's ``MLPLayers`` (dropout 0, linear, ReLU). RecBole replaces the
paper's cosine with the inner product ("for a better performance and stability"); ``model.similarity``
picks either (default: RecBole's ``dot``; ``cosine`` normalises both sides, the paper's choice). Every
weight ~ normal(0, 0.01), biases 0, as RecBole's ``_init_weights``. Defaults as RecBole's ``DMF.yaml``:
d = 64, hidden sizes [64, 64] on both sides.

R[u, :] W_u is the sum of W_u's rows over the user's items, i.e. one propagation step over the
*unnormalised* bipartite graph: the rows of W_u are the item table and those of W_i the user table
(``self.tables``), and [R W_u ; R^T W_i] = A [W_i ; W_u] with A = [[0, R], [R^T, 0]]. So DMF propagates
like a one-layer graph model, and on Ray Train each worker propagates its own rows of A (the MLPs are
replicated), as LightGCN does.

Communities (ICPNS) are clustered on p_u, the user tower's output: the representation the score uses.

Departures from RecBole: the loss is the run's (``trainer.loss``; RecBole trains DMF pointwise with BCE on
sigmoid(r_ui): ``trainer.loss=bce`` is the same objective); ``trainer.reg`` adds the usual L2 on the step's
layer-0 rows, here the rows of W_i and W_u of the step's users and items (RecBole's DMF has none:
``trainer.reg=0`` for its setting); RecBole's ``inter_matrix_type=rating`` is not offered (implicit data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raysearch.config import require
from raysearch.models.base import MODELS, Recommender, Representations
from raysearch.models.graph import SparseGraph, bipartite_adjacency, split_nodes
from raysearch.models.initialisers import INITIALISERS, check_init
from raysearch.models.layers import mlp_layers

SIMILARITIES = ("dot", "cosine")


@dataclass(frozen=True)
class DMFParams:
    dim: int = 64  # width of the first layers (user and item embedding sizes)
    user_layers: tuple[int, ...] = (64, 64)  # hidden sizes of the user MLP
    item_layers: tuple[int, ...] = (64, 64)  # hidden sizes of the item MLP (the same last size)
    similarity: str = "dot"  # dot (RecBole) | cosine (the paper)
    init_std: float = 0.01  # every weight ~ normal(0, init_std)
    init: str = "normal"  # RecBole's _init_weights; tables and MLP weights alike, biases 0

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        for key, sizes in (("model.user_layers", self.user_layers), ("model.item_layers", self.item_layers)):
            require(len(sizes) >= 1 and all(s >= 1 for s in sizes), key,
                    f"must be one or more positive sizes, got {list(sizes)}")
        require(self.user_layers[-1] == self.item_layers[-1], "model.item_layers",
                f"must end with the user MLP's size {self.user_layers[-1]}, got {self.item_layers[-1]}")
        require(self.similarity in SIMILARITIES, "model.similarity",
                f"must be one of {', '.join(SIMILARITIES)}, got {self.similarity!r}")
        check_init(self.init, self.init_std)


@MODELS.register("dmf")
class DMF(Recommender):
    name = "dmf"
    Params = DMFParams
    propagates = True

    def __init__(self, n_users, n_items, params, train, tables=None):
        self.user_mlp: nn.Sequential | None = None
        super().__init__(n_users, n_items, params, train, tables=tables)
        local = self.tables.local_node_ids()
        self.graph = SparseGraph(bipartite_adjacency(train)[local])
        self.register_buffer("local_is_user", torch.as_tensor(local < n_users), persistent=False)

    def reset_parameters(self) -> None:
        p = self.params
        if self.user_mlp is None:
            self.user_mlp = mlp_layers((p.dim, *p.user_layers))
            self.item_mlp = mlp_layers((p.dim, *p.item_layers))
        init, std = INITIALISERS.get(p.init), p.init_std
        self.tables.initialise(init.tables(std))
        with torch.no_grad():
            for layer in (*self.user_mlp, *self.item_mlp):
                if isinstance(layer, nn.Linear):
                    init.linear(layer, std)

    def propagate(self) -> Representations:
        local = self.tables.local_nodes()  # this process's rows of [W_i ; W_u]
        self.graph = self.graph.to(local.device)
        layer0 = self.tables.gather_nodes(local)
        first = self.graph.propagate(layer0)  # this process's rows of [R W_u ; R^T W_i]
        is_user = self.local_is_user.to(first.device)
        out = first.new_empty((first.shape[0], self.params.user_layers[-1]))
        out[is_user] = self.user_mlp(first[is_user])
        out[~is_user] = self.item_mlp(first[~is_user])
        if self.params.similarity == "cosine":
            out = F.normalize(out, p=2, dim=1)
        final = self.tables.gather_nodes(out)
        u = self.n_users
        return Representations(*split_nodes(final, u), *split_nodes(layer0, u))
