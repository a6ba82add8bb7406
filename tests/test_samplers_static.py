"""Static samplers (rns, pns, icpns, inbatch, mixed) and the exclusion machinery, against exact distributions.

Every distribution test compares draws with an independently computed reference (dense per-user weights,
as the official code computes them) by a chi-square test at a fixed seed, and shows that a wrong
distribution is rejected at the same threshold.
"""

import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.samplers import make_sampler
from raysearch.samplers.alias import RaggedAliasTable
from raysearch.samplers.exclusion import (
    SORT_QUERIES_ABOVE,
    Complement,
    ExcludingTables,
    PairSet,
    floyd_ranks,
    sorted_searchsorted,
)

P_MIN = 1e-3  # chi-square p-value threshold (fixed seeds: deterministic outcomes)


def chi2_pvalue(draws: np.ndarray, p: np.ndarray) -> float:
    """Chi-square p-value of ``draws`` against ``p`` (n,), asserting nothing outside the support is drawn."""
    p = np.asarray(p, dtype=float) / np.sum(p)
    counts = np.bincount(np.asarray(draws).ravel(), minlength=p.size)
    assert counts.size == p.size, "drew an id beyond the distribution"
    assert counts[p == 0].sum() == 0, f"drew outside the support: {np.flatnonzero((p == 0) & (counts > 0))}"
    keep = p > 0
    if keep.sum() == 1:
        return 1.0
    return float(chisquare(counts[keep], p[keep] * counts.sum()).pvalue)


def draw_for(sampler, user: int, n: int, seed: int = 0, pos: int | None = None) -> np.ndarray:
    """n negatives for one user in one call (one row, n slots)."""
    pos_item = sampler.train.row(user)[0] if pos is None else pos
    return sampler.sample(np.array([user]), np.array([pos_item]), n, rng=np.random.default_rng(seed))[0]


def popularity_train(n_users: int = 60, n_items: int = 40, nnz: int = 700, seed: int = 0) -> Interactions:
    """Random train split with Zipf-like item popularity (a few items never interacted with)."""
    rng = np.random.default_rng(seed)
    pop = np.arange(1, n_items + 1, dtype=float) ** -1.0
    pop[-4:] = 0.0
    users = rng.integers(0, n_users, nnz)
    items = rng.choice(n_items, size=nnz, p=pop / pop.sum())
    return Interactions.from_pairs(users, items, n_users, n_items)


def uniform_reference(train: Interactions, user: int) -> np.ndarray:
    p = np.ones(train.n_items)
    p[train.row(user)] = 0.0
    return p / p.sum()


def popularity_reference(train: Interactions, user: int, beta: float, smoothing: float = 0.0) -> np.ndarray:
    counts = np.bincount(train.indices, minlength=train.n_items).astype(float)
    drawable = counts > 0 if smoothing == 0 else np.ones(counts.size, dtype=bool)
    w = np.zeros(counts.size)
    w[drawable] = (counts[drawable] + smoothing) ** beta
    w[train.row(user)] = 0.0
    return w / w.sum()


