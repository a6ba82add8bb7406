"""The knowledge-enhanced samplers against brute-force references of their distributions: ``attribute``
(negatives sharing an attribute with the positive, per-attribute alias tables with positive exclusion) and
``social`` (negatives among the friends' items), both mixed with uniform negatives by a weight; and both
trained end to end through their pipelines."""

import json
from collections import defaultdict

import numpy as np
import pytest
from scipy.stats import chisquare

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.samplers import make_sampler

N_USERS, N_ITEMS = 30, 60


def attribute_world():
    """A train split and (item, attribute) pairs with the cases the sampler must route:
    - user 0's positives are items 0..38 and 50: attribute 5 (items 0..39) keeps one item (39) outside them,
      a small acceptance mass (the exact path); attribute 4 (items 0, 1, 2) keeps none (never drawn);
    - item 0 (user 0's positive) has attributes 1, 4 and 5; attribute 1 is items 0, 40..49;
    - item 55 has no attribute (its rows fall back to uniform);
    - the other users hold a few random items; every other item gets 0-2 random attributes out of 0..3."""
    rng = np.random.default_rng(0)
    users = [np.zeros(40, int)]
    items = [np.r_[np.arange(39), 50]]
    for u in range(1, N_USERS):
        own = rng.choice(N_ITEMS, size=rng.integers(3, 12), replace=False)
        users.append(np.full(own.size, u))
        items.append(own)
    train = Interactions.from_pairs(np.concatenate(users), np.concatenate(items), N_USERS, N_ITEMS)
    pairs = [(i, 5) for i in range(40)] + [(i, 4) for i in range(3)] + [(0, 1)] + [(i, 1) for i in range(40, 50)]
    for i in range(3, N_ITEMS):
        if i == 55:
            continue
        pairs += [(i, int(a)) for a in rng.choice(4, size=rng.integers(0, 3), replace=False)]
    return train, np.array(pairs)


def reference_attribute(train, pairs, weight, beta, user, pos):
    """P(j | user, pos) written from the definition, loop by loop."""
    positives = set(train.row(user).tolist())
    counts = train.item_counts()
    attrs_of, items_of = defaultdict(set), defaultdict(set)
    for i, a in pairs.tolist():
        attrs_of[i].add(a)
        items_of[a].add(i)
    uniform = np.array([j not in positives for j in range(train.n_items)], float)
    uniform /= uniform.sum()
    side, used = np.zeros(train.n_items), 0
    for a in sorted(attrs_of[pos]):
        members = sorted(items_of[a])
        w = np.array([(counts[j] + 1.0) ** beta for j in members])
        p = w / w.sum()
        keep = np.array([j not in positives for j in members])
        if not keep.any():
            continue
        used += 1
        side[np.array(members)[keep]] += p[keep] / p[keep].sum()
    if used == 0:
        return uniform
    return weight * side / used + (1 - weight) * uniform


