"""Losses against hand-computed values."""

import math

import pytest
import torch

from raysearch.losses import LOSSES, bpr_loss, group_hinge_loss, hinge_loss


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
    assert LOSSES.names() == ["bpr", "group_hinge", "hinge"]
