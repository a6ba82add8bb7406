"""Dynamic samplers (dns, srns, gdns) with mock scorers whose behaviour is known in closed form."""

import math

import numpy as np
import pytest
from scipy.stats import binom, chisquare

from raysearch.data.interactions import Interactions
from raysearch.errors import SamplingError
from raysearch.samplers import make_sampler

P_MIN = 1e-3


def chi2_pvalue(counts: np.ndarray, p: np.ndarray) -> float:
    p = np.asarray(p, dtype=float) / np.sum(p)
    counts = np.asarray(counts)
    assert counts[p == 0].sum() == 0
    keep = p > 0
    return float(chisquare(counts[keep], p[keep] * counts.sum()).pvalue)


def item_id_scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """s(u, j) = j."""
    return items.astype(np.float32)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- DNS
def dns_train() -> tuple[Interactions, np.ndarray]:
    positives = np.array([0, 10, 20, 30, 40])
    train = Interactions.from_pairs(np.zeros(5, int), positives, 1, 50)
    return train, np.setdiff1d(np.arange(50), positives)


def dns_pmf(non_pos: np.ndarray, m: int, n_top: int) -> np.ndarray:
    """Exact pmf over items of a uniform pick among the top N of M i.i.d. uniform non-positives, s(j) = j."""
    f = np.arange(1, non_pos.size + 1) / non_pos.size  # F(x) at each non-positive, in increasing order
    # P(r-th largest <= x) = P(at most r - 1 of the M exceed x); average over r = 1..N.
    cdf = np.mean([binom.cdf(r - 1, m, 1.0 - f) for r in range(1, n_top + 1)], axis=0)
    pmf = np.zeros(50)
    pmf[non_pos] = np.diff(np.concatenate([[0.0], cdf]))
    return pmf


def dns_counts(m: int, n_top: int, draws: int = 100_000, seed: int = 0) -> np.ndarray:
    train, _ = dns_train()
    dns = make_sampler("dns", train, num_candidates=m, top_n=n_top)
    out = dns.sample([0], [0], draws, rng=np.random.default_rng(seed), score_fn=item_id_scorer)
    return np.bincount(out.ravel(), minlength=50)


@pytest.mark.parametrize("m", [2, 5, 10])
def test_dns_with_score_j_has_cdf_F_to_the_M(m):
    _, non_pos = dns_train()
    counts = dns_counts(m, 1)
    f = np.arange(1, non_pos.size + 1) / non_pos.size
    np.testing.assert_allclose(dns_pmf(non_pos, m, 1)[non_pos], np.diff(np.concatenate([[0.0], f**m])))
    assert chi2_pvalue(counts, dns_pmf(non_pos, m, 1)) > P_MIN
    ecdf = np.cumsum(counts[non_pos]) / counts.sum()
    assert np.abs(ecdf - f**m).max() < 0.01  # P(out <= r) = F(r)^M
    assert chi2_pvalue(counts, dns_pmf(non_pos, m - 1, 1)) < P_MIN  # the wrong M is rejected


def test_dns_with_one_candidate_is_rns():
    _, non_pos = dns_train()
    uniform = np.zeros(50)
    uniform[non_pos] = 1.0
    assert chi2_pvalue(dns_counts(1, 1), uniform) > P_MIN
    assert chi2_pvalue(dns_counts(10, 1), uniform) < P_MIN


@pytest.mark.parametrize(("m", "n_top"), [(10, 3), (6, 6), (4, 2)])
def test_dns_mn_is_uniform_among_the_top_n(m, n_top):
    _, non_pos = dns_train()
    counts = dns_counts(m, n_top, seed=m)
    assert chi2_pvalue(counts, dns_pmf(non_pos, m, n_top)) > P_MIN
    if n_top < m:
        assert chi2_pvalue(counts, dns_pmf(non_pos, m, 1)) < P_MIN


def test_dns_needs_a_scorer_and_checks_its_output():
    train, _ = dns_train()
    dns = make_sampler("dns", train)
    with pytest.raises(SamplingError, match="sampler 'dns' is dynamic: sample\\(\\) needs score_fn"):
        dns.sample([0], [0], rng=0)
    with pytest.raises(SamplingError, match="score_fn returned shape \\(3,\\) for 10"):
        dns.sample([0], [0], rng=0, score_fn=lambda u, i: np.zeros(3))


