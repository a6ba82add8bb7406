"""NeuMF (He et al., WWW 2017), as RecBole's ``NeuMF``: a GMF tower and an MLP tower over separate
embeddings, concatenated into a final linear layer.

r_ui = w^T [p_u * q_i ; MLP([p'_u ; q'_i])] + b, the MLP a stack of (dropout, linear, ReLU) layers
(RecBole's ``MLPLayers``). Linear layers on a concatenation are applied as the sum of their two halves, so
full ranking projects each user and each item once instead of every pair's concatenation. Defaults as RecBole's ``NeuMF.yaml``: GMF and MLP embeddings of 64, MLP layers
[128, 64], dropout 0.1; embeddings drawn from normal(0, 0.01), the linear layers with torch's default
initialisation (RecBole re-initialises only the embeddings); the towers' optional pre-training is not
implemented (RecBole's ``use_pretrain`` is off by default).

Layer-0 rows: one table a side whose columns hold the GMF embedding then the MLP embedding
([p_u ; p'_u], width ``mf_dim + mlp_dim``), so that Ray Train shards NeuMF's rows like MF's (the MLP and
the output layer are replicated). The score is not a dot product: the model sets ``bilinear = False`` and
full ranking and the samplers' scorers go through ``interaction`` in chunks.

Communities (ICPNS) are clustered on the whole user row [p_u ; p'_u]: the score depends on both towers,
and the GMF half alone would drop the MLP tower's view of the user (both halves start at the same scale).

Departures from RecBole: the loss is the run's (``trainer.loss``; RecBole trains NeuMF pointwise with
BCE: use ``trainer.loss=bce``); ``trainer.reg`` adds the usual L2 on the step's layer-0 rows (RecBole's
NeuMF has none: ``trainer.reg=0`` for its setting). Dropout is active while the model trains, so a dynamic
sampler's scorer inside an epoch sees it too (as RecBole's dynamic sampling does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from raysearch.config import require
from raysearch.models.base import MODELS, TableLookup
from raysearch.models.initialisers import INITIALISERS, check_init
from raysearch.models.layers import mlp_layers


@dataclass(frozen=True)
class NeuMFParams:
    mf_dim: int = 64  # GMF embedding size
    mlp_dim: int = 64  # MLP embedding size
    mlp_layers: tuple[int, ...] = (128, 64)  # hidden sizes of the MLP tower
    dropout: float = 0.1  # dropout before each MLP layer
    init_std: float = 0.01  # embeddings ~ normal(0, init_std)
    init: str = "normal"  # of the embeddings only (RecBole's NeuMF leaves its linear layers at torch's default)

    def __post_init__(self) -> None:
        require(self.mf_dim >= 1, "model.mf_dim", "must be >= 1")
        require(self.mlp_dim >= 1, "model.mlp_dim", "must be >= 1")
        require(len(self.mlp_layers) >= 1 and all(s >= 1 for s in self.mlp_layers), "model.mlp_layers",
                f"must be one or more positive sizes, got {list(self.mlp_layers)}")
        require(0 <= self.dropout < 1, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check_init(self.init, self.init_std)

    @property
    def dim(self) -> int:
        """Width of a layer-0 row: the GMF embedding then the MLP embedding."""
        return self.mf_dim + self.mlp_dim


@MODELS.register("neumf")
class NeuMF(TableLookup):
    name = "neumf"
    Params = NeuMFParams
    bilinear = False

    def __init__(self, *args, **kwargs):
        self.mlp: nn.Sequential | None = None
        super().__init__(*args, **kwargs)

    def reset_parameters(self) -> None:
        p = self.params
        self.tables.initialise(INITIALISERS.get(p.init).tables(p.init_std))
        if self.mlp is None:
            self.mlp = mlp_layers((2 * p.mlp_dim, *p.mlp_layers), p.dropout)
            self.predict = nn.Linear(p.mf_dim + p.mlp_layers[-1], 1)
        else:  # a re-initialisation: torch's defaults, as at construction
            for module in (*self.mlp, self.predict):
                if isinstance(module, nn.Linear):
                    module.reset_parameters()

    def interaction(self, user_reps: Tensor, item_reps: Tensor) -> Tensor:
        """The MLP's first layer on [p' ; q'] is W_p p' + W_q q' + b: each side is projected on its own and
        the projections broadcast, so ranking b users against c items never builds the (b, c, 2 d') concat
        nor multiplies it by the first layer per pair (the same function; the floats differ by rounding)."""
        m = self.params.mf_dim
        if self.training and self.params.dropout > 0:
            # dropout is drawn per (user, item) pair, as on RecBole's concatenated rows
            user_reps, item_reps = torch.broadcast_tensors(user_reps, item_reps)
        gmf = user_reps[..., :m] * item_reps[..., :m]
        dropout, first = self.mlp[0], self.mlp[1]
        w_user, w_item = first.weight[:, : self.params.mlp_dim], first.weight[:, self.params.mlp_dim :]
        hidden = dropout(user_reps[..., m:]) @ w_user.T + dropout(item_reps[..., m:]) @ w_item.T + first.bias
        mlp = self.mlp[3:](torch.relu(hidden))
        # the output layer on [gmf ; mlp], split the same way
        return gmf @ self.predict.weight[0, :m] + mlp @ self.predict.weight[0, m:] + self.predict.bias[0]
