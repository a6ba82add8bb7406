"""The L2 term under GDNS's summed group-wise loss weighs each of a user's N x N' pairs as a BPR row
(u, i, j) is weighed under the mean pairwise loss, so ``trainer.reg`` means the same thing under both."""

import numpy as np
import pytest
import torch

from raysearch.batch import Batch
from raysearch.data.interactions import Interactions
from raysearch.losses import group_hinge_loss
from raysearch.models import base as models_base
from raysearch.models import make_model
from raysearch.models.base import group_l2_regulariser, l2_regulariser


def mf_with(users: list[float], items: list[float]):
    """A 1-d MF whose user and item rows are the given numbers."""
    train = Interactions.from_pairs([0], [0], len(users), len(items))
    model = make_model("mf", len(users), len(items), train, dim=1)
    with torch.no_grad():
        model.tables.user_weight.copy_(torch.tensor(users).view(-1, 1))
        model.tables.item_weight.copy_(torch.tensor(items).view(-1, 1))
    return model


def test_group_loss_with_reg_by_hand():
    # one user p = 1; positive group {q1 = 2, q2 = 0.5}, negative group {q3 = 1, q4 = -1}; margin 1, reg 0.1
    model = mf_with([1.0], [0.0, 2.0, 0.5, 1.0, -1.0])
    batch = Batch.of([0], [[1, 2]], [[3, 4]], groups=True)
    with torch.no_grad():
        step = model.batch_scores(batch, reg=0.1)
        hinge = group_hinge_loss(step.positive, step.negative, margin=1.0)
        rows = model.batch_scores(Batch.of([0], [[1, 2]], [[3, 4]]), reg=0.1)
    # hinges max(0, r_j - r_i + 1): (1,3) 0, (1,4) 0, (2,3) 1 - 0.5 + 1 = 1.5, (2,4) 0
    assert float(hinge) == pytest.approx(1.5)
    # per pair (|p|^2 + |q_i|^2 + |q_j|^2) / 2: (1+4+1 + 1+4+1 + 1+.25+1 + 1+.25+1) / 2 = 8.25
    assert float(step.terms["l2"]) == pytest.approx(0.1 * 8.25)
    assert float(hinge + step.terms["l2"]) == pytest.approx(2.325)
    # the same rows as a batch of (user, positive, negatives) rows keep the row L2: (1 + 4 + .25 + 1 + 1) / 2
    assert float(rows.terms["l2"]) == pytest.approx(0.1 * 7.25 / 2)


def test_group_l2_is_n_k_times_the_row_l2_of_every_pair():
    """Over several users: the group L2 equals N K x l2_regulariser of the B N K expanded rows (u, i, j)."""
    g = torch.Generator().manual_seed(0)
    b, n, k, d = 3, 4, 5, 6
    users0, items0 = torch.randn(b, d, generator=g), torch.randn(b, n + k, d, generator=g)
    pos, neg = items0[:, :n], items0[:, n:]
    u = users0[:, None, None, :].expand(b, n, k, d).reshape(-1, d)
    i = pos[:, :, None, :].expand(b, n, k, d).reshape(-1, d)
    j = neg[:, None, :, :].expand(b, n, k, d).reshape(-1, d)
    pairwise = l2_regulariser(b * n * k, u, i, j)
    torch.testing.assert_close(group_l2_regulariser(b, users0, items0, n), n * k * pairwise)
    # ... so the L2 stands to the group sum as it stands to BPR's mean over the same pairs
    scores = torch.randn(b, n + k, generator=g)
    group = group_hinge_loss(scores[:, :n], scores[:, n:], margin=0.0)
    pairs_pos = scores[:, :n, None].expand(b, n, k).reshape(-1)
    pairs_neg = scores[:, None, n:].expand(b, n, k).reshape(-1)
    mean_pairwise = torch.relu(pairs_neg - pairs_pos).mean()
    torch.testing.assert_close(group, n * k * mean_pairwise)


def test_lightgcl_l2_on_groups_weighs_n_k_pairs():
    rng = np.random.default_rng(0)
    train = Interactions.from_pairs(rng.integers(0, 12, 60), rng.integers(0, 9, 60), 12, 9)
    torch.manual_seed(0)
    model = make_model("lightgcl", 12, 9, train, dim=4, svd_rank=2)
    groups = model.batch_scores(Batch.of([0, 1], [[1, 2, 3], [4, 5, 6]], [[7, 8, 0], [1, 2, 3]], groups=True),
                                reg=0.01)
    rows = model.batch_scores(Batch.of([0, 1], [[1, 2, 3], [4, 5, 6]], [[7, 8, 0], [1, 2, 3]]), reg=0.01)
    torch.testing.assert_close(groups.terms["l2"], 9 * rows.terms["l2"])


def test_the_trainer_marks_gdns_batches_as_groups(monkeypatch, tmp_path):
    from raysearch.config import load_run_config
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import run_training
    from raysearch.train.rundir import RunDir

    calls = []
    real = models_base.group_l2_regulariser

    def spy(batch_size, users0, items0, n_positives):
        calls.append((batch_size, tuple(items0.shape), n_positives))
        return real(batch_size, users0, items0, n_positives)

    monkeypatch.setattr(models_base, "group_l2_regulariser", spy)
    base = ["dataset.synthetic.n_users=60", "dataset.synthetic.n_items=40", "dataset.synthetic.mean_exposures=20",
            "model=gmf", "model.dim=8", "trainer.epochs=1", "trainer.progress=false", "trainer.threads=1",
            "trainer.reg=0.01"]
    cfg = load_run_config([*base, "sampler=gdns", "sampler.group_size=4", "trainer.batch_size=16"])
    dataset = load_dataset(cfg.dataset, use_cache=False)
    results = run_training(cfg, dataset, RunDir(tmp_path / "gdns"))
    assert calls and all(n == 4 and shape[1] == 8 for _, shape, n in calls)
    assert results["stages"]["train"]["epochs_run"] == 1
    calls.clear()
    run_training(load_run_config([*base, "sampler=rns"]), dataset, RunDir(tmp_path / "rns"))
    assert not calls  # (user, positive) rows keep the row L2