# --------------------------------------------------------------------------- SRNS
def srns_train(n_users: int = 50, n_items: int = 60, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 6)
    items = rng.integers(0, n_items, users.size)
    return Interactions.from_pairs(users, items, n_users, n_items)


def first_positive(train: Interactions, users: np.ndarray) -> np.ndarray:
    return train.indices[train.indptr[users]]


def test_srns_memory_stays_s1_unique_non_positive_items():
    train = srns_train()
    srns = make_sampler("srns", train, memory_size=6)
    rng = np.random.default_rng(1)
    scorer = lambda u, i: np.sin(u * 7.0 + i * 3.0).astype(np.float32)  # noqa: E731
    for epoch in range(3):
        srns.start_epoch(epoch, rng)
        for _ in range(10):
            users = rng.integers(0, train.n_users, 40)
            out = srns.sample(users, first_positive(train, users), 2, rng=rng, score_fn=scorer)
            assert out.shape == (40, 2) and not train.contains(users[:, None], out).any()
        srns.end_epoch(epoch, scorer)
    memory = srns.memory[srns.initialized]
    assert memory.shape[1] == 6
    assert np.all(np.diff(np.sort(memory, axis=1), axis=1) > 0)
    rows = np.flatnonzero(srns.initialized)
    assert not train.contains(rows[:, None], memory).any()


def test_srns_alpha_0_picks_the_memory_item_with_the_highest_current_score():
    train = srns_train()
    srns = make_sampler("srns", train, alpha=0.0)
    scorer = lambda u, i: ((i * 37 + u * 11) % 101).astype(np.float32)  # noqa: E731
    rng = np.random.default_rng(2)
    users = np.arange(train.n_users)
    pos = first_positive(train, users)
    srns.sample(users, pos, rng=rng, score_fn=scorer)  # initialise and update memories
    memory = srns.memory.copy()
    out = srns.sample(users, pos, rng=rng, score_fn=scorer)[:, 0]
    best = memory[users, scorer(np.repeat(users, 8), memory.ravel()).reshape(-1, 8).argmax(axis=1)]
    np.testing.assert_array_equal(out, best)


def test_srns_std_over_snapshots():
    train = srns_train()
    srns = make_sampler("srns", train)
    users = np.array([0, 1])
    pos = first_positive(train, users)
    items = np.array([[5, 6], [7, 8]])
    srns.end_epoch(0, lambda u, i: np.zeros(u.size, np.float32))
    np.testing.assert_array_equal(srns._std(users, pos, items), 0.0)  # fewer than 2 snapshots
    srns.end_epoch(1, lambda u, i: np.zeros(u.size, np.float32))
    np.testing.assert_array_equal(srns._std(users, pos, items), 0.0)  # constant scores: std 0
    # Snapshot scores of every negative: 0, 1, 3 (positives score 0): population std of the sigmoids.
    srns = make_sampler("srns", train)
    for level in (0.0, 1.0, 3.0):
        srns.end_epoch(0, lambda u, i, v=level: np.where(np.isin(i, pos), 0.0, v).astype(np.float32))
    values = [sig(0.0), sig(1.0), sig(3.0)]
    mean = sum(values) / 3
    expected = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    np.testing.assert_allclose(srns._std(users, pos, items), expected, rtol=1e-6)
    for _ in range(5):  # only the last 5 snapshots count: after these, all five are constant
        srns.end_epoch(0, lambda u, i: np.ones(u.size, np.float32))
    assert srns.n_snapshots == 5
    np.testing.assert_array_equal(srns._std(users, pos, items), 0.0)


