"""The synthetic generator: determinism, sizes, planted communities, false negatives, the Dataset helper."""

import time

import numpy as np
import pytest
from scipy import stats

from raysearch.config import SyntheticConfig
from raysearch.data.synthetic import (
    MIN_OBSERVED,
    community_popularity,
    draw_exposures,
    generate,
    inverse_cdf,
    synthetic_config,
    synthetic_dataset,
)
from raysearch.errors import ConfigError


def keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users.astype(np.int64) * n_items + items


def test_same_seed_same_data_other_seed_other_data():
    a, ta = generate(SyntheticConfig(seed=5))
    b, tb = generate(SyntheticConfig(seed=5))
    c, _ = generate(SyntheticConfig(seed=6))
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert np.array_equal(ta.false_negative_items, tb.false_negative_items)
    assert np.array_equal(ta.communities, tb.communities)
    assert not np.array_equal(keys(a.users, a.items, 400), keys(c.users, c.items, 400))


def test_sizes_and_minimum_activity():
    config = SyntheticConfig(n_users=500, n_items=300, n_communities=5, mean_exposures=20, like_rate=0.2)
    table, truth = generate(config)
    assert table.users.min() >= 0 and table.users.max() < 500
    assert table.items.min() >= 0 and table.items.max() < 300
    per_user = np.bincount(table.users, minlength=500)
    assert per_user.min() >= MIN_OBSERVED  # every user can hold out validation and test items
    assert np.unique(keys(table.users, table.items, 300)).size == len(table)  # no duplicate pairs
    assert truth.communities.shape == (500,) and set(np.unique(truth.communities)) <= set(range(5))
    # liked share of exposures ~ like_rate: observed + false negatives over ~ n_users * mean_exposures
    liked = len(table) + truth.false_negative_users.size
    assert 0.15 < liked / (500 * 20) < 0.3


def test_false_negatives_are_liked_and_never_observed():
    table, truth = generate(SyntheticConfig(n_users=800, false_negative_rate=0.3))
    observed = set(keys(table.users, table.items, 400).tolist())
    hidden = keys(truth.false_negative_users, truth.false_negative_items, 400)
    assert hidden.size > 0 and not observed & set(hidden.tolist())
    # each liked item is hidden with probability 0.3 (the promotion of light users barely moves it)
    share = hidden.size / (hidden.size + len(table))
    assert abs(share - 0.3) < 0.02


def test_exposures_follow_the_community_popularity():
    """With one exposure per user, the exposed item is one draw from the community's Zipf law."""
    config = SyntheticConfig(n_users=20_000, n_items=12, n_communities=2, zipf_exponent=1.0)
    rng = np.random.default_rng(0)
    popularity = community_popularity(config, rng)
    communities = np.repeat([0, 1], 10_000)
    users, items = draw_exposures(popularity, communities, np.ones(20_000, dtype=np.int64), rng)
    assert users.tolist() == list(range(20_000))
    for c in (0, 1):
        counts = np.bincount(items[communities[users] == c], minlength=12)
        assert stats.chisquare(counts, 10_000 * popularity[c]).pvalue > 1e-3
    # Zipf over a permutation: rank r has weight r^-1 / H_12
    assert np.sort(popularity[0])[::-1] == pytest.approx(1 / np.arange(1, 13) / np.sum(1 / np.arange(1, 13)))


def test_exposures_are_distinct_and_complete_even_when_popularity_is_steep():
    rng = np.random.default_rng(1)
    config = SyntheticConfig(n_items=50, zipf_exponent=3.0, n_communities=3)
    popularity = community_popularity(config, rng)
    communities = rng.integers(0, 3, 300)
    n_exposed = rng.integers(3, 51, 300)  # up to every item
    users, items = draw_exposures(popularity, communities, n_exposed, rng)
    assert np.array_equal(np.bincount(users, minlength=300), n_exposed)
    assert np.unique(keys(users, items, 50)).size == users.size


def test_inverse_cdf_matches_searchsorted():
    rng = np.random.default_rng(2)
    cdf = np.cumsum(rng.random(500) ** 4)
    cdf /= cdf[-1]
    cdf = (cdf + np.arange(3)[:, None]).ravel()
    query = rng.random(50_000) * 3
    assert np.array_equal(inverse_cdf(cdf, query, 2000), np.searchsorted(cdf, query, side="right"))


def test_communities_share_items_far_more_within_than_across():
    ds = synthetic_dataset(n_users=400, n_items=300)
    matrix = ds.train.union(ds.valid).union(ds.test).to_scipy()
    overlap = (matrix @ matrix.T).toarray()
    same = ds.extras["communities"][:, None] == ds.extras["communities"][None, :]
    np.fill_diagonal(same, False)
    different = ds.extras["communities"][:, None] != ds.extras["communities"][None, :]
    # without planted communities the ratio would be about 1; here it is about 2.5
    assert overlap[same].mean() > 2 * overlap[different].mean()


def test_kmeans_recovers_the_planted_communities():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import normalize

    ds = synthetic_dataset(n_users=1000, n_items=500, n_communities=5)
    rows = normalize(ds.train.union(ds.valid).union(ds.test).to_scipy())
    labels = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(rows)
    assert adjusted_rand_score(ds.extras["communities"], labels) > 0.8


def test_dataset_extras_use_internal_ids_and_hidden_pairs_stay_hidden():
    ds = synthetic_dataset(n_users=300, n_items=200, seed=3)
    table, truth = generate(SyntheticConfig(n_users=300, n_items=200, seed=3))
    fn_users, fn_items = ds.extras["false_negative_users"], ds.extras["false_negative_items"]
    observed = ds.train.union(ds.valid).union(ds.test)
    assert not observed.contains(fn_users, fn_items).any()
    # internal -> original ids through the id maps gives back the generator's pairs and communities
    original = set(
        zip(
            ds.user_ids[fn_users].astype(int).tolist(),
            ds.item_ids[fn_items].astype(int).tolist(),
            strict=True,
        )
    )
    planted = set(zip(truth.false_negative_users.tolist(), truth.false_negative_items.tolist(), strict=True))
    dropped = ds.provenance["extras"]["false_negative_pairs_dropped"]
    assert original <= planted and len(planted) - len(original) == dropped
    assert np.array_equal(truth.communities[ds.user_ids.astype(int)], ds.extras["communities"])
    assert observed.nnz == len(table)


def test_helper_routes_overrides_and_rejects_unknown_keys():
    config = synthetic_config(n_users=120, split="loo", num_negatives=20)
    assert config.synthetic.n_users == 120 and config.split == "loo" and config.num_negatives == 20
    ds = synthetic_dataset(n_users=120, split="loo", num_negatives=20)
    assert ds.test.nnz == 120 and ds.test_negatives.shape == (120, 20)
    with pytest.raises(ConfigError, match="unknown key 'n_user'"):
        synthetic_config(n_user=5)


def test_default_config_builds_fast():
    synthetic_dataset()  # imports and first-call costs
    start = time.perf_counter()
    ds = synthetic_dataset()
    assert time.perf_counter() - start < 1.0  # about 0.06 s here
    assert (ds.n_users, ds.n_items) == (600, 400)
    assert ds.provenance["config"]["synthetic"]["n_communities"] == 4


def test_needs_three_items():
    with pytest.raises(ConfigError, match="synthetic.n_items: must be >= 3"):
        generate(SyntheticConfig(n_items=2))