# --------------------------------------------------------------------------- exclusion machinery
@pytest.mark.parametrize(("n_pairs", "n_users", "n_items"), [(0, 5, 7), (1, 3, 4), (1000, 50, 300), (300_000, 2000, 5000)])
def test_pair_set_membership_matches_isin(n_pairs, n_users, n_items):
    rng = np.random.default_rng(n_pairs)
    keys = np.unique(rng.integers(0, n_users, n_pairs) * n_items + rng.integers(0, n_items, n_pairs))
    users, items = keys // n_items, keys % n_items
    pairs = PairSet(users, items, n_users, n_items)
    if n_pairs >= 1000:
        assert pairs.shared_users.shape[0] > 0  # the shared-slot path is exercised
    q_users = np.concatenate([users, rng.integers(0, n_users, 50_000), [0, n_users - 1]])
    q_items = np.concatenate([items, rng.integers(0, n_items, 50_000), [n_items - 1, 0]])
    expected = np.isin(q_users * n_items + q_items, keys)
    np.testing.assert_array_equal(pairs.contains(q_users, q_items), expected)
    q_users, q_items = q_users[-3000:, None], q_items[None, :40]  # broadcast shapes
    np.testing.assert_array_equal(pairs.contains(q_users, q_items), np.isin(q_users * n_items + q_items, keys))
    # The rejection rounds' layout: per-row users (P,) against (width, P) items, shared slots included.
    row_users = np.concatenate([users[:500], rng.integers(0, n_users, 500)])
    trials = np.concatenate([np.tile(items[:500], (4, 1)), rng.integers(0, n_items, (4, 500))], axis=1)
    found = pairs.hits(pairs.slots(row_users), row_users, trials.astype(np.int32))
    np.testing.assert_array_equal(found, np.isin(row_users * n_items + trials, keys))


def test_rank_arithmetic_matches_brute_force():
    train = popularity_train(n_users=30, n_items=25, nnz=300)
    comp = Complement(train)
    for u in range(train.n_users):
        non_pos = np.setdiff1d(np.arange(train.n_items), train.row(u))
        users = np.full(non_pos.size, u)
        np.testing.assert_array_equal(comp.item_at(users, np.arange(non_pos.size)), non_pos)
        np.testing.assert_array_equal(comp.rank_of(users, non_pos), np.arange(non_pos.size))


def test_exact_uniform_path_is_uniform_over_non_positives():
    train = popularity_train()
    comp = Complement(train)
    draws = comp.uniform_exact(np.full(200_000, 3), np.random.default_rng(1))
    assert chi2_pvalue(draws, uniform_reference(train, 3)) > P_MIN


def test_floyd_draws_uniform_subsets():
    ranks = floyd_ranks(np.full(100_000, 5), 2, np.random.default_rng(2))
    assert np.all(ranks[:, 0] != ranks[:, 1]) and ranks.min() == 0 and ranks.max() == 4
    pair_codes = np.array([a * 5 + b for a, b in itertools.combinations(range(5), 2)])  # sorted
    low, high = ranks.min(axis=1), ranks.max(axis=1)
    counts = np.bincount(np.searchsorted(pair_codes, low * 5 + high), minlength=10)
    assert chisquare(counts).pvalue > P_MIN  # all 10 subsets equally likely
    # Negative control: the first column alone would be uniform, but the pair (0, 1) is not twice as likely.
    assert chisquare(counts, counts.sum() * np.r_[2, np.ones(9)] / 11).pvalue < P_MIN


def test_distinct_draws_are_distinct_non_positive_avoiding_and_uniform():
    train = popularity_train()
    comp = Complement(train)
    user = 5
    non_pos = np.setdiff1d(np.arange(train.n_items), train.row(user))
    avoid = non_pos[:3]
    rows = 40_000
    draws = comp.distinct(np.full(rows, user), 6, np.random.default_rng(3), avoid=np.tile(avoid, (rows, 1)))
    assert np.all(np.diff(np.sort(draws, axis=1), axis=1) > 0)
    assert not np.isin(draws, train.row(user)).any() and not np.isin(draws, avoid).any()
    allowed = np.setdiff1d(non_pos, avoid)
    # Each allowed item is in a uniform 6-subset with probability 6 / |allowed|: equal marginal counts.
    expected = np.zeros(train.n_items)
    expected[allowed] = 1.0
    assert chi2_pvalue(draws, expected) > P_MIN
    # The exact path (Floyd on ranks with the avoided ranks skipped) has the same marginals.
    exact = comp._distinct_exact(np.full(rows, user), 6, np.tile(np.sort(avoid), (rows, 1)),
                                 np.random.default_rng(4))
    assert np.all(np.diff(np.sort(exact, axis=1), axis=1) > 0)
    assert chi2_pvalue(exact, expected) > P_MIN