def test_srns_std_term_ramps_in_with_warmup():
    # One user, memory {1, 2}: current likelihood favours item 1, the snapshot variance favours item 2.
    train = Interactions.from_pairs(np.zeros(16, int), np.arange(3, 19), 1, 19)
    srns = make_sampler("srns", train, memory_size=2, alpha=5.0, warmup=10.0)
    srns.load_state_dict({"memory": np.array([[1, 2]]), "initialized": np.array([True]), "epoch": 0})
    current = lambda u, i: np.where(i == 1, 0.5, 0.0).astype(np.float32)  # noqa: E731
    for level in (-2.0, 2.0):
        srns.end_epoch(0, lambda u, i, v=level: np.where(i == 2, v, 0.0).astype(np.float32))
    rng = np.random.default_rng(0)
    assert srns.sample([0], [3], rng=rng, score_fn=current)[0, 0] == 1  # epoch 0: ramp 0
    srns.load_state_dict({"memory": np.array([[1, 2]]), "initialized": np.array([True]), "epoch": 5})
    # ramp 0.5: 5 * 0.5 * std(sigmoid(-2), sigmoid(2)) = 1.9 > sigmoid(0.5) - sigmoid(0)
    assert srns.sample([0], [3], rng=rng, score_fn=current)[0, 0] == 2


def pair_probabilities(p: np.ndarray) -> np.ndarray:
    """P({a, b}) for two draws without replacement, sequentially proportional to p: (n, n), a < b."""
    pa, pb = p[:, None], p[None, :]
    pairs = pa * pb / (1 - pa) + pb * pa / (1 - pb)
    return np.triu(pairs, k=1)


def test_srns_memory_update_keeps_items_without_replacement_by_softmax():
    # 40k users, each with exactly 18 non-positives: the update always sees all 18 as candidates
    # (memory 2 + 16 fresh), and keeps 2 of them sequentially without replacement ~ softmax(s / tau).
    n_users, tau = 40_000, 2.0
    train = Interactions.from_pairs(np.arange(n_users), np.full(n_users, 18), n_users, 19)
    srns = make_sampler("srns", train, memory_size=2, tau=tau)
    scorer = lambda u, i: (0.3 * i).astype(np.float32)  # noqa: E731
    users = np.arange(n_users)
    srns.sample(users, np.full(n_users, 18), rng=np.random.default_rng(4), score_fn=scorer)
    kept = np.sort(srns.memory, axis=1)
    counts = np.zeros((18, 18))
    np.add.at(counts, (kept[:, 0], kept[:, 1]), 1)
    upper = np.triu_indices(18, k=1)
    softmax = np.exp(0.3 * np.arange(18) / tau)
    assert chi2_pvalue(counts[upper], pair_probabilities(softmax / softmax.sum())[upper]) > P_MIN
    flatter = np.exp(0.3 * np.arange(18) / (1.5 * tau))
    assert chi2_pvalue(counts[upper], pair_probabilities(flatter / flatter.sum())[upper]) < P_MIN


def test_srns_index_memory_points_into_a_pool_replaced_every_epoch():
    train = srns_train()
    srns = make_sampler("srns", train, index_memory=True, pool_size=100)
    rng = np.random.default_rng(5)
    srns.start_epoch(0, rng)
    assert srns.pool.dtype == np.int32 and srns.pool.shape == (train.n_users, 100)
    assert not train.contains(np.arange(train.n_users)[:, None], srns.pool).any()
    users = np.arange(train.n_users)
    out = srns.sample(users, first_positive(train, users), rng=rng, score_fn=item_id_scorer)
    assert srns.memory.dtype == np.int32 and srns.memory.max() < 100
    assert np.all(np.diff(np.sort(srns.memory, axis=1), axis=1) > 0)
    memory, pool = srns.memory.copy(), srns.pool.copy()
    assert np.isin(out[:, 0], pool).all()
    srns.start_epoch(1, rng)
    np.testing.assert_array_equal(srns.memory, memory)  # the quirk: indices kept ...
    assert (srns.pool != pool).mean() > 0.9  # ... into a new pool


def test_srns_rejects_more_negatives_than_memory():
    train = srns_train()
    with pytest.raises(SamplingError, match="num_negatives=9 exceeds memory_size=8"):
        make_sampler("srns", train).sample([0], [0], 9, rng=0, score_fn=item_id_scorer)


# --------------------------------------------------------------------------- GDNS
def gdns_two_items(**params) -> tuple:
    """One user, positive item 0, non-positives {1, 2}: N = 1, M = 2, no refresh."""
    train = Interactions.from_pairs([0], [0], 1, 3)
    gdns = make_sampler("gdns", train, group_size=1, num_candidates=2, refresh=0.0, **params)
    return train, gdns


def table_scorer(scores: dict[int, float]):
    return lambda u, i: np.array([scores[int(j)] for j in i], dtype=np.float32)


