"""LightGCL (Cai et al., ICLR 2023), as its official code (HKUDS/LightGCL, ``model.py`` and ``main.py``).

Main view, per layer l = 1..L: E_u^l = A_hat E_i^(l-1), E_i^l = A_hat^T E_u^(l-1), A_hat = D_u^-1/2 R D_i^-1/2
(with edge dropout on A_hat's entries while training); E = sum over l = 0..L of E^l (a sum, not LightGCN's
mean); the score is <E_u, E_i>.
SVD-guided view: A_hat ~ U_q S_q V_q^T (truncated SVD of rank q, computed once from the training split),
G_u^l = U_q S_q (V_q^T E_i^(l-1)), G_i^l = V_q S_q (U_q^T E_u^(l-1)), G = E^0 + sum over l >= 1 of G^l: never
the dense reconstructed matrix, so O((U + I) q d) a layer.
Contrastive term (InfoNCE between the views, temperature tau, weight lambda_1), over the step's users
(one per row, repeats included) and items (positives and negatives):
    mean_u log(sum_v exp(<G_u, E_v> / tau) + 1e-8) - mean_u clamp(<G_u, E_u> / tau, -5, 5)
  + the same for items.
L2: ``trainer.reg`` x the squared norm of every parameter (the official lambda_2, 1e-7 by default there:
set ``trainer.reg`` to it), not the step's rows.
Defaults from the official ``parser.py``: d = 64, q = 5, L = 2, tau = 0.2, lambda_1 = 0.2, edge dropout 0,
Xavier-uniform embeddings.

Departures: the SVD is exact (ARPACK, a fixed start vector; dense LAPACK on small matrices) where the
official code calls ``torch.svd_lowrank`` (a randomised approximation); log(sum exp + 1e-8) is computed
stably (``logaddexp`` of a logsumexp and log 1e-8) with the same value; the ranking loss is the run's
(``trainer.loss``; the official one is BPR, the default).

Not shardable: the SVD view and the contrastive term's softmax over every user and item read every row.
Communities (ICPNS) are clustered on E_u, the representation the score uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import Tensor

from raysearch.batch import Batch
from raysearch.config import require
from raysearch.errors import ConfigError
from raysearch.models.base import MODELS, Recommender, Representations
from raysearch.models.graph import SparseGraph, symmetric_normalised
from raysearch.models.initialisers import INITIALISERS, check_init

DENSE_SVD_MAX_ENTRIES = 4_000_000  # below this many matrix entries, LAPACK's full SVD, truncated


@dataclass(frozen=True)
class LightGCLParams:
    dim: int = 64  # embedding size d
    n_layers: int = 2  # propagation layers L
    svd_rank: int = 5  # rank q of the SVD-guided view
    temperature: float = 0.2  # tau of the contrastive term
    cl_weight: float = 0.2  # lambda_1, the contrastive term's weight
    edge_dropout: float = 0.0  # share of A_hat's entries dropped each step while training
    init: str = "xavier_uniform"  # the official code's (and RecBole-GNN's)
    init_std: float = 0.1  # std of init=normal / trunc_normal

    def __post_init__(self) -> None:
        require(self.dim >= 1, "model.dim", "must be >= 1")
        require(self.n_layers >= 1, "model.n_layers", "must be >= 1")
        require(self.svd_rank >= 1, "model.svd_rank", f"must be >= 1, got {self.svd_rank}")
        require(self.temperature > 0, "model.temperature", f"must be > 0, got {self.temperature}")
        require(self.cl_weight >= 0, "model.cl_weight", f"must be >= 0, got {self.cl_weight}")
        require(0 <= self.edge_dropout < 1, "model.edge_dropout", f"must be in [0, 1), got {self.edge_dropout}")
        check_init(self.init, self.init_std)


def truncated_svd(matrix: sp.spmatrix, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U (m, q), s (q,) descending, V (n, q)) of the rank-q truncated SVD of ``matrix`` (m, n), float64.

    Exact: LAPACK on the dense matrix when it is small, else ARPACK with a fixed start vector (the same
    result every call)."""
    m, n = matrix.shape
    if rank > min(m, n):
        raise ConfigError(f"model.svd_rank: must be <= the training matrix's smaller side "
                          f"({min(m, n)} = min({m} users, {n} items)), got {rank}")
    if m * n <= DENSE_SVD_MAX_ENTRIES or rank >= min(m, n):
        u, s, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
        return u[:, :rank], s[:rank], vt[:rank].T
    v0 = np.full(min(m, n), 1.0 / np.sqrt(min(m, n)))
    u, s, vt = svds(matrix.astype(np.float64), k=rank, v0=v0)
    order = np.argsort(-s)
    return u[:, order], s[order], vt[order].T