def test_excluding_tables_exact_path_matches_rejection_distribution():
    train = popularity_train()
    comp = Complement(train)
    w = np.random.default_rng(5).gamma(0.5, size=train.n_items)
    support = np.flatnonzero(w > 0.02)
    tables = RaggedAliasTable.from_segments(np.array([0, support.size]), w[support], support)
    rejection = ExcludingTables(comp, tables, [(0, 1.0)], exact_below=0.0)
    exact = ExcludingTables(comp, tables, [(0, 1.0)], exact_below=2.0)  # everyone takes the exact path
    assert not rejection.route.any() and np.all(exact.route[comp.n_free > 0] == 1)
    for user in (0, 7, 11):
        ref = np.zeros(train.n_items)
        ref[support] = w[support]
        ref[train.row(user)] = 0.0
        for ex, seed in ((rejection, 1), (exact, 2)):
            assert chi2_pvalue(ex.draw(np.full(200_000, user), np.random.default_rng(seed)), ref) > P_MIN


def test_rejection_rounds_stay_exact_when_most_trials_are_rejected():
    # Acceptance ~0.1 (above EXACT_BELOW): ~90% of rows are redrawn, most several times, through the
    # widening rounds (2, 4, 8, ... trials a row, the first accepted kept). The draws must still be the
    # excluded distribution, for the weighted tables and for uniform draws alike.
    n_items = 60
    heavy = np.arange(6)  # user 0 holds the six heaviest items
    users = np.concatenate([np.zeros(6, int), np.full(20, 1)])
    items = np.concatenate([heavy, np.arange(20, 40)])
    train = Interactions.from_pairs(users, items, 2, n_items)
    comp = Complement(train)
    w = np.r_[np.full(6, 15.0), np.ones(n_items - 6)]  # the heavy items hold 90/144 of the mass
    tables = RaggedAliasTable.from_segments(np.array([0, n_items]), w)
    ex = ExcludingTables(comp, tables, [(0, 1.0)])
    assert ex.route[0] == 0 and abs(ex.user_acceptance()[0] - 54 / 144) < 1e-12
    ref = w.copy()
    ref[heavy] = 0.0
    assert chi2_pvalue(ex.draw(np.full(200_000, 0), np.random.default_rng(11)), ref) > P_MIN
    # Uniform: user 2 of a 100-item catalogue holds 88 items, acceptance 0.12.
    train = Interactions.from_pairs(np.zeros(88, int), np.arange(6, 94), 1, 100)
    draws = Complement(train).uniform(np.full(200_000, 0), np.random.default_rng(12))
    assert chi2_pvalue(draws, uniform_reference(train, 0)) > P_MIN


# --------------------------------------------------------------------------- RNS
def test_rns_is_uniform_over_non_positives_and_rejects_the_wrong_distribution():
    train = popularity_train()
    rns = make_sampler("rns", train)
    for user in (0, 1, 2):
        draws = draw_for(rns, user, 200_000, seed=user)
        assert chi2_pvalue(draws, uniform_reference(train, user)) > P_MIN
    # Negative control: popularity-weighted non-positives are not what RNS draws.
    draws = draw_for(rns, 0, 200_000)
    assert chi2_pvalue(draws, popularity_reference(train, 0, beta=0.3, smoothing=1.0)) < P_MIN


def test_rns_user_with_few_non_positives_goes_through_the_exact_fallback():
    n_items = 500
    users = np.zeros(n_items - 3, dtype=int)
    train = Interactions.from_pairs(users, np.arange(3, n_items), 2, n_items)  # user 0 lacks only 0, 1, 2
    draws = draw_for(make_sampler("rns", train), 0, 60_000, pos=10)
    assert chi2_pvalue(draws, uniform_reference(train, 0)) > P_MIN


