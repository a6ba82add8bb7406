"""Losses against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from raysearch.losses import LOSSES, LossSettings, bpr_loss, group_hinge_loss, hinge_loss


def test_bpr_hand_computed():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 0.0])
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected)
    # (B, k) negatives pair with their row's positive
    neg2 = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    expected2 = (math.log1p(math.exp(-1.0)) + math.log(2.0) * 3) / 4
    assert bpr_loss(pos, neg2).item() == pytest.approx(expected2)


def test_hinge_hand_computed():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([[1.5, 0.0], [-2.0, 0.5]])
    # gaps neg - pos + 1: [0.5, -1], [-1, 1.5] -> relu: 0.5, 0, 0, 1.5 -> mean 0.5
    assert hinge_loss(pos, neg, margin=1.0).item() == pytest.approx(0.5)


def test_group_hinge_toy_scores():
    # one user: positives [3, 1], negatives [2, 0]; gamma = 1
    # pairs (i, j): (3,2): 0  (3,0): 0  (1,2): 2  (1,0): 0  -> sum 2
    pos = torch.tensor([[3.0, 1.0]])
    neg = torch.tensor([[2.0, 0.0]])
    assert group_hinge_loss(pos, neg, margin=1.0).item() == pytest.approx(2.0)
    # second user with everything satisfied: mean over users = 1
    pos2 = torch.tensor([[3.0, 1.0], [5.0, 5.0]])
    neg2 = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    assert group_hinge_loss(pos2, neg2, margin=1.0).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        group_hinge_loss(torch.tensor([1.0]), torch.tensor([1.0]))


def test_registry_names():
    assert LOSSES.names() == ["bce", "bpr", "group_hinge", "hinge", "softmax"]


def test_bce_is_the_mean_log_loss_over_every_score():
    from raysearch.losses import bce_loss

    pos, neg = torch.tensor([0.0, 2.0]), torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # -log s(0) - log(1 - s(0)) - log(1 - s(1)) - log s(2) - log(1 - s(-1)) - log(1 - s(0)), over 6 scores
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731  softplus
    expected = (sp(0) + sp(0) + sp(1) + sp(-2) + sp(-1) + sp(0)) / 6
    assert bce_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_softmax_is_cross_entropy_over_the_positive_and_its_negatives():
    from raysearch.losses import softmax_loss

    pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    # row 0: -log(e^1 / (e^1 + e^0 + e^2)); row 1: -log(1/3)
    expected = (-np.log(np.e / (np.e + 1 + np.e**2)) + np.log(3)) / 2
    assert softmax_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)
    # temperature 0.5 doubles every logit
    expected_t = (-np.log(np.e**2 / (np.e**2 + 1 + np.e**4)) + np.log(3)) / 2
    assert softmax_loss(pos, neg, temperature=0.5).item() == pytest.approx(expected_t, rel=1e-6)


def test_logq_correction_subtracts_log_q_from_each_negative_logit():
    from raysearch.losses import softmax_loss

    pos, neg = torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])
    log_q = torch.log(torch.tensor([[0.5, 0.25]]))
    # logits: 1, 0 - log 0.5, 2 - log 0.25
    logits = np.array([1.0, np.log(2.0), 2.0 + np.log(4.0)])
    expected = -(logits[0] - np.log(np.exp(logits).sum()))
    assert softmax_loss(pos, neg, log_q=log_q).item() == pytest.approx(expected, rel=1e-6)
    # a log q that is the same for every negative of a row is the same as more copies of the positive's rivals
    flat = torch.full((1, 2), np.log(0.5))
    assert softmax_loss(pos, neg, log_q=flat).item() == pytest.approx(
        softmax_loss(pos, neg + np.log(2.0)).item(), rel=1e-6)


def test_registered_losses_declare_what_they_need():
    assert LOSSES.get("group_hinge").group_wise
    assert [n for n in LOSSES.names() if LOSSES.get(n).corrects_log_q] == ["softmax"]
    settings = LossSettings(margin=0.5, temperature=2.0)
    pos, neg = torch.tensor([1.0]), torch.tensor([[1.0]])
    assert LOSSES.get("hinge").compute(pos, neg, settings, None).item() == pytest.approx(0.5)
    assert LOSSES.get("softmax").compute(pos, neg, settings, None).item() == pytest.approx(np.log(2))