def draws_for(sampler, rows, n, seed):
    """Draws for each (user, pos) of ``rows``, interleaved in every batch; returns {row: int64 (n,)}."""
    users = np.tile([u for u, _ in rows], n // 8)
    pos = np.tile([p for _, p in rows], n // 8)
    rng = np.random.default_rng(seed)
    out = sampler.sample(users, pos, 8, rng=rng)
    return {r: out[i :: len(rows)].ravel() for i, r in enumerate(rows)}


def assert_matches(draws, expected):
    counts = np.bincount(draws, minlength=expected.size)
    assert counts[expected == 0].sum() == 0, np.flatnonzero((expected == 0) & (counts > 0))
    support = expected > 0
    if support.sum() == 1:  # one possible item: every draw is it (checked above)
        return
    stat, p = chisquare(counts[support], expected[support] * draws.size)
    assert p > 1e-3, (stat, p)


@pytest.mark.parametrize("weight,beta", [(1.0, 0.0), (0.7, 0.5), (0.3, -1.0)])
def test_attribute_draws_follow_the_reference_distribution(weight, beta):
    train, pairs = attribute_world()
    sampler = make_sampler("attribute", train, item_attributes=pairs, weight=weight, beta=beta)
    # (0, 0): attribute 5 by the exact path, attribute 4 exhausted; (0, 50): no attribute of its own left
    # uncovered but 1..3; (3, x): a plain user; (4, 55): a positive without attributes (uniform)
    rows = [(0, 0), (0, 50), (3, int(train.row(3)[0])), (4, 55)]
    draws = draws_for(sampler, rows, 160_000, seed=11)
    for (user, pos), got in draws.items():
        expected = reference_attribute(train, pairs, weight, beta, user, pos)
        assert_matches(got, expected)
        assert not train.contains(np.full(got.size, user), got).any()  # never a training positive


def test_attribute_share_is_the_configured_rate_and_never_a_positive():
    train, pairs = attribute_world()
    attrs_of = defaultdict(set)
    for i, a in pairs.tolist():
        attrs_of[i].add(a)
    for weight in (0.0, 0.4, 1.0):
        sampler = make_sampler("attribute", train, item_attributes=pairs, weight=weight)
        draws = draws_for(sampler, [(0, 0)], 80_000, seed=3)[(0, 0)]
        shares = np.array([bool(attrs_of[j] & attrs_of[0]) for j in draws])
        expected = reference_attribute(train, pairs, weight, 0.0, 0, 0)
        rate = sum(expected[j] for j in range(N_ITEMS) if attrs_of[j] & attrs_of[0])
        if weight == 1.0:
            assert shares.all()
        # the share of draws that share an attribute: weight + (1 - weight) * (uniform draws that do)
        assert abs(shares.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / draws.size) + 1e-12
        assert not train.contains(np.zeros(draws.size, int), draws).any()
    # exclusion over every user and positive, all routes at once
    sampler = make_sampler("attribute", train, item_attributes=pairs, weight=0.8, beta=0.5)
    users, items = train.pairs()
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = sampler.sample(users, items, 16, rng=rng)
        assert not train.contains(users[:, None], out).any()


def test_attribute_exhausted_attribute_and_stats():
    train, pairs = attribute_world()
    sampler = make_sampler("attribute", train, item_attributes=pairs, weight=1.0)
    assert sampler.acceptance(np.array([0]), np.array([4]))[0] == 0.0  # items 0, 1, 2 are all user 0's
    assert 0 < sampler.acceptance(np.array([0]), np.array([5]))[0] < 0.05  # only item 39 left: exact path
    assert sampler.acceptance(np.array([1]), np.array([5]))[0] == pytest.approx(
        1 - len([i for i in train.row(1) if i < 40]) / 40)
    sampler.start_epoch(0, None)
    draws = draws_for(sampler, [(0, 0)], 8000, seed=1)[(0, 0)]
    support = reference_attribute(train, pairs, 1.0, 0.0, 0, 0) > 0
    assert support[np.unique(draws)].all() and 39 in draws  # 39: attribute 5's only item left
    sampler.start_epoch(1, None)
    sampler.sample(np.zeros(1000, int), np.full(1000, 55), rng=0)  # no attribute: every slot falls back
    stats = sampler.epoch_stats()
    assert stats["side_share"] == (0.0, 1000.0) and stats["fallback_share"] == (1000.0, 1000.0)


def social_world():
    """Users 0..29; friendships (symmetric) and the cases the social sampler must route:
    - user 0's friends 1, 2 (and 3, which has no training item: ignored);
    - user 5's friends' items (those of 6) are all 5's own but item 59: the exact path;
    - user 7's friend 8 holds only items 7 has: no side item (falls back);
    - user 9 has no friend."""
    rng = np.random.default_rng(2)
    rows = {u: rng.choice(N_ITEMS - 1, size=rng.integers(4, 10), replace=False) for u in range(N_USERS)}
    rows[3] = np.array([], int)
    rows[6] = np.r_[np.arange(40), 59]
    rows[5] = np.arange(40)
    rows[8] = rows[7][:3]
    users = np.concatenate([np.full(len(v), u) for u, v in rows.items()])
    train = Interactions.from_pairs(users, np.concatenate(list(rows.values())), N_USERS, N_ITEMS)
    links = [(0, 1), (0, 2), (0, 3), (5, 6), (7, 8)] + [(u, u + 1) for u in range(10, 29)]
    links += [(b, a) for a, b in links]
    return train, np.array(links)


def reference_social(train, links, weight, user):
    positives = set(train.row(user).tolist())
    friends = [f for u, f in links.tolist() if u == user and train.row(f).size]
    uniform = np.array([j not in positives for j in range(train.n_items)], float)
    uniform /= uniform.sum()
    side = np.zeros(train.n_items)
    for f in friends:
        for j in train.row(f):
            if j not in positives:
                side[j] += 1 / (len(friends) * train.row(f).size)
    if side.sum() == 0:
        return uniform
    return weight * side / side.sum() + (1 - weight) * uniform


@pytest.mark.parametrize("weight", [1.0, 0.6])
def test_social_draws_follow_the_reference_distribution(weight):
    train, links = social_world()
    sampler = make_sampler("social", train, social_network=links, weight=weight)
    rows = [(u, int(train.row(u)[0])) for u in (0, 5, 7, 9, 12)]
    draws = draws_for(sampler, rows, 120_000, seed=5)
    for (user, _), got in draws.items():
        assert_matches(got, reference_social(train, links, weight, user))
        assert not train.contains(np.full(got.size, user), got).any()


def test_social_with_weight_one_never_returns_an_item_no_friend_touched():
    train, links = social_world()
    sampler = make_sampler("social", train, social_network=links, weight=1.0)
    friends = defaultdict(set)
    for u, f in links.tolist():
        friends[u].add(f)
    touched = {u: set().union(*(set(train.row(f).tolist()) for f in fs)) for u, fs in friends.items()}
    supported = [u for u in range(N_USERS) if touched.get(u, set()) - set(train.row(u).tolist())]
    assert 0 in supported and 5 in supported and 7 not in supported and 9 not in supported
    users = np.repeat(supported, 200)
    pos = np.zeros_like(users)  # the social side ignores the positive (user 3, a friend of 0, has none)
    out = sampler.sample(users, pos, 8, rng=np.random.default_rng(0))
    for u, row in zip(users, out, strict=True):
        assert set(row.tolist()) <= touched[u] - set(train.row(u).tolist())
    assert sampler.accept[7] == 0 and sampler.accept[9] == 0 and 0 < sampler.accept[5] < 0.05


@pytest.mark.parametrize("name,key", [("attribute", "item_attributes"), ("social", "social_network")])
@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_a_mix_weight_outside_0_1_names_the_key(name, key, weight):
    train, pairs = attribute_world()
    with pytest.raises(ConfigError, match=rf"sampler '{name}': weight: must be in \[0, 1\], got"):
        make_sampler(name, train, **{key: pairs[:, :2] % N_USERS, "weight": weight})


@pytest.mark.parametrize("name,key,value,message", [
    ("attribute", "item_attributes", np.array([[0, 1], [99, 0]]), "item ids must be in \\[0, 60\\), got 99"),
    ("attribute", "item_attributes", np.array([[0, -1]]), "attribute ids must be in \\[0, inf\\), got -1"),
    ("attribute", "item_attributes", np.zeros((0, 2), int), "must be a non-empty \\(item, attribute\\) pair array"),
    ("social", "social_network", np.array([[0, 1], [1, 30]]), "user ids must be in \\[0, 30\\), got 30"),
    ("social", "social_network", np.array([[0.5, 1]]), "must hold integer ids, got dtype float64"),
])
def test_bad_side_information_arrays_name_the_parameter(name, key, value, message):
    train, _ = attribute_world()
    with pytest.raises(ConfigError, match=rf"sampler '{name}': {key}: {message}"):
        make_sampler(name, train, **{key: value})


def write_attributes(path, n_items=40):
    """An item<TAB>attr[|attr...] file for the tiny synthetic dataset: item i has attributes i % 3 and 'all'."""
    path.write_text("".join(f"{i}\tg{i % 3}|all\n" for i in range(n_items)))
    return path


TINY = ["dataset.synthetic.n_users=60", "dataset.synthetic.n_items=40", "dataset.synthetic.mean_exposures=20",
        "model.dim=8", "trainer.batch_size=256", "trainer.progress=false", "trainer.threads=1", "trainer.epochs=2"]


def test_attribute_and_social_train_end_to_end_with_their_side_information(tmp_path):
    from raysearch.run import train

    attrs = write_attributes(tmp_path / "attributes.tsv")
    results = train([*TINY, "sampler=attribute", "sampler.weight=0.8", f"dataset.item_attributes={attrs}"],
                    out=tmp_path / "attr", cache_dir=tmp_path / "cache")
    assert results["sampler"]["name"] == "attribute" and results["sampler"]["params"] == {"weight": 0.8, "beta": 0.0}
    side = results["dataset"]["provenance"]["side_info"]["item_attributes"]
    assert side["format"] == "tsv" and side["attributes"] == 4 and side["items_not_in_dataset"] == 1  # item 39
    record = json.loads((tmp_path / "attr" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.6 < record["sampler_stats"]["side_share"] < 0.95 and record["sampler_stats"]["fallback_share"] == 0

    links = tmp_path / "links.txt"
    links.write_text("".join(f"{u}\t{(u * 7 + 3) % 60}\n" for u in range(60)))
    results = train([*TINY, "sampler=social", "sampler.weight=1", f"dataset.social_network={links}"],
                    out=tmp_path / "social", cache_dir=tmp_path / "cache")
    assert results["dataset"]["provenance"]["side_info"]["social_network"]["links"] > 60  # made symmetric
    record = json.loads((tmp_path / "social" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["sampler_stats"]["side_share"] > 0.5
