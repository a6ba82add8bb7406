"""DENS: disentangled negative sampling (Lai et al., WSDM 2023; official code ``Riwei-HEU/DENS``,
``modules/LightGCN.py::dise_negative_sampling`` and ``create_bpr_loss``).

Gates (four d x d linear layers, trained with the model) split an item's representation into a factor
relevant to the user's choice and an irrelevant one:
    gate_p = sigmoid(W_i e_i+ + W_u e_u),  r(i+) = e_i+ * gate_p,          ir(i+) = e_i+ - r(i+)
    gate_n = sigmoid(W_n e_j + W_p r(i+)),  r(j) = e_j * gate_n,            ir(j) = e_j - r(j)
applied layer by layer (e^(l), l = 0..L). Selection, per negative slot: of ``n_negs`` uniform candidates,
for each layer l the one with the largest <e_u^(l), (1 - min(1, t / warmup)) e_j^(l) - r(j)^(l)> (t the
epoch); the negative is the chosen candidates' raw representations, layer by layer, pooled like the
backbone's (mean; NGCF: concatenation): an item's embedding per layer, not a mixture. The gates learn
from an auxiliary loss, weight gamma, the mean of four BPR terms over pooled scores s(x) = <u, pool(x)>:
    softplus(s(ir(i+)) - s(r(i+))) + log(1 + sum_k exp(s(r(j_k)) - s(ir(j_k))))
  + log(1 + sum_k exp(s(r(j_k)) - s(r(i+)))) + log(1 + sum_k exp(s(ir(i+)) - s(ir(j_k)))),
each averaged over rows, all divided by 4. The selection carries no gradient (the official ``detach``).

Defaults from the official ``parser.py``: n_negs 6, warmup 100 epochs, gamma 0.3 (the README's runs keep
them). The gates use torch's default initialisation, drawn from the run's seed; their weights are part of
the sampler's checkpointed state. Runs on MF (0 hops), GMF, LightGCN and NGCF, as MixGCF.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raysearch.config import require
from raysearch.errors import SamplingError
from raysearch.samplers.base import Synthesised, register
from raysearch.samplers.synthesis import CandidateSynthesiser

GATES = ("user_gate", "item_gate", "pos_gate", "neg_gate")


def pool_layers(x: Tensor, pool: str) -> Tensor:
    """(..., L + 1, d) -> (..., d) by the layer mean, or (..., (L + 1) d) by concatenation."""
    return x.mean(dim=-2) if pool == "mean" else x.flatten(-2)


def bpr_sum(neg: Tensor, pos: Tensor) -> Tensor:
    """mean over rows of log(1 + sum_k exp(neg_k - pos)): neg (B, k), pos (B,) or (B, k)."""
    gaps = neg - (pos.unsqueeze(-1) if pos.dim() < neg.dim() else pos)
    zero = torch.zeros_like(gaps[..., :1])
    return torch.logsumexp(torch.cat([zero, gaps], dim=-1), dim=-1).mean()


@register
class DENS(CandidateSynthesiser):
    """Disentangled negative sampling."""

    name = "dens"

    @dataclass(frozen=True)
    class Params:
        n_negs: int = 6  # uniform candidates per negative
        warmup: float = 100.0  # epochs over which the raw-embedding share of the selection score falls to 0
        gamma: float = 0.3  # weight of the gates' auxiliary loss

        def __post_init__(self) -> None:
            require(self.n_negs >= 1, "n_negs", f"must be >= 1, got {self.n_negs}")
            require(math.isfinite(self.warmup) and self.warmup > 0, "warmup", f"must be > 0, got {self.warmup}")
            require(math.isfinite(self.gamma) and self.gamma >= 0, "gamma", f"must be >= 0, got {self.gamma}")

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        self.gates: nn.ModuleDict | None = None
        self.epoch = 0

    # ----------------------------------------------------------------- trainable gates
    def prepare(self, model: Any, seed: int) -> None:
        width = int(model.tables.dim)
        if self.gates is not None and self.gates["user_gate"].in_features == width:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.gates = nn.ModuleDict({name: nn.Linear(width, width) for name in GATES})
        device = next(model.parameters()).device
        self.gates.to(device)

    def parameters(self) -> list[Any]:
        return [] if self.gates is None else list(self.gates.parameters())

    def state_dict(self) -> dict[str, Any]:
        if self.gates is None:
            return {}
        return {f"gates.{k}": v.detach().cpu().numpy().copy() for k, v in self.gates.state_dict().items()}

    def load_state_dict(self, state: Any) -> None:
        if not state:
            return
        if self.gates is None:
            raise SamplingError("sampler 'dens': its gates are built by prepare() before their state loads")
        own = self.gates.state_dict()
        for key, value in own.items():
            if f"gates.{key}" not in state:
                raise SamplingError(f"sampler 'dens': state is missing gates.{key}")
            value.copy_(torch.as_tensor(np.asarray(state[f"gates.{key}"])))

    def start_epoch(self, epoch: int, rng: Any) -> None:
        self.epoch = int(epoch)

    # ----------------------------------------------------------------- selection
    def synthesise(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                   user_layers: Tensor, item_layers: Tensor, pool: str | None,
                   query: Callable[[Tensor], Tensor]) -> Synthesised:
        """Negatives for rows (users (B,), pos_items (B,)) from one propagation's per-layer representations
        (``user_layers`` (n_users, L + 1, d), ``item_layers`` (n_items, L + 1, d)), and the gates' loss."""
        users, pos_items = self.checked_rows(users, pos_items, pool)
        if self.gates is None:
            raise SamplingError("sampler 'dens': prepare(model, seed) builds its gates before the first step")
        cand = self.candidates(users, k, rng)  # (B, k, M)
        device = item_layers.device
        g = self.gates
        u_e = user_layers[torch.as_tensor(users, device=device)]  # (B, L+1, d)
        p_e = item_layers[torch.as_tensor(pos_items, device=device)]  # (B, L+1, d)
        n_e = item_layers[torch.as_tensor(cand, device=device)]  # (B, k, M, L+1, d)
        gated_p = p_e * torch.sigmoid(g["item_gate"](p_e) + g["user_gate"](u_e))
        gated_n = n_e * torch.sigmoid(g["neg_gate"](n_e) + g["pos_gate"](gated_p)[:, None, None])
        share = 1.0 - min(1.0, self.epoch / self.params.warmup)
        scores = (query(u_e)[:, None, None] * (share * n_e - gated_n)).sum(-1)  # (B, k, M, L+1)
        best = scores.argmax(dim=2).detach()  # (B, k, L+1)
        index = best[:, :, None, :, None].expand(-1, -1, 1, -1, n_e.shape[-1])
        chosen = n_e.gather(2, index)[:, :, 0]  # (B, k, L+1, d): raw rows, one candidate per layer
        terms = {}
        if self.params.gamma > 0:
            terms["dens_gates"] = self.params.gamma * self.gate_loss(u_e, p_e, chosen, pool, query)
        return Synthesised(pool_layers(chosen, pool), chosen[:, :, 0], terms)

    def gate_loss(self, u_e: Tensor, p_e: Tensor, n_e: Tensor, pool: str, query: Callable[[Tensor], Tensor]
                  ) -> Tensor:
        """The official auxiliary loss (module docstring): u_e, p_e (B, L+1, d), n_e (B, k, L+1, d)."""
        g = self.gates
        u = query(pool_layers(u_e, pool))  # (B, d')
        pos_r = p_e * torch.sigmoid(g["item_gate"](p_e) + g["user_gate"](u_e))
        pos_ir = p_e - pos_r
        neg_r = n_e * torch.sigmoid(g["neg_gate"](n_e) + g["pos_gate"](pos_r)[:, None])
        neg_ir = n_e - neg_r

        def score(x: Tensor) -> Tensor:
            pooled = pool_layers(x, pool)
            return (u[:, None] * pooled).sum(-1) if pooled.dim() == 3 else (u * pooled).sum(-1)

        s_pos_r, s_pos_ir, s_neg_r, s_neg_ir = score(pos_r), score(pos_ir), score(neg_r), score(neg_ir)
        return (F.softplus(s_pos_ir - s_pos_r).mean() + bpr_sum(s_neg_r, s_neg_ir) + bpr_sum(s_neg_r, s_pos_r)
                + bpr_sum(s_neg_ir.neg(), -s_pos_ir)) / 4