# --------------------------------------------------------------------------- PNS
@pytest.mark.parametrize(("beta", "smoothing"), [(1.0, 0.0), (0.5, 0.0), (0.0, 0.0), (1.0, 2.0), (-0.5, 0.0)])
def test_pns_matches_count_power_restricted_to_non_positives(beta, smoothing):
    train = popularity_train()
    pns = make_sampler("pns", train, beta=beta, smoothing=smoothing)
    for user in (0, 4):
        ref = popularity_reference(train, user, beta, smoothing)
        assert chi2_pvalue(draw_for(pns, user, 200_000, seed=user), ref) > P_MIN
    zero_count = np.bincount(train.indices, minlength=train.n_items) == 0
    drawn = np.unique(draw_for(pns, 0, 200_000))
    assert np.isin(np.flatnonzero(zero_count), drawn).all() == (smoothing > 0)


def test_pns_negative_control_wrong_beta_is_rejected():
    train = popularity_train()
    draws = draw_for(make_sampler("pns", train, beta=1.0), 0, 200_000)
    assert chi2_pvalue(draws, popularity_reference(train, 0, beta=0.8)) < P_MIN


def test_pns_heavy_user_takes_the_exact_path_and_full_coverage_falls_back_to_uniform():
    n_items = 30
    # Items 0..19 popular (users 1..10 hold them); user 0 holds items 0..18: little mass left.
    users = np.concatenate([np.repeat(np.arange(1, 11), 20), np.zeros(19, int), np.full(20, 11)])
    items = np.concatenate([np.tile(np.arange(20), 10), np.arange(19), np.arange(20)])
    train = Interactions.from_pairs(users, items, 12, n_items)
    pns = make_sampler("pns", train)
    assert pns.excluding.route[0] == 1  # acceptance 11/(19*11 + 11) < 0.05
    draws = draw_for(pns, 0, 50_000)
    assert np.all(draws == 19)  # the only popular non-positive left
    # User 11 holds every item with a positive count: uniform over its non-positives (items 20..29).
    assert pns.excluding.route[11] == 2
    assert chi2_pvalue(draw_for(pns, 11, 100_000), uniform_reference(train, 11)) > P_MIN


def test_pns_counts_come_from_the_given_split_only():
    train = popularity_train()
    pns = make_sampler("pns", train)
    counts = np.bincount(train.indices, minlength=train.n_items)
    np.testing.assert_allclose(pns.probabilities, counts / counts.sum())


# --------------------------------------------------------------------------- ICPNS
def icpns_train() -> tuple[Interactions, np.ndarray]:
    """Community 0: 40 random users; 1: users A, B, C built so that B's acceptance is < 0.05; 2: user D."""
    rng = np.random.default_rng(8)
    n_items = 80
    pop = np.arange(1, 71, dtype=float) ** -1.2
    u0 = rng.integers(0, 40, 500)
    i0 = rng.choice(70, size=500, p=pop / pop.sum())
    a, b, c, d = 40, 41, 42, 43
    users = np.concatenate([u0, np.full(60, a), np.full(57, b), [c, c], [d, d]])
    items = np.concatenate([i0, np.arange(60), np.arange(57), [57, 58], [60, 61]])
    communities = np.concatenate([np.zeros(40, int), [1, 1, 1, 2]])
    return Interactions.from_pairs(users, items, 44, n_items), communities


def icpns_reference(train: Interactions, communities: np.ndarray, user: int, alpha: float) -> np.ndarray:
    """The official per-user distribution, computed densely: w_c = count_c^alpha, P_u zeroed, else uniform."""
    dense = train.to_scipy().toarray().astype(np.float64)
    counts = dense[communities == communities[user]].sum(axis=0)
    w = np.where(counts > 0, counts**alpha, 0.0)
    w[train.row(user)] = 0.0
    if w.sum() == 0:
        return uniform_reference(train, user)
    return w / w.sum()


