"""The adversarial (IRGAN) sampler: the generator's policy gradient against a hand-computed gradient on a
two-item toy, its draws against its softmax policy, its REINFORCE updates moving the policy towards what
the discriminator rewards, and its state checkpointed and resumed through the trainer."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.samplers import make_sampler
from raysearch.samplers.adversarial import advantages, draw_rows, policy_gradient_loss, rewards


def two_item_toy():
    """One user, two items, dimension 2: g(u, j) = <p_u, q_j> + b_j."""
    p_u = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.5, 0.1], [-0.2, 0.4]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.05, -0.1], dtype=torch.float64, requires_grad=True)
    return p_u, q, b


@pytest.mark.parametrize("temperature", [1.0, 0.2])
def test_policy_gradient_matches_the_hand_computed_gradient_on_two_items(temperature):
    p_u, q, b = two_item_toy()
    logits = (q @ p_u + b)[None]  # (1, 2)
    actions = torch.tensor([[0, 1, 1]])
    adv = torch.tensor([[1.5, -0.5, 2.0]], dtype=torch.float64)
    policy_gradient_loss(logits, None, actions, adv, temperature).backward()

    # by hand: d log p_a / d s_j = (1[j = a] - p_j) / T, s_j = <p_u, q_j> + b_j; loss = -mean_k A_k log p_{a_k}
    s = (q @ p_u + b).detach().numpy()
    p = np.exp(s / temperature) / np.exp(s / temperature).sum()
    a, A = [0, 1, 1], [1.5, -0.5, 2.0]
    d_s = -sum(A[k] * (np.eye(2)[a[k]] - p) for k in range(3)) / (3 * temperature)  # d loss / d s_j
    qn, pn = q.detach().numpy(), p_u.detach().numpy()
    np.testing.assert_allclose(b.grad.numpy(), d_s, rtol=1e-12)
    np.testing.assert_allclose(p_u.grad.numpy(), d_s @ qn, rtol=1e-12)
    np.testing.assert_allclose(q.grad.numpy(), np.outer(d_s, pn), rtol=1e-12)


def test_policy_gradient_in_expectation_is_the_gradient_of_the_expected_reward():
    # With every item as an action, weighted by its probability, REINFORCE is exact:
    # grad E_p[r] = p0 p1 (r0 - r1) / T * grad(s0 - s1) on two items.
    p_u, q, b = two_item_toy()
    temperature, r = 0.5, np.array([0.8, -0.3])
    logits = (q @ p_u + b)[None]
    with torch.no_grad():
        p = torch.softmax(logits / temperature, dim=1)[0].numpy()
    # -mean over the 2 actions of (2 p_j r_j) log p_j = -sum_j p_j r_j log p_j: its gradient is -grad E_p[r]
    policy_gradient_loss(logits, None, torch.tensor([[0, 1]]), torch.as_tensor((2 * p * r)[None]), temperature).backward()
    factor = p[0] * p[1] * (r[0] - r[1]) / temperature
    qn = q.detach().numpy()
    np.testing.assert_allclose(-p_u.grad.numpy(), factor * (qn[0] - qn[1]), rtol=1e-12)
    np.testing.assert_allclose(-b.grad.numpy(), [factor, -factor], rtol=1e-12)


def test_excluded_items_carry_no_probability_and_no_gradient():
    logits = torch.tensor([[0.2, 1.0, -0.4]], requires_grad=True)
    excluded = torch.tensor([[False, True, False]])
    loss = policy_gradient_loss(logits, excluded, torch.tensor([[0, 2]]), torch.tensor([[1.0, 1.0]]), 1.0)
    loss.backward()
    assert logits.grad[0, 1] == 0
    p = np.exp([0.2, -0.4]) / np.exp([0.2, -0.4]).sum()
    expected = -np.array([(1 - p[0]) + (0 - p[0]), (0 - p[1]) + (1 - p[1])]) / 2
    np.testing.assert_allclose(logits.grad[0, [0, 2]].numpy(), expected, rtol=1e-6)


def test_rewards_and_leave_one_out_advantages():
    f = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(rewards(f, "softplus"), np.log1p(np.exp(f)))
    np.testing.assert_allclose(rewards(f, "sigmoid"), 2 / (1 + np.exp(-f)) - 1)
    r = np.array([[1.0, 2.0, 6.0]])
    np.testing.assert_allclose(advantages(r, True), [[1 - 4, 2 - 3.5, 6 - 1.5]])
    np.testing.assert_allclose(advantages(r, False), r)
    np.testing.assert_allclose(advantages(r[:, :1], True), r[:, :1])  # K = 1: nothing to compare with


def test_draw_rows_inverts_each_rows_cdf_and_never_returns_a_zero():
    p = np.array([[0.0, 0.5, 0.0, 0.5], [0.1, 0.0, 0.9, 0.0], [0.0, 0.0, 0.0, 1.0]])
    u = np.array([[0.0, 0.49, 0.5, 0.999999999999], [0.0, 0.0999, 0.1, 1 - 1e-16], [0.0, 0.3, 0.7, 1 - 1e-16]])
    got = draw_rows(p, np.array([0, 1, 2]), u)
    np.testing.assert_array_equal(got, [[1, 1, 3, 3], [0, 0, 2, 2], [3, 3, 3, 3]])


def toy_train(n_users=40, n_items=25, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 4)
    items = rng.integers(0, n_items, users.size)
    return Interactions.from_pairs(users, items, n_users, n_items)


@pytest.mark.parametrize("kept", [True, False])
def test_draws_follow_the_generators_softmax_policy_without_positives(kept, monkeypatch):
    import raysearch.samplers.adversarial as adversarial

    if not kept:  # the large-catalogue path: each batch's users, two users a chunk
        monkeypatch.setattr(adversarial, "TABLE_ENTRIES", 0)
        monkeypatch.setattr(adversarial, "CHUNK_ENTRIES", 50)
    train = toy_train()
    sampler = make_sampler("adversarial", train, dim=4, temperature=0.5)
    with torch.no_grad():  # a policy far from uniform
        sampler.generator.bias.copy_(torch.linspace(-2.0, 2.0, train.n_items))
    users = np.tile([3, 8], 40_000)
    out = sampler.sample(users, np.zeros_like(users), 2, rng=np.random.default_rng(1), score_fn=lambda u, i: i)
    for user in (3, 8):
        got = out[users == user].ravel()
        with torch.no_grad():
            g = sampler.generator.logits(torch.tensor([user]))[0].double().numpy() / 0.5
        g[train.row(user)] = -np.inf
        expected = np.exp(g - g.max()) / np.exp(g - g.max()).sum()
        counts = np.bincount(got, minlength=train.n_items)
        assert counts[train.row(user)].sum() == 0
        keep = expected * got.size > 5
        stat, p = chisquare(counts[keep], expected[keep] / expected[keep].sum() * counts[keep].sum())
        assert p > 1e-3, (stat, p)
        assert expected.max() > 3 / train.n_items  # the policy is indeed far from uniform


def test_reinforce_moves_the_policy_towards_what_the_discriminator_rewards():
    train = toy_train()
    sampler = make_sampler("adversarial", train, dim=8, lr=0.05, temperature=1.0, steps=20, samples=8)
    favoured = 7

    def discriminator(users, items):  # D scores one item far above the others, for everyone
        return np.where(np.asarray(items) == favoured, 4.0, -1.0) + 0 * np.asarray(users)

    users = sampler.active
    free = ~train.contains(users, np.full(users.size, favoured))

    def drawn_share():  # the share of the favoured item among the draws for the users that may draw it
        out = sampler.sample(users[free], np.zeros(free.sum(), int), 200, rng=np.random.default_rng(0), score_fn=discriminator)
        return (out == favoured).mean()

    before, share_before = sampler.policy(users)[:, favoured], drawn_share()
    sampler.start_epoch(0, None)
    sampler.end_epoch(0, discriminator)
    after, share_after = sampler.policy(users)[:, favoured], drawn_share()
    assert (after[free] > 2 * before[free]).mean() > 0.9
    assert share_after > 2 * share_before  # the draws follow the updated generator
    stats = sampler.epoch_stats()
    assert stats["generator_updates"] == (20.0, 1.0) and stats["generator_seconds"][0] > 0
    assert stats["generator_reward"][1] == 20 * 8 * min(256, users.size)
    assert stats["generator_sampling_seconds"][0] > 0 and stats["generator_entropy"][1] > 0
    # refresh = 2: no training phase after the first epoch, one after the second
    sampler = make_sampler("adversarial", train, refresh=2, steps=1)
    sampler.start_epoch(0, None)
    sampler.end_epoch(0, discriminator)
    assert sampler.epoch_stats()["generator_updates"] == (0.0, 1.0)
    sampler.end_epoch(1, discriminator)
    assert sampler.epoch_stats()["generator_updates"] == (1.0, 1.0)


@pytest.mark.parametrize("params,message", [
    ({"dim": 0}, "dim: must be an integer >= 1, got 0"),
    ({"temperature": 0}, "temperature: must be > 0, got 0.0"),
    ({"lr": -1}, "lr: must be > 0, got -1.0"),
    ({"refresh": 0}, "refresh: must be an integer >= 1, got 0"),
    ({"reward": "log"}, "reward: must be one of softplus, sigmoid, got 'log'"),
])
def test_bad_parameters_name_the_key(params, message):
    with pytest.raises(ConfigError, match=rf"sampler 'adversarial': {message}"):
        make_sampler("adversarial", toy_train(), **params)


def test_adversarial_trains_logs_its_cost_and_resumes_exactly(tmp_path):
    from test_trainer import SMALL

    from raysearch.config import load_run_config
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import run_training
    from raysearch.train.rundir import RunDir
    from raysearch.train.trainer import InjectedFailure

    overrides = [*SMALL, "sampler=adversarial", "sampler.dim=8", "sampler.steps=2", "trainer.epochs=3",
                 "trainer.threads=1"]
    cfg = load_run_config(overrides)
    dataset = load_dataset(cfg.dataset, use_cache=False)
    full = run_training(cfg, dataset, RunDir(tmp_path / "full"))
    assert full["stages"]["train"]["epochs_run"] == 3
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        stats = record["sampler_stats"]
        assert stats["generator_updates"] == 2 and stats["generator_seconds"] > 0
        assert stats["generator_sampling_seconds"] > 0 and stats["generator_reward"] > 0
        assert record["sampling_seconds"] > 0  # the draws of the backbone's negatives
    cut = load_run_config([*overrides, "trainer.fail_after_epoch=1"])
    with pytest.raises(InjectedFailure):
        run_training(cut, dataset, RunDir(tmp_path / "cut"))
    resumed = run_training(cut, dataset, RunDir(tmp_path / "cut"))
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
