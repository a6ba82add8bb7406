"""GMF (He et al., NCF 2017; the GDNS paper's scorer): r_ui = h^T (p_u * q_i)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from raysearch.config import require
from raysearch.models.base import MODELS
from raysearch.models.initialisers import check_init
from raysearch.models.mf import MF


@dataclass(frozen=True)
class GMFParams:
    dim: int = 32  # the GDNS / SRNS setting
    init: str = "trunc_normal"  # SRNS's official GMF: truncated normal, std 0.01 (RecBole has no GMF)
    init_std: float = 0.01

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        check_init(self.init, self.init_std)


@MODELS.register("gmf")
class GMF(MF):
    name = "gmf"
    Params = GMFParams

    def __init__(self, *args, **kwargs):
        self.h: nn.Parameter | None = None
        super().__init__(*args, **kwargs)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.h is None:
            self.h = nn.Parameter(torch.empty(self.params.dim, 1))
        # Glorot-uniform output weights, as SRNS's GMF (a (d, 1) dense layer), whatever model.init says.
        with torch.no_grad():
            nn.init.xavier_uniform_(self.h)

    def query(self, user_reps: Tensor) -> Tensor:
        return user_reps * self.h[:, 0]