@pytest.mark.parametrize("alpha", [0.8, 0.3])
def test_icpns_matches_the_per_user_reference_for_every_path(alpha):
    train, communities = icpns_train()
    icpns = make_sampler("icpns", train, communities=communities, alpha=alpha)
    route = icpns.excluding.route
    assert route[41] == 1 and route[43] == 2 and not route[:40].any()  # exact, fallback, rejection
    for user in (0, 1, 2, 40, 41, 42, 43):
        ref = icpns_reference(train, communities, user, alpha)
        assert chi2_pvalue(draw_for(icpns, user, 100_000, seed=user), ref) > P_MIN, user


def test_icpns_never_draws_items_unseen_in_the_community():
    train, communities = icpns_train()
    icpns = make_sampler("icpns", train, communities=communities)
    seen = np.unique(train.indices[np.isin(train.row_ids(), np.flatnonzero(communities == 0))])
    rows = np.repeat(np.arange(40), 5000)
    draws = icpns.sample(rows, np.zeros(rows.size, int), 1, rng=np.random.default_rng(3))
    assert np.isin(draws, seen).all()
    assert np.setdiff1d(np.arange(train.n_items), seen).size > 0  # the check has teeth


def test_icpns_negative_control_global_popularity_is_rejected():
    train, communities = icpns_train()
    icpns = make_sampler("icpns", train, communities=communities, alpha=1.0)
    draws = draw_for(icpns, 0, 100_000)
    assert chi2_pvalue(draws, icpns_reference(train, communities, 0, alpha=0.6)) < P_MIN


def test_icpns_with_one_community_and_alpha_1_is_pns_with_beta_1():
    train = popularity_train()
    icpns = make_sampler("icpns", train, communities=np.zeros(train.n_users, int), alpha=1.0)
    pns = make_sampler("pns", train, beta=1.0)
    np.testing.assert_allclose(icpns.probabilities(0), pns.probabilities, rtol=1e-12)
    for user in (0, 3):
        ref = popularity_reference(train, user, beta=1.0)
        assert chi2_pvalue(draw_for(icpns, user, 200_000, seed=user), ref) > P_MIN
        assert chi2_pvalue(draw_for(pns, user, 200_000, seed=user + 10), ref) > P_MIN


def test_icpns_alpha_0_is_uniform_over_the_community_support_minus_positives():
    train, communities = icpns_train()
    icpns = make_sampler("icpns", train, communities=communities, alpha=0.0)
    support = np.unique(train.indices[np.isin(train.row_ids(), np.flatnonzero(communities == 0))])
    ref = np.zeros(train.n_items)
    ref[support] = 1.0
    ref[train.row(2)] = 0.0
    assert chi2_pvalue(draw_for(icpns, 2, 100_000), ref) > P_MIN


def test_icpns_extensions_smoothing_and_global_mix():
    train, communities = icpns_train()
    alpha, s, lam = 0.8, 0.5, 0.3
    icpns = make_sampler("icpns", train, communities=communities, alpha=alpha, smoothing=s, global_mix=lam)
    dense = train.to_scipy().toarray().astype(np.float64)
    user = 1
    local = dense[communities == 0].sum(axis=0)
    p_c = (local + s) ** alpha
    p_g = (dense.sum(axis=0) + s) ** alpha
    mix = (1 - lam) * p_c / p_c.sum() + lam * p_g / p_g.sum()
    np.testing.assert_allclose(icpns.probabilities(0), mix, rtol=1e-12)
    mix[train.row(user)] = 0.0
    assert chi2_pvalue(draw_for(icpns, user, 200_000), mix) > P_MIN
    # Off by default: no mixing, no smoothing.
    default = make_sampler("icpns", train, communities=communities)
    assert default.params.smoothing == 0.0 and default.params.global_mix == 0.0


