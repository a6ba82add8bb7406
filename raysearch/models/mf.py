"""BPR-MF: r_ui = <p_u, q_i> (Rendle et al., 2009)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from raysearch.config import require
from raysearch.models.base import MODELS, TableLookup


@dataclass(frozen=True)
class MFParams:
    dim: int = 64
    init: str = "xavier_normal"  # RecBole's BPR initialisation; "normal" uses init_std
    init_std: float = 0.1

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        require(self.init in INITIALISERS, "model.init", f"must be one of {', '.join(sorted(INITIALISERS))}")
        require(self.init_std > 0, "model.init_std", "must be > 0")


INITIALISERS = {
    "xavier_normal": lambda std: nn.init.xavier_normal_,
    "xavier_uniform": lambda std: nn.init.xavier_uniform_,
    "normal": lambda std: (lambda w: nn.init.normal_(w, std=std)),
    "trunc_normal": lambda std: (lambda w: nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)),
}


@MODELS.register("mf")
class MF(TableLookup):
    name = "mf"
    layer_pool = "mean"  # one layer: MixGCF on MF mixes 0 hops
    Params = MFParams

    def reset_parameters(self) -> None:
        self.tables.initialise(INITIALISERS[self.params.init](self.params.init_std))