@MODELS.register("lightgcl")
class LightGCL(Recommender):
    name = "lightgcl"
    Params = LightGCLParams
    propagates = True
    unshardable = ("LightGCL's SVD view and its contrastive term (a softmax over every user and item) read "
                   "every row; run it with trainer.workers=1")

    def __init__(self, n_users, n_items, params, train, tables=None):
        super().__init__(n_users, n_items, params, train, tables=tables)
        adjacency = symmetric_normalised(train)  # [[0, A_hat], [A_hat^T, 0]]
        self.graph = SparseGraph(adjacency)
        u, s, v = truncated_svd(adjacency[:n_users, n_users:], params.svd_rank)
        for name, value in (("u_mul_s", u * s), ("v_mul_s", v * s), ("ut", u.T), ("vt", v.T)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32), persistent=False)

    def reset_parameters(self) -> None:
        self.tables.initialise(INITIALISERS.get(self.params.init).tables(self.params.init_std))

    def propagate(self) -> Representations:
        e_u0, e_i0 = self.tables.user_table(), self.tables.item_table()
        self.graph = self.graph.to(e_u0.device)
        graph = self.graph.with_dropout(self.params.edge_dropout) if self.training else self.graph
        u = self.n_users
        x = torch.cat([e_u0, e_i0], dim=0)
        e_total, g_u, g_i = x, e_u0, e_i0
        for _ in range(self.params.n_layers):
            e_u, e_i = x[:u], x[u:]
            g_u = g_u + self.u_mul_s @ (self.vt @ e_i)  # the SVD view, from the main view's layer l - 1
            g_i = g_i + self.v_mul_s @ (self.ut @ e_u)
            x = graph.propagate(x)  # [A_hat E_i ; A_hat^T E_u]
            e_total = e_total + x
        return Representations(e_total[:u], e_total[u:], e_u0, e_i0, views={"G_u": g_u, "G_i": g_i})

    def loss_terms(self, batch: Batch, reps: Representations | None, users0: Tensor, items0: Tensor,
                   reg: float) -> dict[str, Tensor]:
        reps = reps if reps is not None else self.propagate()
        device = reps.users.device
        users = torch.as_tensor(batch.users, device=device)
        items = batch.positives.ravel() if batch.negatives is None else np.concatenate(
            [batch.positives.ravel(), batch.negatives.ravel()])
        items = torch.as_tensor(items, device=device)
        tau = self.params.temperature
        contrastive = (infonce(reps.views["G_u"][users], reps.users, users, tau)
                       + infonce(reps.views["G_i"][items], reps.items, items, tau))
        terms = {"contrastive": self.params.cl_weight * contrastive}
        if reg > 0:
            # a batch of groups sums N x K pair terms a user: its L2 weighs N x K pairs' worth (base.loss_terms)
            pairs = batch.n_positives * batch.n_negatives if batch.groups else 1
            terms["l2"] = reg * pairs * sum(p.pow(2).sum() for p in self.parameters())
        return terms


def infonce(anchors: Tensor, table: Tensor, ids: Tensor, tau: float) -> Tensor:
    """LightGCL's InfoNCE: mean over rows of log(sum_v exp(<a, t_v> / tau) + 1e-8) - clamp(<a, t_id> / tau,
    -5, 5). ``anchors`` (n, d) from one view, ``table`` (N, d) the other view's rows, ``ids`` (n,)."""
    logits = anchors @ table.T / tau  # (n, N)
    negative = torch.logaddexp(torch.logsumexp(logits, dim=1), torch.tensor(np.log(1e-8), device=logits.device))
    positive = torch.clamp((anchors * table[ids]).sum(1) / tau, -5.0, 5.0)
    return negative.mean() - positive.mean()
