"""The normalised user-item graph of the graph backbones, and its propagation operator.

The bipartite adjacency A = [[0, R], [R^T, 0]] of shape (n_users + n_items)^2 is normalised
symmetrically, A_hat = D^-1/2 A D^-1/2 (LightGCN), or row-wise with self loops, D^-1 (A + I) (NGCF's
official code), and stored as a torch CSR tensor. The backward pass of ``A_hat @ X`` is
``A_hat^T @ grad``; ``SparseGraph`` runs both through the CSR kernel (for the symmetric LightGCN matrix
the transpose is the matrix itself), which is about twice as fast on CPU as autograd through
``torch.sparse.mm``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from raysearch.data.interactions import Interactions


def bipartite_adjacency(train: Interactions) -> sp.csr_matrix:
    """Unnormalised A (float64), shape (n_users + n_items, n_users + n_items)."""
    r = train.to_scipy().astype(np.float64)
    return sp.bmat([[None, r], [r.T, None]], format="csr")


def symmetric_normalised(train: Interactions) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 (LightGCN); isolated nodes get zero rows."""
    a = bipartite_adjacency(train)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv_sqrt, where=deg > 0)
    d = sp.diags(inv_sqrt)
    return (d @ a @ d).tocsr()


def mean_normalised_with_self_loops(train: Interactions) -> sp.csr_matrix:
    """D^-1 (A + I) (NGCF's official ``norm_adj``)."""
    a = bipartite_adjacency(train) + sp.eye(train.n_users + train.n_items, format="csr")
    deg = np.asarray(a.sum(axis=1)).ravel()
    return (sp.diags(1.0 / deg) @ a).tocsr()


def to_torch_csr(matrix: sp.csr_matrix, device: torch.device | str = "cpu") -> Tensor:
    """float32 torch CSR tensor with int64 indices."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
        ).to(device)


class SparseGraph:
    """A normalised adjacency A as CSR, with its transpose when A is not symmetric.

    ``propagate(x)`` computes A @ x with a custom backward (A^T @ grad) that reuses the fast CSR kernel.
    ``with_dropout(rate, generator)`` returns a graph whose stored entries are dropped with probability
    ``rate`` and rescaled by 1 / (1 - rate) (NGCF's node dropout), the same entries in A and A^T.
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device | str = "cpu"):
        matrix = matrix.tocsr()
        matrix.sort_indices()
        self.shape = matrix.shape
        # A row block of a distributed graph is rectangular: it needs its own transpose.
        self.symmetric = matrix.shape[0] == matrix.shape[1] and (abs(matrix - matrix.T) > 1e-12).nnz == 0
        self.adjacency = to_torch_csr(matrix, device)
        if self.symmetric:
            self.transpose, self._to_transpose = self.adjacency, None
        else:
            # Position of each stored entry of A inside A^T's storage, to drop the same entries in both.
            marker = sp.csr_matrix((np.arange(1, matrix.nnz + 1, dtype=np.float64), matrix.indices, matrix.indptr),
                                   shape=matrix.shape).T.tocsr()
            marker.sort_indices()
            self._to_transpose = torch.from_numpy(marker.data.astype(np.int64) - 1).to(device)
            self.transpose = to_torch_csr(matrix.T.tocsr(), device)

    @property
    def device(self) -> torch.device:
        return self.adjacency.device

    def to(self, device: torch.device | str) -> SparseGraph:
        """This graph on ``device`` (``self`` when it is there already)."""
        if self.adjacency.device == torch.device(device):
            return self
        out = object.__new__(SparseGraph)
        out.shape, out.symmetric = self.shape, self.symmetric
        out.adjacency = self.adjacency.to(device)
        out.transpose = out.adjacency if self.symmetric else self.transpose.to(device)
        out._to_transpose = None if self._to_transpose is None else self._to_transpose.to(device)
        return out

    @property
    def nnz(self) -> int:
        return int(self.adjacency.values().numel())

    def propagate(self, x: Tensor) -> Tensor:
        """A @ x, differentiable w.r.t. x."""
        return _Propagate.apply(self.adjacency, self.transpose, x)

    def with_dropout(self, rate: float, generator: torch.Generator | None = None) -> SparseGraph:
        if rate <= 0:
            return self
        values = self.adjacency.values()
        keep = (torch.rand(values.shape, generator=generator, device="cpu") >= rate).to(values.device)
        scaled = values * keep / (1.0 - rate)
        out = object.__new__(SparseGraph)
        out.shape, out.symmetric, out._to_transpose = self.shape, False, self._transpose_positions()
        out.adjacency = _with_values(self.adjacency, scaled)
        # Entries (r, c) and (c, r) of a symmetric matrix are dropped independently, so the dropped
        # matrix is not symmetric: its transpose takes each value from its mirrored entry.
        out.transpose = _with_values(self.transpose, scaled[out._to_transpose])
        return out

    def _transpose_positions(self) -> Tensor:
        """Position of each stored entry of A inside A^T's storage (computed once for symmetric graphs)."""
        if self._to_transpose is None:
            crow, col = self.adjacency.crow_indices().cpu().numpy(), self.adjacency.col_indices().cpu().numpy()
            marker = sp.csr_matrix((np.arange(1, col.size + 1, dtype=np.float64), col, crow), shape=self.shape).T.tocsr()
            marker.sort_indices()
            self._to_transpose = torch.from_numpy(marker.data.astype(np.int64) - 1).to(self.device)
        return self._to_transpose


def _with_values(csr: Tensor, values: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(), values, size=csr.shape)


class _Propagate(torch.autograd.Function):
    """y = A @ x; dL/dx = A^T @ dL/dy, both through the CSR kernel."""

    @staticmethod
    def forward(ctx, adjacency: Tensor, transpose: Tensor, x: Tensor) -> Tensor:  # noqa: D102
        ctx.transpose = transpose
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        return None, None, ctx.transpose @ grad
