"""log q(j | u) of the static samplers (logQ correction): equal to the dense reference distribution of
each sampler, normalised over the items a slot can draw, and matching what the sampler draws
(chi-square, fixed seeds); samplers without a closed-form q refuse."""

import numpy as np
import pytest
from test_samplers_static import (
    P_MIN,
    chi2_pvalue,
    icpns_reference,
    icpns_train,
    popularity_reference,
    popularity_train,
    uniform_reference,
)

from raysearch.errors import ConfigError
from raysearch.samplers import make_sampler
from raysearch.samplers.base import log_q_samplers


def q_of_every_item(sampler, user: int, pos: int) -> np.ndarray:
    """exp(log q) of every item for one (user, positive) row: (n_items,), 0 at the user's positives."""
    items = np.arange(sampler.n_items)[None, :]
    q = np.exp(sampler.log_q(np.array([user]), np.array([pos]), items))[0]
    q[sampler.train.row(user)] = 0.0
    return q


@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_rns_and_pns_log_q_equal_their_reference_distributions(beta):
    train = popularity_train()
    rns, pns = make_sampler("rns", train), make_sampler("pns", train, beta=beta)
    for user in range(train.n_users):
        pos = int(train.row(user)[0]) if train.row(user).size else 0
        np.testing.assert_allclose(q_of_every_item(rns, user, pos), uniform_reference(train, user), rtol=1e-12)
        np.testing.assert_allclose(q_of_every_item(pns, user, pos), popularity_reference(train, user, beta),
                                   rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("alpha", [0.8, 0.3])
def test_icpns_log_q_equals_the_per_user_reference_on_every_path(alpha):
    train, communities = icpns_train()  # rejection, exact-path and uniform-fallback users
    sampler = make_sampler("icpns", train, communities=communities, alpha=alpha)
    assert set(sampler.excluding.route.tolist()) == {0, 1, 2}
    for user in range(train.n_users):
        pos = int(train.row(user)[0])
        np.testing.assert_allclose(q_of_every_item(sampler, user, pos),
                                   icpns_reference(train, communities, user, alpha), rtol=1e-10, atol=1e-300)


def test_icpns_log_q_with_the_global_mix_sums_to_one_and_matches_the_draws():
    train, communities = icpns_train()
    sampler = make_sampler("icpns", train, communities=communities, alpha=0.5, global_mix=0.3)
    for user in (0, 41, 43):
        q = q_of_every_item(sampler, user, int(train.row(user)[0]))
        assert q.sum() == pytest.approx(1.0, rel=1e-12)
        draws = sampler.sample(np.array([user]), train.row(user)[:1], 20000, rng=np.random.default_rng(user))
        assert chi2_pvalue(draws, q) > P_MIN


@pytest.mark.parametrize("name,params", [("inbatch", {}), ("mixed", {"uniform_share": 0.3})])
def test_batch_dependent_log_q_sums_to_one_and_matches_the_draws(name, params):
    train = popularity_train(n_users=30, n_items=25, nnz=200)
    sampler = make_sampler(name, train, **params)
    rng = np.random.default_rng(5)
    users, pos = train.pairs()
    pick = rng.choice(users.size, 12, replace=False)
    users, pos = users[pick], pos[pick]
    users[-1], pos[-1] = users[0], pos[0]  # a repeated row: its positive is blocked twice
    draws = sampler.sample(users, pos, 20000, rng=np.random.default_rng(7))  # (12, 20000)
    items = np.broadcast_to(np.arange(train.n_items), (users.size, train.n_items))
    q = np.exp(sampler.log_q(users, pos, items))
    for row in range(users.size):
        q[row, train.row(users[row])] = 0.0
        q[row, pos[row]] = 0.0
        assert q[row].sum() == pytest.approx(1.0, rel=1e-12)
        assert chi2_pvalue(draws[row], q[row]) > P_MIN
    # the same log q whether asked for all items at once or for the drawn ones
    np.testing.assert_allclose(sampler.log_q(users, pos, draws[:, :50]),
                               np.log(np.take_along_axis(q, draws[:, :50], axis=1)), rtol=1e-12)


def test_inbatch_log_q_of_a_row_with_nothing_to_take_is_uniform():
    train = popularity_train(n_users=30, n_items=25, nnz=200)
    sampler = make_sampler("inbatch", train)
    user = 3
    own = train.row(user)
    users, pos = np.array([user, user]), np.array([own[0], own[-1]])  # every batch positive is the user's
    negatives = np.array([[np.setdiff1d(np.arange(25), own)[0]]] * 2)
    np.testing.assert_allclose(sampler.log_q(users, pos, negatives), -np.log(25 - own.size))


@pytest.mark.parametrize("name", ["dns", "srns", "gdns"])
def test_samplers_without_a_closed_form_q_refuse(name, toy_train):
    assert name not in log_q_samplers()
    sampler = make_sampler(name, toy_train)
    with pytest.raises(ConfigError, match=rf"trainer.logq_correction: sampler '{name}' has no closed-form "
                                          r"proposal q\(j \| u\) \(samplers with one: icpns, inbatch, mixed, pns, rns\)"):
        sampler.log_q(np.array([0]), np.array([0]), np.array([[1]]))
