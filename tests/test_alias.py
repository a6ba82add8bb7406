"""Alias tables: the Vose invariant, draws against their distribution, ragged tables."""

from collections import deque

import numpy as np
import pytest
from scipy.stats import chisquare

from raysearch.errors import SamplingError
from raysearch.samplers import AliasTable, RaggedAliasTable


def implied_distribution(prob: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """(q_i + sum_{j: alias_j = i} (1 - q_j)) / n: what an alias table actually draws."""
    n = prob.size
    return (prob + np.bincount(alias, weights=1.0 - prob, minlength=n)) / n


def sequential_vose(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain textbook Vose, one entry at a time (the reference the vectorised build must agree with).

    Smalls are served in order (zero weights first); a large that turns small is served next by the
    next large; leftovers get probability 1.
    """
    p = np.asarray(weights, dtype=float) / np.sum(weights)
    n = p.size
    q = list(p * n)
    small = deque([i for i in range(n) if q[i] == 0] + [i for i in range(n) if 0 < q[i] < 1])
    large = deque(i for i in range(n) if q[i] >= 1)
    prob, alias = [1.0] * n, list(range(n))
    demoted = None
    while large:
        if demoted is not None:
            s, demoted = demoted, None
        elif small:
            s = small.popleft()
        else:
            break
        big = large[0]
        prob[s], alias[s] = q[s], big
        q[big] = (q[big] + q[s]) - 1.0
        if q[big] < 1.0:
            demoted = large.popleft()
    return np.array(prob), np.array(alias)


def skewed(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=float) ** -3.0


CASES = {
    "random_with_zeros": np.random.default_rng(0).random(500) * (np.random.default_rng(1).random(500) < 0.6),
    "one_hot": np.eye(1, 40, 17)[0],
    "uniform": np.ones(64),
    "extreme_skew": skewed(2000),
    "heavy_tail": np.random.default_rng(2).pareto(0.3, 3000),
    "tiny_and_huge": np.array([1e-300, 1.0, 1e-12, 5.0, 0.0]),
    "n_is_1": np.array([2.5]),
    "two": np.array([1.0, 3.0]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_invariant_holds(name):
    weights = CASES[name]
    table = AliasTable.from_weights(weights)
    p = weights / weights.sum()
    np.testing.assert_allclose(implied_distribution(table.prob, table.alias), p, rtol=0, atol=1e-12)
    assert np.all((table.prob >= 0) & (table.prob <= 1))
    assert np.all((table.alias >= 0) & (table.alias < weights.size))
    # Zero-weight outcomes are never drawable: probability 0 and nobody's alias.
    zero = weights == 0
    assert np.all(table.prob[zero] == 0)
    assert not np.any(zero[table.alias[table.prob < 1]])


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectorised_build_agrees_with_sequential_vose(name):
    weights = CASES[name]
    table = AliasTable.from_weights(weights)
    prob, alias = sequential_vose(weights)
    p = weights / weights.sum()
    np.testing.assert_allclose(implied_distribution(prob, alias), p, atol=1e-12)
    np.testing.assert_allclose(implied_distribution(table.prob, table.alias), implied_distribution(prob, alias),
                               atol=1e-12)


def test_vectorised_build_reproduces_sequential_tables_on_continuous_weights():
    # Same service order => the same alias of every column (no exact ties with continuous weights).
    weights = np.random.default_rng(7).gamma(0.5, size=1000)
    table = AliasTable.from_weights(weights)
    prob, alias = sequential_vose(weights)
    np.testing.assert_array_equal(table.alias[prob < 1], alias[prob < 1])
    np.testing.assert_allclose(table.prob, prob, atol=1e-9)


def test_draws_match_distribution_and_a_wrong_one_is_rejected():
    weights = np.random.default_rng(3).gamma(0.7, size=50)
    p = weights / weights.sum()
    table = AliasTable.from_weights(weights)
    draws = table.draw(10**6, np.random.default_rng(11))
    counts = np.bincount(draws, minlength=p.size)
    assert chisquare(counts, p * draws.size).pvalue > 1e-3
    wrong = p.copy()
    wrong[[0, 1]] = wrong[[1, 0]] * [1.03, 0.97]  # a small perturbation
    wrong /= wrong.sum()
    assert chisquare(counts, wrong * draws.size).pvalue < 1e-3


def test_zero_weight_items_are_never_drawn():
    weights = np.zeros(1000)
    weights[::7] = np.random.default_rng(5).random(143)
    draws = AliasTable.from_weights(weights).draw(10**6, np.random.default_rng(0))
    assert np.all(weights[draws] > 0)


def test_one_hot_always_returns_its_item():
    draws = AliasTable.from_weights(np.eye(1, 1000, 613)[0]).draw(10**5, np.random.default_rng(0))
    assert np.all(draws == 613)


def test_tables_are_read_only_and_draws_deterministic():
    table = AliasTable.from_weights(skewed(100))
    for array in (table.p, table.prob, table.alias):
        with pytest.raises(ValueError):
            array[0] = 0
    a = table.draw((3, 4), np.random.default_rng(9))
    b = table.draw((3, 4), np.random.default_rng(9))
    assert a.shape == (3, 4) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.zeros(4), "all weights are zero"),
        (np.array([1.0, -1.0]), "finite and non-negative"),
        (np.array([1.0, np.nan]), "finite and non-negative"),
        (np.array([]), "no outcomes"),
    ],
)
def test_bad_weights_raise(weights, message):
    with pytest.raises(SamplingError, match=message):
        AliasTable.from_weights(weights)


# --------------------------------------------------------------------------- ragged tables
def ragged_example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    sizes = np.array([5, 1, 0, 40, 12])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    weights = rng.gamma(0.6, size=offsets[-1])
    weights[offsets[3] + 2] = 0.0  # a zero weight inside a table
    outcomes = np.concatenate([np.sort(rng.choice(1000, s, replace=False)) for s in sizes])
    return offsets, weights, outcomes


def test_ragged_tables_satisfy_the_invariant_per_table():
    offsets, weights, outcomes = ragged_example()
    ragged = RaggedAliasTable.from_segments(offsets, weights, outcomes)
    assert ragged.n_tables == 5
    for t in range(5):
        lo, hi = offsets[t], offsets[t + 1]
        if lo == hi:
            continue
        local_alias = ragged.alias[lo:hi] - lo
        assert np.all((local_alias >= 0) & (local_alias < hi - lo))  # aliases stay inside their table
        implied = implied_distribution(ragged.prob[lo:hi], local_alias)
        np.testing.assert_allclose(implied, weights[lo:hi] / weights[lo:hi].sum(), atol=1e-12)
        items, probs = ragged.table(t)
        np.testing.assert_array_equal(items, outcomes[lo:hi])


def test_ragged_draws_match_each_rows_table():
    offsets, weights, outcomes = ragged_example()
    ragged = RaggedAliasTable.from_segments(offsets, weights, outcomes)
    rng = np.random.default_rng(21)
    tables = rng.choice([0, 1, 3, 4], size=10**6)
    draws = ragged.draw(tables, rng)
    for t in (0, 1, 3, 4):
        items, probs = ragged.table(t)
        got = draws[tables == t]
        assert np.all(np.isin(got, items[probs > 0]))  # only the table's own support, never zero weights
        counts = np.array([(got == i).sum() for i in items])
        keep = probs > 0
        if keep.sum() > 1:
            assert chisquare(counts[keep], probs[keep] * got.size).pvalue > 1e-3
    # Scalar table id: the single-table fast path, same distribution.
    items, probs = ragged.table(3)
    got = ragged.draw(3, rng, size=200_000)
    counts = np.array([(got == i).sum() for i in items])
    assert chisquare(counts[probs > 0], probs[probs > 0] * got.size).pvalue > 1e-3


def test_one_uniform_pick_maps_a_uniform_grid_onto_each_tables_distribution():
    # pick() takes the column floor(x) and the coin frac(x) from one x = u * size. Over a fine uniform grid
    # of u, each column's coin is resolved to 1/G, so each outcome's frequency is p within
    # (columns that can return it) / (size * G): a deterministic check of exactness, no sampling noise.
    offsets, weights, outcomes = ragged_example()
    ragged = RaggedAliasTable.from_segments(offsets, weights, outcomes)
    grid = 4096
    for t in (0, 1, 3, 4):
        lo, size = int(offsets[t]), int(offsets[t + 1] - offsets[t])
        u = (np.arange(size * grid) + 0.5) / (size * grid)
        got = ragged.pick(u * size, lo)
        assert got.dtype == np.int32
        items, probs = ragged.table(t)
        freq = np.array([(got == i).sum() for i in items]) / got.size
        local_alias = ragged.alias[lo : lo + size] - lo
        columns = 1 + np.bincount(local_alias, weights=ragged.prob[lo : lo + size] < 1, minlength=size)
        assert np.all(np.abs(freq - probs) <= columns / (size * grid) + 1e-15)
        assert np.all(freq[probs == 0] == 0)
    # Negative control: the same grid through a coin that ignores prob (always the column) is uniform,
    # which the bound above rejects for a skewed table.
    lo, size = int(offsets[3]), int(offsets[4] - offsets[3])
    naive = np.bincount((u * size).astype(np.int64), minlength=size) / u.size
    assert np.max(np.abs(naive - ragged.table(3)[1])) > 10 / grid


def test_ragged_memory_is_the_total_support_and_empty_tables_refuse_draws():
    offsets, weights, outcomes = ragged_example()
    ragged = RaggedAliasTable.from_segments(offsets, weights, outcomes)
    total = int(offsets[-1])
    # offsets + outcomes, p, prob, alias (8 bytes an entry each) + the 16-byte draw cell of each entry
    assert ragged.nbytes == 8 * (len(offsets) + 4 * total) + 16 * total
    with pytest.raises(SamplingError, match="alias table 2 is empty"):
        ragged.draw(np.array([0, 2]), np.random.default_rng(0))
    with pytest.raises(SamplingError, match="alias table 2 is empty"):
        ragged.draw(2, np.random.default_rng(0), size=3)
    with pytest.raises(SamplingError, match="all weights are zero"):
        RaggedAliasTable.from_segments(np.array([0, 2]), np.zeros(2))


def read_only_copies(arrays: dict) -> dict:
    """What ``ray.get`` returns for a dict of arrays: copies that cannot be written."""
    out = {}
    for name, a in arrays.items():
        out[name] = a.copy()
        out[name].flags.writeable = False
    return out


def test_ragged_tables_round_trip_through_plain_arrays_without_copying_read_only_ones():
    offsets, weights, outcomes = ragged_example()
    ragged = RaggedAliasTable.from_segments(offsets, weights, outcomes)
    arrays = ragged.to_arrays()
    assert set(arrays) == {"offsets", "outcomes", "p", "prob", "alias", "cells"}
    assert all(type(a) is np.ndarray and not a.flags.writeable for a in arrays.values())
    shipped = read_only_copies(arrays)
    rebuilt = RaggedAliasTable.from_arrays(shipped)
    assert all(getattr(rebuilt, name) is a for name, a in shipped.items())  # zero-copy
    for name in arrays:
        np.testing.assert_array_equal(getattr(rebuilt, name), arrays[name])
    tables = np.random.default_rng(3).choice([0, 1, 3, 4], size=5000)
    np.testing.assert_array_equal(rebuilt.draw(tables, np.random.default_rng(4)),
                                  ragged.draw(tables, np.random.default_rng(4)))
    # A writable input is copied: the table never shares memory its caller may change.
    writable = {name: a.copy() for name, a in arrays.items()}
    rebuilt = RaggedAliasTable.from_arrays(writable)
    assert not np.shares_memory(rebuilt.cells, writable["cells"]) and not rebuilt.cells.flags.writeable
    writable["cells"][:] = 0.0
    np.testing.assert_array_equal(rebuilt.cells, ragged.cells)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("cells"), r"missing \['cells'\], unexpected \[\]"),
        (lambda d: d.update(extra=np.zeros(1)), r"missing \[\], unexpected \['extra'\]"),
        (lambda d: d.update(p=d["p"].astype(np.float32)), "p has dtype float32, expected float64"),
        (lambda d: d.update(alias=d["alias"][:-1]), r"alias has shape \(57,\), expected \(58,\)"),
        (lambda d: d.update(cells=d["cells"][:, :1]), r"cells has shape \(58, 1\), expected \(58, 2\)"),
        (lambda d: d.update(offsets=d["offsets"][::-1].copy()), "offsets must start at 0"),
    ],
)
def test_ragged_tables_from_bad_arrays_raise(change, message):
    offsets, weights, outcomes = ragged_example()
    arrays = dict(RaggedAliasTable.from_segments(offsets, weights, outcomes).to_arrays())
    change(arrays)
    with pytest.raises(SamplingError, match=message):
        RaggedAliasTable.from_arrays(arrays)
