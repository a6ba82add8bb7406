"""MixGCF: synthesised hard negatives (Huang et al., KDD 2021; official code ``huangtinglin/MixGCF``,
``modules/LightGCN.py::negative_sampling``).

Per negative slot of a (u, i+) row: draw ``n_negs`` candidates uniformly (with replacement) from the
user's non-positives; with the per-layer representations e^(l) of the backbone (LightGCN: layers 0..L;
MF: layer 0 only; NGCF: its concatenated layers),
- positive mixing: e'_j^(l) = a^(l) e_i+^(l) + (1 - a^(l)) e_j^(l), a^(l) ~ U(0, 1) drawn once per row and
  layer (and negative slot), shared by its candidates;
- hop mixing: for each layer l the candidate with the largest <s_u, e'_j^(l)>, s_u the user's pooled
  representation (LightGCN and MF: the layer mean; NGCF: its own layer l, the official ``pool=concat``);
- the synthetic negative is the per-layer selection pooled like the backbone's final representation (mean
  or concatenation): an embedding, not an item id, differentiable w.r.t. the positive's and the chosen
  candidates' rows (the selection itself carries no gradient, as the official ``detach``).
The L2 term includes the synthetic negative's layer-0 part (the official regulariser).

Bilinear backbones score s_u through their ``query`` (GMF's weights); a backbone without per-layer item
representations (``layer_pool`` None: NeuMF, DMF, LightGCL) cannot be mixed.

Randomness: candidates and a^(l) come from the run's numpy stream (the official code draws a^(l) with
``torch.rand``), so a seed gives the same negatives on any number of workers.

``sample()`` (item ids, for callers that need ids) returns the candidate hop mixing picks on one layer
without positive mixing: DNS over the same ``n_negs`` candidates. Training calls ``synthesise``.
Defaults: ``n_negs`` 64 (the README's Yelp2018 setting for LightGCN and NGCF; Ali 32, Amazon 16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from raysearch.config import require
from raysearch.samplers.base import Synthesised, register
from raysearch.samplers.synthesis import CandidateSynthesiser


@register
class MixGCF(CandidateSynthesiser):
    """Synthesised negatives by positive and hop mixing."""

    name = "mixgcf"

    @dataclass(frozen=True)
    class Params:
        n_negs: int = 64  # uniform candidates per negative
        mix_positive: bool = True  # false: no positive mixing (a = 0; an ablation, and the DNS check)

        def __post_init__(self) -> None:
            require(self.n_negs >= 1, "n_negs", f"must be >= 1, got {self.n_negs}")

    def synthesise(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                   user_layers: Tensor, item_layers: Tensor, pool: str | None,
                   query: Callable[[Tensor], Tensor]) -> Synthesised:
        """Synthetic negatives for rows (users (B,), pos_items (B,)): vectors (B, k, d'), layer-0 parts
        (B, k, d). ``user_layers`` (n_users, L + 1, d) and ``item_layers`` (n_items, L + 1, d): one
        propagation's per-layer representations (differentiable); ``pool``: how the backbone pools them
        ("mean" or "concat"); ``query``: the backbone's map of user representations before the dot product.
        """
        users, pos_items = self.checked_rows(users, pos_items, pool)
        cand = self.candidates(users, k, rng)  # (B, k, M)
        b, n_layers = users.size, item_layers.shape[1]
        device = item_layers.device
        shape = (b, k, 1, n_layers, 1)  # one a per row, slot and layer, shared by the slot's candidates
        alpha = rng.random(shape) if self.params.mix_positive else np.zeros(shape)
        alpha = torch.as_tensor(alpha, dtype=item_layers.dtype, device=device)
        u_t = torch.as_tensor(users, device=device)
        positive = item_layers[torch.as_tensor(pos_items, device=device)]  # (B, L+1, d)
        # Selection carries no gradient, so all M candidates are mixed and scored without autograd; only
        # the chosen one per layer is mixed again with it (the same float operations, so the same values).
        # Mixing all candidates under autograd kept (B, k, M, L+1, d) tensors for a backward pass that is
        # zero everywhere but the chosen rows.
        cand_t = torch.as_tensor(cand, device=device)  # (B, k, M) item ids
        with torch.no_grad():
            candidates = item_layers[cand_t]  # (B, k, M, L+1, d)
            mixed = alpha * positive[:, None, None] + (1 - alpha) * candidates
            user_rows = user_layers[u_t]  # (B, L+1, d)
            # the user side of hop mixing: the pooled representation (mean), or each layer's own (concat)
            anchor = user_rows.mean(dim=1, keepdim=True) if pool == "mean" else user_rows
            scores = (query(anchor)[:, None, None] * mixed).sum(-1)  # (B, k, M, L+1)
            best = scores.argmax(dim=2)  # (B, k, L+1): a candidate per layer
        picked = cand_t.gather(2, best)  # (B, k, L+1): item ids
        layer = torch.arange(n_layers, device=device)
        a = alpha[:, :, 0]  # (B, k, L+1, 1)
        chosen = a * positive[:, None] + (1 - a) * item_layers[picked, layer]  # (B, k, L+1, d)
        vectors = chosen.mean(dim=2) if pool == "mean" else chosen.flatten(2)
        return Synthesised(vectors, chosen[:, :, 0])
