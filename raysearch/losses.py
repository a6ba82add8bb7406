"""Ranking losses over positive and negative scores, registered by name (``trainer.loss``).

Shapes: ``pos`` (B,) and ``neg`` (B, k) for the losses over (user, positive) rows (each row's positive
against its k negatives); ``pos`` (B, N) and ``neg`` (B, N') for the group-wise loss. Each registered
``Loss`` says whether it needs positive groups and whether it can take a logQ correction.

- ``bpr``: mean over the B x k pairs of -log sigmoid(s+ - s-) (Rendle et al., 2009), any k.
- ``hinge``: mean over the B x k pairs of max(0, s- - s+ + margin).
- ``group_hinge``: GDNS's group-wise hinge.
- ``bce``: pointwise log loss, every positive labelled 1 and every negative 0, mean over the B (1 + k)
  scores (NCF's objective, and RecBole's ``BCEWithLogitsLoss`` over its rows).
- ``softmax``: sampled softmax / InfoNCE over the positive and its k negatives at temperature T, mean over
  rows of -log softmax(logits)[positive], logits = (s+ / T, s-_1 / T, ..., s-_k / T). With ``log_q``
  (logQ correction; Yi et al., RecSys 2019; Wu et al., "On the Effectiveness of Sampled Softmax Loss for
  Item Recommendation"), each negative's logit becomes s-_j / T - log q(j | u), which makes the sampled
  softmax a consistent estimate of the full softmax over the catalogue whatever the proposal q.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from raysearch.registry import Registry


@dataclass(frozen=True)
class LossSettings:
    """The trainer's loss keys: ``margin`` (hinge losses), ``temperature`` (softmax)."""

    margin: float = 1.0
    temperature: float = 1.0


@dataclass(frozen=True)
class Loss:
    """A registered loss. ``compute(pos, neg, settings, log_q)`` -> a scalar; ``group_wise``: it needs
    positive groups (B, N) from a sampler that builds them; ``corrects_log_q``: it accepts log q(j | u)
    (B, k) of the negatives (``trainer.logq_correction``)."""

    compute: Callable[[Tensor, Tensor, LossSettings, Tensor | None], Tensor]
    group_wise: bool = False
    corrects_log_q: bool = False


LOSSES: Registry[Loss] = Registry("loss")


def _pairwise(pos: Tensor, neg: Tensor) -> Tensor:
    """neg - pos with pos broadcast over the negatives: (B, k)."""
    if neg.dim() == pos.dim():
        neg = neg.unsqueeze(-1)
    return neg - pos.unsqueeze(-1)


def bpr_loss(pos: Tensor, neg: Tensor, margin: float = 0.0) -> Tensor:
    """BPR: mean softplus(s_neg - s_pos) = mean -log sigmoid(s_pos - s_neg). ``margin`` is unused."""
    return F.softplus(_pairwise(pos, neg)).mean()


def hinge_loss(pos: Tensor, neg: Tensor, margin: float = 1.0) -> Tensor:
    """Pairwise hinge: mean max(0, s_neg - s_pos + margin)."""
    return F.relu(_pairwise(pos, neg) + margin).mean()


def group_hinge_loss(pos: Tensor, neg: Tensor, margin: float = 1.0) -> Tensor:
    """GDNS's group-wise hinge (its eq. 6): per user sum_i sum_j max(0, r_uj - r_ui + gamma), mean over users.

    ``pos`` (B, N) scores of the positive group, ``neg`` (B, N') of the negative group. The paper sums over
    users (eq. 7); the batch mean only rescales the gradient, which AdaGrad (the paper's optimiser)
    normalises away. The model's L2 term (``trainer.reg``) on such a batch weighs each of the N x N'
    pairs as a BPR row (``raysearch.models.base.group_l2_regulariser``), so that ``reg`` means under this
    sum what it means under a mean pairwise loss.
    """
    if pos.dim() != 2 or neg.dim() != 2:
        raise ValueError("group_hinge expects pos (B, N) and neg (B, N')")
    gaps = neg.unsqueeze(1) - pos.unsqueeze(2)  # (B, N, N')
    return F.relu(gaps + margin).sum(dim=(1, 2)).mean()


def bce_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Pointwise log loss: mean over the B (1 + k) scores of softplus(-s+) and softplus(s-)."""
    neg = neg if neg.dim() == 2 else neg.unsqueeze(-1)
    total = F.softplus(-pos).sum() + F.softplus(neg).sum()
    return total / (pos.numel() + neg.numel())


def softmax_loss(pos: Tensor, neg: Tensor, temperature: float = 1.0, log_q: Tensor | None = None) -> Tensor:
    """Sampled softmax (InfoNCE): mean over rows of logsumexp(logits) - pos / T, logits = (pos, neg) / T,
    ``log_q`` (B, k) subtracted from the negatives' logits when given."""
    neg = neg if neg.dim() == 2 else neg.unsqueeze(-1)
    neg_logits = neg / temperature
    if log_q is not None:
        neg_logits = neg_logits - log_q
    logits = torch.cat([(pos / temperature).unsqueeze(-1), neg_logits], dim=-1)
    return (torch.logsumexp(logits, dim=-1) - logits[:, 0]).mean()


LOSSES.register("bpr")(Loss(lambda pos, neg, s, log_q: bpr_loss(pos, neg)))
LOSSES.register("hinge")(Loss(lambda pos, neg, s, log_q: hinge_loss(pos, neg, s.margin)))
LOSSES.register("group_hinge")(Loss(lambda pos, neg, s, log_q: group_hinge_loss(pos, neg, s.margin),
                                    group_wise=True))
LOSSES.register("bce")(Loss(lambda pos, neg, s, log_q: bce_loss(pos, neg)))
LOSSES.register("softmax")(Loss(lambda pos, neg, s, log_q: softmax_loss(pos, neg, s.temperature, log_q),
                                corrects_log_q=True))
