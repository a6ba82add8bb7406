"""BPR-MF: r_ui = <p_u, q_i> (Rendle et al., 2009)."""

from __future__ import annotations

from dataclasses import dataclass

from raysearch.config import require
from raysearch.models.base import MODELS, TableLookup
from raysearch.models.initialisers import INITIALISERS, check_init


@dataclass(frozen=True)
class MFParams:
    dim: int = 64
    init: str = "xavier_normal"  # a name in raysearch.models.initialisers (RecBole's BPR: xavier_normal)
    init_std: float = 0.1  # std of init=normal / trunc_normal

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        check_init(self.init, self.init_std)


@MODELS.register("mf")
class MF(TableLookup):
    name = "mf"
    layer_pool = "mean"  # one layer: MixGCF on MF mixes 0 hops
    Params = MFParams

    def reset_parameters(self) -> None:
        self.tables.initialise(INITIALISERS.get(self.params.init).tables(self.params.init_std))