def test_icpns_global_mix_for_a_community_without_support_draws_from_the_global_table():
    # Community 1 (users 4, 5) has no training interaction, so its table is empty: with a global mix its
    # users draw from the global part alone (the empty table holds no mass), without positives.
    users = np.array([0, 0, 1, 1, 2, 3, 3, 5])
    items = np.array([0, 1, 1, 2, 3, 0, 4, 2])
    communities = np.array([0, 0, 0, 0, 1, 1])
    train = Interactions.from_pairs(users[:-1], items[:-1], 6, 8)
    icpns = make_sampler("icpns", train, communities=communities, alpha=1.0, global_mix=0.3)
    assert icpns.support_sizes[1] == 0
    counts = np.bincount(train.indices, minlength=8).astype(float)
    assert chi2_pvalue(draw_for(icpns, 4, 100_000, pos=0), counts) > P_MIN
    train = Interactions.from_pairs(users, items, 6, 8)  # user 5 now holds item 2: community 1's support
    icpns = make_sampler("icpns", train, communities=communities, alpha=1.0, global_mix=0.3)
    counts = np.bincount(train.indices, minlength=8).astype(float)
    assert icpns.support_sizes[1] == 1
    ref = 0.7 * (np.arange(8) == 2) + 0.3 * counts / counts.sum()
    assert chi2_pvalue(draw_for(icpns, 4, 100_000, pos=0), ref) > P_MIN
    ref[2] = 0.0  # user 5's own positive covers its community's support: the global part alone is left
    assert chi2_pvalue(draw_for(icpns, 5, 100_000), ref) > P_MIN


def test_icpns_tables_hold_supports_only_and_expose_sizes():
    train, communities = icpns_train()
    icpns = make_sampler("icpns", train, communities=communities)
    np.testing.assert_array_equal(icpns.community_sizes, [40, 3, 1])
    assert icpns.support_sizes.sum() < 3 * train.n_items  # not K x n_items
    assert icpns.table_nbytes == icpns.tables.nbytes > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "sampler 'icpns': communities: required"),
        ({"communities": np.zeros(3, int)}, "communities: has 3 entries, the training split has 44 users"),
        ({"communities": -np.ones(44, int)}, "communities: ids must be >= 0"),
        ({"communities": np.zeros(44), "alpha": -1}, "sampler 'icpns': alpha: must be >= 0"),
        ({"communities": np.zeros(44), "global_mix": 2}, "global_mix: must be in \\[0, 1\\]"),
    ],
)
def test_icpns_bad_parameters(params, message):
    train, _ = icpns_train()
    with pytest.raises(ConfigError, match=message):
        make_sampler("icpns", train, **params)


# --------------------------------------------------------------------------- in-batch and mixed
def inbatch_setup() -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Row 0 (user 0, positives {0, 3}): the other rows' positives are 1, 1, 2, 3, 0 -> P(1)=2/3, P(2)=1/3."""
    users = np.array([0, 0, 1, 2, 3, 4, 5])
    items = np.array([0, 3, 1, 1, 2, 3, 0])
    train = Interactions.from_pairs(users, items, 6, 10)
    return train, np.array([0, 1, 2, 3, 4, 5]), np.array([0, 1, 1, 2, 3, 0])


def test_inbatch_draws_other_rows_positives_in_proportion():
    train, users, pos = inbatch_setup()
    out = make_sampler("inbatch", train).sample(users, pos, 60_000, rng=np.random.default_rng(0))
    expected = np.zeros(10)
    expected[[1, 2]] = [2, 1]
    assert chi2_pvalue(out[0], expected) > P_MIN
    wrong = np.zeros(10)
    wrong[[1, 2]] = [1, 1]  # uniform over distinct batch items: not the in-batch distribution
    assert chi2_pvalue(out[0], wrong) < P_MIN


