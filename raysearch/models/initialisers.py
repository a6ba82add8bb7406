"""Parameter initialisers by name (``model.init``): one registry, after RecBole's ``recbole.model.init``.

An ``Initialiser`` draws a layer-0 embedding table in place (``table``) and, for the backbones whose
reference code re-initialises their linear layers with the same scheme (RecBole's ``self.apply(...)``:
NGCF, DMF), a linear layer's weight and bias (``linear``). ``std`` is the model's ``init_std``; only the
normal-family initialisers read it.

- ``normal``: normal(0, std) on tables and linear weights, biases 0 (LightGCN-PyTorch's tables; RecBole's
  NeuMF tables and DMF's ``_init_weights``).
- ``trunc_normal``: normal(0, std) truncated at +-2 std, biases 0 (SRNS's GMF tables).
- ``xavier_normal``: ``nn.init.xavier_normal_`` on tables and linear weights, biases 0 (RecBole's
  ``xavier_normal_initialization``: its BPR and NGCF, RecBole-GNN's NGCF).
- ``xavier_uniform``: ``nn.init.xavier_uniform_`` on tables and linear weights, biases 0 (RecBole's
  ``xavier_uniform_initialization``: RecBole-GNN's LightGCN, hence the official ICPNS code's; LightGCL).
- ``xavier_uniform_bias``: as ``xavier_uniform``, but each bias too is drawn Xavier-uniform as a (1, out)
  matrix (the official NGCF code, NGCF-PyTorch).

A table of shape (n, d) has fan_in d and fan_out n (torch's convention for a 2-d tensor), as an
``nn.Embedding``'s weight under RecBole. Each backbone keeps its reference code's choice as its default
(``conf/model/*.yaml``), so a run that does not set ``model.init`` draws the same weights as before the key
existed; experiment files set it per backbone (``conf/experiments/icpns-protocol.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from raysearch.config import require
from raysearch.registry import Registry


@dataclass(frozen=True)
class Initialiser:
    """``table(weight, std)`` draws an (n, d) table in place; ``weight(tensor, std)`` a linear layer's
    weight; ``bias(tensor)`` its bias (default: zeros, as RecBole)."""

    table: Callable[[Tensor, float], object]
    weight: Callable[[Tensor, float], object]
    bias: Callable[[Tensor], object] = nn.init.zeros_

    def tables(self, std: float) -> Callable[[Tensor], object]:
        """The in-place function ``EmbeddingTables.initialise`` applies to both tables."""
        return lambda w: self.table(w, std)

    def linear(self, layer: nn.Linear, std: float) -> None:
        """Re-initialise ``layer`` in place: its weight, then its bias (when it has one)."""
        self.weight(layer.weight, std)
        if layer.bias is not None:
            self.bias(layer.bias)


INITIALISERS: Registry[Initialiser] = Registry("initialiser")


def _normal(w: Tensor, std: float) -> object:
    return nn.init.normal_(w, mean=0.0, std=std)


def _trunc_normal(w: Tensor, std: float) -> object:
    return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def _xavier_normal(w: Tensor, std: float) -> object:
    return nn.init.xavier_normal_(w)


def _xavier_uniform(w: Tensor, std: float) -> object:
    return nn.init.xavier_uniform_(w)


INITIALISERS.register("normal")(Initialiser(_normal, _normal))
INITIALISERS.register("trunc_normal")(Initialiser(_trunc_normal, _trunc_normal))
INITIALISERS.register("xavier_normal")(Initialiser(_xavier_normal, _xavier_normal))
INITIALISERS.register("xavier_uniform")(Initialiser(_xavier_uniform, _xavier_uniform))
INITIALISERS.register("xavier_uniform_bias")(Initialiser(
    _xavier_uniform, _xavier_uniform, bias=lambda b: nn.init.xavier_uniform_(b.view(1, -1))))


def check_init(init: str, init_std: float) -> None:
    """``__post_init__`` checks of a backbone's ``init`` and ``init_std`` (one line naming the key)."""
    require(init in INITIALISERS, "model.init",
            f"unknown initialiser {init!r} (known: {', '.join(INITIALISERS.names())})")
    require(init_std > 0, "model.init_std", "must be > 0")