def gains_by_item(gdns) -> dict[int, float]:
    state = gdns.pool_state(np.array([0]))
    return {int(j): float(g) for j, g in zip(state["items"][0], state["G"][0], strict=True)}


def test_gdns_gain_update_by_hand_over_two_steps():
    _, gdns = gdns_two_items(alpha=0.2, eps=1e-8, init_gain=0.0, init_gap=None)  # fresh: gain term 0.5
    rng = np.random.default_rng(0)
    step1 = {0: 1.0, 1: 0.5, 2: -1.0}
    step2 = {0: 0.0, 1: 1.0, 2: -0.5}
    gdns.sample_groups([0], rng, table_scorer(step1))
    h1 = {j: sig(step1[j] - step1[0]) for j in (1, 2)}
    assert gains_by_item(gdns) == pytest.approx({1: 0.8 * 0.5, 2: 0.8 * 0.5}, rel=1e-6)  # unseen: (1 - a) 0.5
    gdns.sample_groups([0], rng, table_scorer(step2))
    h2 = {j: sig(step2[j] - step2[0]) for j in (1, 2)}
    expected = {j: 0.2 * 0.4 + 0.8 * sig((h1[j] - h2[j]) / (h2[j] + 1e-8)) for j in (1, 2)}
    assert gains_by_item(gdns) == pytest.approx(expected, rel=1e-6)
    state = gdns.pool_state(np.array([0]))
    assert dict(zip(state["items"][0].tolist(), state["H_prev"][0].tolist(), strict=True)) == pytest.approx(h2)


def test_gdns_paper_initialisation_g0_h0_equal_1():
    _, gdns = gdns_two_items(alpha=0.2, init_gain=1.0, init_gap=1.0)
    step = {0: 1.0, 1: 0.5, 2: -1.0}
    gdns.sample_groups([0], np.random.default_rng(0), table_scorer(step))
    h = {j: sig(step[j] - step[0]) for j in (1, 2)}
    expected = {j: 0.2 + 0.8 * sig((1.0 - h[j]) / (h[j] + 1e-8)) for j in (1, 2)}
    assert gains_by_item(gdns) == pytest.approx(expected, rel=1e-6)


def test_gdns_alpha_1_freezes_the_gain():
    _, gdns = gdns_two_items(alpha=1.0, init_gain=0.7)
    rng = np.random.default_rng(0)
    for scale in (1.0, -2.0, 5.0):
        gdns.sample_groups([0], rng, lambda u, i, s=scale: (s * i).astype(np.float32))
        assert gains_by_item(gdns) == pytest.approx({1: 0.7, 2: 0.7})
    assert gdns.seen[0].all()


def gdns_train(n_users: int = 30, n_items: int = 200, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 10)
    return Interactions.from_pairs(users, rng.integers(0, n_items, users.size), n_users, n_items)


def test_gdns_negative_group_is_the_top_n_by_previous_gain():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=3, num_candidates=8, refresh=0.0)
    rng = np.random.default_rng(1)
    gdns.sample_groups([4], rng, item_id_scorer)  # fills user 4's pool
    state = gdns.state_dict()
    state["gain"][4] = [0.1, 0.9, 0.5, 0.95, 0.2, 0.3, 0.8, 0.0]
    gdns.load_state_dict(state)
    _, neg = gdns.sample_groups([4], rng, item_id_scorer)
    np.testing.assert_array_equal(np.sort(neg[0]), np.sort(state["items"][4][[1, 3, 6]]))


def test_gdns_ties_are_broken_uniformly_at_random():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=2, num_candidates=8, refresh=0.0, alpha=1.0)
    rng = np.random.default_rng(2)
    counts = {}
    for _ in range(4000):  # alpha = 1 keeps every G at its initial value: all tied
        _, neg = gdns.sample_groups([0], rng, item_id_scorer)
        for j in neg[0]:
            counts[int(j)] = counts.get(int(j), 0) + 1
    assert len(counts) == 8
    assert chisquare(list(counts.values())).pvalue > P_MIN