def test_inbatch_exact_fallback_and_uniform_fallback():
    n_items = 400
    # User 0 holds every item used in the batch except 398 and 399 (one row each): acceptance 2/299.
    train = Interactions.from_pairs(np.zeros(298, int), np.arange(298), 2, n_items)
    pos = np.concatenate([[0], np.arange(1, 298), [398, 399]])
    users = np.concatenate([[0], np.ones(299, int)])
    out = make_sampler("inbatch", train).sample(users, pos, 4000, rng=np.random.default_rng(1))
    expected = np.zeros(n_items)
    expected[[398, 399]] = 1.0
    assert chi2_pvalue(out[0], expected) > P_MIN
    # A batch of one row, and a row with no qualifying other row: uniform over non-positives.
    single = make_sampler("inbatch", train).sample([0], [0], 20_000, rng=np.random.default_rng(2))[0]
    assert chi2_pvalue(single, uniform_reference(train, 0)) > P_MIN
    none = make_sampler("inbatch", train).sample([0, 0], [0, 1], 20_000, rng=np.random.default_rng(3))[0]
    assert chi2_pvalue(none, uniform_reference(train, 0)) > P_MIN


def test_inbatch_never_returns_the_rows_own_positive_item():
    # Row 0's positive (item 5, e.g. a held-out item) is not in user 0's train row: still excluded.
    train = Interactions.from_pairs([0, 1, 2], [0, 5, 6], 3, 10)
    out = make_sampler("inbatch", train).sample([0, 1, 2], [5, 5, 6], 1000, rng=np.random.default_rng(5))
    assert np.all(out[0] == 6)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_mixed_is_the_per_slot_mixture_of_uniform_and_inbatch(share):
    train, users, pos = inbatch_setup()
    out = make_sampler("mixed", train, uniform_share=share).sample(users, pos, 100_000, rng=np.random.default_rng(4))
    inbatch = np.zeros(10)
    inbatch[[1, 2]] = [2 / 3, 1 / 3]
    expected = share * uniform_reference(train, 0) + (1 - share) * inbatch
    assert chi2_pvalue(out[0], expected) > P_MIN
    if 0 < share < 1:
        wrong = 0.5 * uniform_reference(train, 0) + 0.5 * inbatch
        assert chi2_pvalue(out[0], wrong) < P_MIN


def test_mixed_rejects_a_share_outside_0_1():
    train, _, _ = inbatch_setup()
    with pytest.raises(ConfigError, match="sampler 'mixed': uniform_share: must be in \\[0, 1\\], got 1.5"):
        make_sampler("mixed", train, uniform_share=1.5)


# --------------------------------------------------------------------------- rejection rounds, skewed data
def skewed_train() -> tuple[Interactions, np.ndarray]:
    """Zipf popularity, ~20 positives a user (acceptance ~0.75 under popularity: several redraw rounds),
    a heavy user 299 (every other item of the popular three quarters), 3 communities, shared PairSet slots."""
    rng = np.random.default_rng(9)
    n_users, n_items = 300, 400
    pop = np.arange(1, n_items + 1, dtype=float) ** -1.0
    users = rng.integers(0, n_users - 1, 6000)
    items = rng.choice(n_items, size=6000, p=pop / pop.sum())
    heavy = np.arange(0, 300, 2)
    users = np.concatenate([users, np.full(heavy.size, n_users - 1)])
    items = np.concatenate([items, heavy])
    return Interactions.from_pairs(users, items, n_users, n_items), np.arange(n_users) % 3


def test_rows_rejected_through_every_round_take_the_exact_path():
    # Acceptance 5e-4 with the exact route switched off: a row is still rejected after the 16 rounds (767
    # trials) with probability (1 - 5e-4)^767 ~ 0.68, and must then come from the exact path, unbiased.
    n_items = 2000
    train = Interactions.from_pairs(np.zeros(10, int), np.arange(10), 1, n_items)
    comp = Complement(train)
    w = np.r_[np.full(10, 4e5), np.ones(n_items - 10)]
    tables = RaggedAliasTable.from_segments(np.array([0, n_items]), w)
    ex = ExcludingTables(comp, tables, [(0, 1.0)], exact_below=0.0)
    assert 4e-4 < ex.user_acceptance()[0] < 6e-4 and ex.route[0] == 0
    draws = ex.draw(np.zeros(20_000, dtype=np.int64), np.random.default_rng(13))
    ref = w.copy()
    ref[:10] = 0.0
    assert chi2_pvalue(draws, ref) > P_MIN


