"""Ranking losses over positive and negative scores, registered by name (``trainer.loss``).

Shapes: ``pos`` (B,) and ``neg`` (B, k) for the pairwise losses (each negative paired with its row's
positive, mean over the B*k pairs); ``pos`` (B, N) and ``neg`` (B, N') for the group-wise loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from raysearch.registry import Registry

LossFn = Callable[[Tensor, Tensor, float], Tensor]
LOSSES: Registry[LossFn] = Registry("loss")


def _pairwise(pos: Tensor, neg: Tensor) -> Tensor:
    """neg - pos with pos broadcast over the negatives: (B, k)."""
    if neg.dim() == pos.dim():
        neg = neg.unsqueeze(-1)
    return neg - pos.unsqueeze(-1)


@LOSSES.register("bpr")
def bpr_loss(pos: Tensor, neg: Tensor, margin: float = 0.0) -> Tensor:
    """BPR: mean softplus(s_neg - s_pos) = mean -log sigmoid(s_pos - s_neg). ``margin`` is unused."""
    return F.softplus(_pairwise(pos, neg)).mean()


@LOSSES.register("hinge")
def hinge_loss(pos: Tensor, neg: Tensor, margin: float = 1.0) -> Tensor:
    """Pairwise hinge: mean max(0, s_neg - s_pos + margin)."""
    return F.relu(_pairwise(pos, neg) + margin).mean()


@LOSSES.register("group_hinge")
def group_hinge_loss(pos: Tensor, neg: Tensor, margin: float = 1.0) -> Tensor:
    """GDNS's group-wise hinge (its eq. 6): per user sum_i sum_j max(0, r_uj - r_ui + gamma), mean over users.

    ``pos`` (B, N) scores of the positive group, ``neg`` (B, N') of the negative group. The paper sums over
    users (eq. 7); the batch mean only rescales the gradient, which AdaGrad (the paper's optimiser)
    normalises away.
    """
    if pos.dim() != 2 or neg.dim() != 2:
        raise ValueError("group_hinge expects pos (B, N) and neg (B, N')")
    gaps = neg.unsqueeze(1) - pos.unsqueeze(2)  # (B, N, N')
    return F.relu(gaps + margin).sum(dim=(1, 2)).mean()