def test_gdns_groups_positives_with_replacement_and_negatives_never_positive():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=32)
    users = np.arange(train.n_users)
    for _ in range(5):
        pos, neg = gdns.sample_groups(users, np.random.default_rng(3), item_id_scorer)
        assert pos.shape == neg.shape == (train.n_users, 32) and pos.dtype == neg.dtype == np.int64
        assert train.contains(users[:, None], pos).all()  # 32 draws from <= 10 positives: repeats
        assert not train.contains(users[:, None], neg).any()


def test_gdns_state_is_o_users_times_pool():
    train = gdns_train(n_users=100, n_items=10_000)
    gdns = make_sampler("gdns", train, group_size=4)  # M = 16
    for name in ("items", "h_prev", "gain", "seen", "pinned"):
        assert getattr(gdns, name).shape == (100, 16)
    assert gdns.items.dtype == np.int32 and gdns.gain.dtype == gdns.h_prev.dtype == np.float32
    assert gdns.state_nbytes == 100 * 16 * (4 + 4 + 4 + 1 + 1) + 100
    assert gdns.state_nbytes < 100 * 10_000  # far below one byte per (user, item)


def test_gdns_update_scope_group_updates_only_the_selected_entries():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=2, num_candidates=8, refresh=0.0, update_scope="group",
                        init_gain=0.0, init_gap=None)  # fresh entries: gain term 0.5
    _, neg = gdns.sample_groups([0], np.random.default_rng(4), item_id_scorer)
    state = gdns.pool_state(np.array([0]))
    np.testing.assert_array_equal(state["seen"][0], np.isin(state["items"][0], neg[0]))
    assert np.all(state["G"][0][~state["seen"][0]] == 0.0)
    assert np.allclose(state["G"][0][state["seen"][0]], 0.8 * 0.5)


def test_gdns_h_scope_all_averages_over_every_train_positive():
    train = Interactions.from_pairs([0, 0], [0, 1], 1, 6)
    gdns = make_sampler("gdns", train, group_size=1, num_candidates=4, refresh=0.0, h_scope="all",
                        init_gap=0.0, init_gain=0.0, alpha=0.0)
    scores = {0: 0.3, 1: -0.4, 2: 1.0, 3: 0.0, 4: -1.0, 5: 2.0}
    gdns.sample_groups([0], np.random.default_rng(5), table_scorer(scores))
    state = gdns.pool_state(np.array([0]))
    for j, h in zip(state["items"][0], state["H_prev"][0], strict=True):
        assert h == pytest.approx((sig(scores[j] - 0.3) + sig(scores[j] + 0.4)) / 2, rel=1e-6)


def test_gdns_refresh_replaces_a_share_of_unselected_unpinned_slots():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=2, num_candidates=10, refresh=0.5)
    rng = np.random.default_rng(6)
    gdns.sample_groups([0], rng, item_id_scorer)
    non_pos = np.setdiff1d(np.arange(train.n_items), train.row(0))
    gdns.pin([0], [non_pos[-1]])
    for _ in range(20):
        before = gdns.pool_state(np.array([0]))["items"][0]
        _, neg = gdns.sample_groups([0], rng, item_id_scorer)
        state = gdns.pool_state(np.array([0]))
        changed = state["items"][0] != before
        assert changed.sum() == 4  # round(0.5 * (10 - 2))
        assert not np.isin(before[changed], neg[0]).any()
        assert not (changed & state["pinned"][0]).any() and not state["seen"][0][changed].any()
        assert len(set(state["items"][0].tolist())) == 10  # fresh items are distinct from the pool
    assert non_pos[-1] in state["items"][0]


def test_gdns_pin_and_pool_state():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=2, num_candidates=6)
    rng = np.random.default_rng(7)
    non_pos = np.setdiff1d(np.arange(train.n_items), train.row(3))
    gdns.pin([3, 3], non_pos[:2])
    state = gdns.pool_state()
    assert state["pinned"][3].sum() == 2 and set(non_pos[:2]) <= set(state["items"][3].tolist())
    with pytest.raises(ValueError):
        state["G"][3, 0] = 1.0  # read-only views
    # The first visit fills the other slots around the pinned ones, without copying them.
    gdns.sample_groups([3], rng, item_id_scorer)
    items = gdns.pool_state(np.array([3]))["items"][0]
    assert np.isin(non_pos[:2], items).all() and len(set(items.tolist())) == 6
    # Pinning an item already in a filled pool pins it in place.
    ordinary = items[~gdns.pinned[3]][0]
    gdns.pin([3], [ordinary])
    np.testing.assert_array_equal(gdns.pool_state(np.array([3]))["items"][0], items)
    assert gdns.pinned[3].sum() == 3 and gdns.pinned[3][items == ordinary].all()
    with pytest.raises(SamplingError, match=f"item {train.row(3)[0]} is a training positive of user 3"):
        gdns.pin([3], [train.row(3)[0]])
    with pytest.raises(SamplingError, match="user 3: more pinned items than pool slots"):
        gdns.pin(np.full(4, 3), np.setdiff1d(non_pos, items)[:4])


