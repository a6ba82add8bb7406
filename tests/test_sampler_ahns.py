"""AHNS against a brute-force reference of its selection rule, on a fixed score table."""

import numpy as np
import pytest

from raysearch.errors import ConfigError
from raysearch.samplers import make_sampler
from raysearch.samplers.base import broadcasting


def table_scorer(table: np.ndarray):
    @broadcasting
    def score(users, items):
        return table[np.asarray(users), np.asarray(items)]

    return score


@pytest.mark.parametrize("params", [{}, {"alpha": 0.1, "beta": 0.4, "n_negs": 16}, {"p": -3, "n_negs": 5}])
def test_ahns_picks_the_candidate_closest_to_the_adaptive_target(params, toy_train):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(4, 6))
    sampler = make_sampler("ahns", toy_train, **params)
    p = sampler.params
    users, pos = np.array([0, 0, 1, 2, 1]), np.array([0, 2, 1, 4, 2])
    got = sampler.sample(users, pos, 3, rng=np.random.default_rng(7), score_fn=table_scorer(table))
    # the same candidates: the sampler's first use of its generator
    cand = sampler.complement.uniform(np.repeat(users, 3 * p.n_negs), np.random.default_rng(7))
    cand = cand.reshape(users.size, 3, p.n_negs)
    for b in range(users.size):  # brute force, one row and slot at a time
        target = p.beta * (table[users[b], pos[b]] + p.alpha) ** (p.p + 1)
        for s in range(3):
            gaps = [abs(table[users[b], j] - target) for j in cand[b, s]]
            assert got[b, s] == cand[b, s, int(np.argmin(gaps))]
            assert got[b, s] not in toy_train.row(users[b])


def test_ahns_row_with_an_infinite_target_keeps_its_first_candidate(toy_train):
    table = np.zeros((4, 6))
    table[0, 0] = -1.0  # s_pos + alpha = 0: beta / 0
    sampler = make_sampler("ahns", toy_train, n_negs=4)
    got = sampler.sample(np.array([0]), np.array([0]), 1, rng=np.random.default_rng(3), score_fn=table_scorer(table))
    first = sampler.complement.uniform(np.repeat([0], 4), np.random.default_rng(3))[0]
    assert got[0, 0] == first


@pytest.mark.parametrize("params,message", [
    ({"n_negs": 0}, "n_negs: must be >= 1, got 0"),
    ({"beta": 0.0}, "beta: must be > 0, got 0.0"),
    ({"alpha": -1.0}, "alpha: must be >= 0, got -1.0"),
    ({"p": 0}, r"p: must be <= -1 \(a target that does not grow with the positive's score\), got 0"),
])
def test_ahns_bad_parameters_name_the_key(params, message, toy_train):
    with pytest.raises(ConfigError, match=rf"sampler 'ahns': {message}"):
        make_sampler("ahns", toy_train, **params)