def test_draws_are_thread_safe():
    # A sampler holds no per-call state: threads drawing at once get what each would get alone.
    from concurrent.futures import ThreadPoolExecutor

    train, communities = skewed_train()
    sampler = make_sampler("icpns", train, communities=communities, global_mix=0.3)
    users_all, items_all = train.pairs()
    rows = np.random.default_rng(2).integers(0, train.nnz, (8, 20_000))

    def draw(t: int) -> np.ndarray:
        return sampler.sample(users_all[rows[t]], items_all[rows[t]], 2, rng=np.random.default_rng(t))

    alone = [draw(t) for t in range(8)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(draw, range(8)))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- ICPNS from prebuilt tables
@pytest.mark.parametrize("params", [{"alpha": 0.8}, {"alpha": 0.5, "smoothing": 1.0, "global_mix": 0.2}])
def test_icpns_from_shipped_read_only_tables_draws_exactly_as_a_direct_build(params):
    from raysearch.samplers.icpns import ICPNS, community_tables

    train, communities = skewed_train()
    direct = make_sampler("icpns", train, communities=communities, **params)
    tables, components = community_tables(train, communities, **params)
    assert len(components) == 1 + ("global_mix" in params)
    # What a worker gets from ray.get: read-only, zero-copy arrays.
    shipped = {}
    for key, a in tables.to_arrays().items():
        shipped[key] = a.copy()
        shipped[key].flags.writeable = False
    worker = ICPNS(train, {"communities": communities, **params}, tables=RaggedAliasTable.from_arrays(shipped))
    assert worker.tables.cells is shipped["cells"] and worker.tables.p is shipped["p"]
    users_all, items_all = train.pairs()
    rows = np.random.default_rng(4).integers(0, train.nnz, 5000)
    np.testing.assert_array_equal(
        worker.sample(users_all[rows], items_all[rows], 3, rng=np.random.default_rng(5)),
        direct.sample(users_all[rows], items_all[rows], 3, rng=np.random.default_rng(5)),
    )
    np.testing.assert_array_equal(worker.probabilities(1), direct.probabilities(1))
    assert all(not a.flags.writeable for a in shipped.values())


def test_icpns_rejects_tables_that_do_not_fit_its_parameters():
    from raysearch.samplers.icpns import ICPNS, community_tables

    train, communities = skewed_train()
    tables, _ = community_tables(train, communities, alpha=0.8)
    with pytest.raises(ConfigError, match=r"sampler 'icpns': tables: 3 tables given, the parameters need 4 "
                                          r"\(3 communities \+ the global one\)"):
        ICPNS(train, {"communities": communities, "global_mix": 0.5}, tables=tables)
    small = Interactions.from_pairs(train.pairs()[0], np.minimum(train.pairs()[1], 99), 300, 100)
    with pytest.raises(ConfigError, match="tables: item id 399 is out of range for 100 items"):
        ICPNS(small, {"communities": communities}, tables=tables)


@pytest.mark.parametrize("n_queries", [1000, SORT_QUERIES_ABOVE + 1001])
def test_sorted_searchsorted_answers_as_numpy_does_in_the_queries_order(n_queries):
    rng = np.random.default_rng(7)
    haystack = np.unique(rng.integers(0, 10**6, 50_000))
    queries = rng.integers(-5, 10**6 + 5, n_queries).reshape(-1, 1)  # below, inside and beyond the keys
    out = sorted_searchsorted(haystack, queries)
    assert out.shape == queries.shape and out.dtype == np.int64
    np.testing.assert_array_equal(out, np.searchsorted(haystack, queries))