def test_gdns_generic_sample_updates_each_distinct_user_once():
    train = gdns_train()
    gdns = make_sampler("gdns", train, group_size=2, num_candidates=8, refresh=0.0, alpha=0.2,
                        init_gain=0.0, init_gap=None)
    constant = lambda u, i: np.zeros(u.size, np.float32)  # noqa: E731  (H constant: gain term 0.5)
    out = gdns.sample([5, 5, 5], train.row(5)[[0, 0, 0]], 2, rng=np.random.default_rng(8), score_fn=constant)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(gdns.gain[5], 0.8 * 0.5)  # one update, not three
    gdns.sample([5], train.row(5)[:1], 2, rng=np.random.default_rng(9), score_fn=constant)
    np.testing.assert_allclose(gdns.gain[5], 0.2 * 0.4 + 0.8 * 0.5)


def test_gdns_sample_groups_input_errors():
    train = Interactions.from_pairs([0, 0], [0, 1], 3, 6)
    gdns = make_sampler("gdns", train, group_size=2)
    with pytest.raises(SamplingError, match="sample_groups needs distinct users; user 0 repeats"):
        gdns.sample_groups([0, 0], 0, item_id_scorer)
    with pytest.raises(SamplingError, match="user 2 has no training positives"):
        gdns.sample_groups([0, 2], 0, item_id_scorer)


# --------------------------------------------------------------------------- broadcasting scorers
def mf_scorer(n_users: int, n_items: int, seed: int = 0):
    """A broadcasting MF scorer (``make_scorer``) over random embeddings."""
    import torch

    from raysearch.models import make_model
    from raysearch.models.base import make_scorer

    torch.manual_seed(seed)
    model = make_model("mf", n_users, n_items, None, dim=8)
    return make_scorer(model, model.propagate())


@pytest.mark.parametrize(("name", "params"), [("dns", {"num_candidates": 5}), ("srns", {"warmup": 0.0}),
                                              ("gdns", {"num_candidates": 16, "group_size": 4})])
def test_a_broadcasting_scorer_draws_the_same_negatives_as_repeated_user_ids(name, params):
    train = srns_train(n_users=40, n_items=200)
    fast = mf_scorer(40, 200)
    plain = lambda u, i: fast(u, i)  # noqa: E731  (not marked: gets 1-d arrays of repeated user ids)
    assert fast.broadcasts and not hasattr(plain, "broadcasts")
    users = np.random.default_rng(5).integers(0, 40, 64)  # repeats, as rows of a batch have
    if name == "gdns":
        users = np.random.default_rng(5).permutation(40)[:30]  # groups are drawn for distinct users
    out = []
    for scorer in (fast, plain):
        sampler = make_sampler(name, train, **params)
        rng = np.random.default_rng(9)
        draws = []
        for epoch in range(3):
            sampler.start_epoch(epoch, rng)
            if name == "gdns":
                draws.append(np.concatenate(sampler.sample_groups(users, rng, scorer)))
            else:
                draws.append(sampler.sample(users, first_positive(train, users), 2, rng=rng, score_fn=scorer))
            sampler.end_epoch(epoch, mf_scorer(40, 200, seed=epoch + 1))  # SRNS's std term uses snapshots
        out.append(np.stack(draws))
    np.testing.assert_array_equal(out[0], out[1])


def test_call_scorer_rejects_users_that_do_not_broadcast_against_items():
    from raysearch.samplers.base import call_scorer

    message = r"users of shape \(3,\) do not broadcast against items of shape \(2, 4\)"
    with pytest.raises(SamplingError, match=message):
        call_scorer(mf_scorer(5, 6), np.arange(3), np.zeros((2, 4), dtype=np.int64))
