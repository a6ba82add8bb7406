"""Behaviour every registered sampler shares (parametrised over ``SAMPLERS``)."""

import numpy as np
import pytest

from raysearch.data.dataset import Dataset
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, SamplingError
from raysearch.samplers import SAMPLERS, Sampler, make_sampler

N_USERS, N_ITEMS = 120, 300


def contract_train() -> Interactions:
    """Zipf-popular items, 5-40 positives a user; user 7 has interacted with every item."""
    rng = np.random.default_rng(0)
    pop = np.arange(1, N_ITEMS + 1, dtype=float) ** -0.8
    degree = rng.integers(5, 40, N_USERS)
    users = np.repeat(np.arange(N_USERS), degree)
    items = rng.choice(N_ITEMS, size=users.size, p=pop / pop.sum())
    users = np.concatenate([users, np.full(N_ITEMS, 7)])
    items = np.concatenate([items, np.arange(N_ITEMS)])
    return Interactions.from_pairs(users, items, N_USERS, N_ITEMS)


TRAIN = contract_train()
_SIDE = np.random.default_rng(1)
EXTRA = {"icpns": {"communities": np.arange(N_USERS) % 4},
         # item i has attribute i % 7 and one random attribute of 7..11; each user has 3 random friends
         "attribute": {"item_attributes": np.r_[np.c_[np.arange(N_ITEMS), np.arange(N_ITEMS) % 7],
                                                np.c_[np.arange(N_ITEMS), _SIDE.integers(7, 12, N_ITEMS)]]},
         "social": {"social_network": np.c_[np.repeat(np.arange(N_USERS), 3), _SIDE.integers(0, N_USERS, 3 * N_USERS)]}}
DRAWS = {"dns": 20_000, "srns": 20_000, "gdns": 20_000, "adversarial": 20_000}  # dynamic: fewer; static: 10**6


def scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A fixed pseudo-model: a deterministic function of (user, item)."""
    return np.cos(users * 0.37 + items * 1.3).astype(np.float32)


def build(name: str, train=TRAIN, **params) -> Sampler:
    return make_sampler(name, train, **{**EXTRA.get(name, {}), **params})


def batch(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (user, one of the user's positives), user 7 (no negatives) left out."""
    rng = np.random.default_rng(seed)
    users = rng.choice(np.setdiff1d(np.arange(N_USERS), [7]), size=size)
    start, degree = TRAIN.indptr[users], np.diff(TRAIN.indptr)[users]
    return users, TRAIN.indices[start + rng.integers(0, degree)]


NAMES = SAMPLERS.names()


def test_every_sampler_of_the_project_is_registered():
    assert NAMES == ["adversarial", "ahns", "attribute", "dens", "dns", "gdns", "icpns", "inbatch", "mixed", "mixgcf",
                     "pns", "rns", "social", "srns"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1, 3])
def test_shape_and_dtype(name, k):
    users, pos = batch(64, seed=k)
    out = build(name).sample(users, pos, k, rng=np.random.default_rng(0), score_fn=scorer)
    assert out.shape == (64, k) and out.dtype == np.int64
    assert out.min() >= 0 and out.max() < N_ITEMS
    empty = build(name).sample(np.array([], int), np.array([], int), k, rng=0, score_fn=scorer)
    assert empty.shape == (0, k) and empty.dtype == np.int64


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_negatives_and_rng_forms(name):
    users, pos = batch(200, seed=1)

    def run(rng):
        sampler = build(name)
        return [sampler.sample(users, pos, 2, rng=rng, score_fn=scorer) for _ in range(3)]

    a = run(np.random.default_rng(42))
    b = run(np.random.default_rng(42))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = run(np.random.default_rng(43))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # A SeedSequence or an int seed is turned into a Generator (raysearch.rng.make_rng).
    s1 = build(name).sample(users, pos, 2, rng=np.random.SeedSequence(5), score_fn=scorer)
    s2 = build(name).sample(users, pos, 2, rng=np.random.SeedSequence(5), score_fn=scorer)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(build(name).sample(users, pos, rng=7, score_fn=scorer),
                                  build(name).sample(users, pos, rng=7, score_fn=scorer))


@pytest.mark.parametrize("name", NAMES)
def test_no_negative_is_ever_a_training_positive(name):
    total = DRAWS.get(name, 10**6)
    sampler = build(name)
    rng = np.random.default_rng(3)
    rows, k = (4096, 8) if sampler.dynamic else (total // 16, 16)
    drawn = 0
    seed = 0
    while drawn < total:
        users, pos = batch(rows, seed=seed)
        out = sampler.sample(users, pos, k, rng=rng, score_fn=scorer)
        assert not TRAIN.contains(users[:, None], out).any()
        drawn += out.size
        seed += 1


@pytest.mark.parametrize("name", NAMES)
def test_a_user_with_every_item_raises(name):
    users, pos = batch(10, seed=2)
    users[4] = 7
    with pytest.raises(SamplingError, match="user 7 has interacted with every item \\(300\\)"):
        build(name).sample(users, pos, rng=0, score_fn=scorer)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_is_named_with_the_known_ones(name):
    with pytest.raises(ConfigError, match=f"sampler '{name}': unknown parameter 'bogus' \\(known: ") as err:
        build(name, bogus=1)
    known = [f for f in SAMPLERS.get(name).Params.__dataclass_fields__]
    assert str(err.value).endswith(f"(known: {', '.join(known) or 'none'})")


def test_bad_values_and_unknown_names():
    with pytest.raises(ConfigError, match="sampler 'pns': beta: expected a number, got 'high'"):
        make_sampler("pns", TRAIN, beta="high")
    with pytest.raises(ConfigError, match="sampler 'dns': top_n: must be in \\[1, num_candidates=4\\], got 5"):
        make_sampler("dns", TRAIN, num_candidates=4, top_n=5)
    with pytest.raises(ConfigError, match="sampler 'gdns': num_candidates: must be >= group_size=32, got 8"):
        make_sampler("gdns", TRAIN, num_candidates=8)
    with pytest.raises(ConfigError, match="sampler 'srns': tau: must be > 0, got 0.0"):
        make_sampler("srns", TRAIN, tau=0)
    with pytest.raises(ConfigError, match="unknown sampler 'hard' \\(known: adversarial, ahns, attribute, dens, dns"):
        make_sampler("hard", TRAIN)


def test_parameters_can_be_validated_before_any_data():
    params = SAMPLERS.get("pns").validate_params({"beta": 0.5})
    assert params.beta == 0.5 and params.smoothing == 0.0
    # ICPNS: the pipeline supplies ``communities`` later; the other keys are checked now.
    assert SAMPLERS.get("icpns").validate_params({"alpha": 0.3}).alpha == 0.3
    with pytest.raises(ConfigError, match="sampler 'icpns': alpha: must be >= 0, got -1.0"):
        SAMPLERS.get("icpns").validate_params({"alpha": -1})
    with pytest.raises(ConfigError, match="sampler 'gdns': unknown parameter 'groupsize'"):
        SAMPLERS.get("gdns").validate_params({"groupsize": 8})


@pytest.mark.parametrize("name", NAMES)
def test_call_errors(name):
    sampler = build(name)
    with pytest.raises(SamplingError, match=f"user id {N_USERS} is out of range \\[0, {N_USERS}\\)"):
        sampler.sample([0, N_USERS], [0, 0], rng=0, score_fn=scorer)
    with pytest.raises(SamplingError, match="item id -1 is out of range"):
        sampler.sample([0], [-1], rng=0, score_fn=scorer)
    with pytest.raises(SamplingError, match="users and pos_items must be 1-d arrays of equal length"):
        sampler.sample([0, 1], [0], rng=0, score_fn=scorer)
    with pytest.raises(SamplingError, match="users must be integer ids, got dtype float64"):
        sampler.sample([0.5], [0], rng=0, score_fn=scorer)
    with pytest.raises(SamplingError, match="needs rng="):
        sampler.sample([0], [0], score_fn=scorer)
    with pytest.raises(ConfigError, match="num_negatives: must be an integer >= 1, got 0"):
        sampler.sample([0], [0], 0, rng=0, score_fn=scorer)
    if sampler.dynamic:
        with pytest.raises(SamplingError, match=f"sampler '{name}' is dynamic"):
            sampler.sample([0], [0], rng=0)
    else:
        sampler.sample([0], [0], rng=0)  # static samplers need no scorer


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resume_draws_identically(name):
    users, pos = batch(300, seed=4)
    rng = np.random.default_rng(9)
    original = build(name)
    original.start_epoch(0, rng)
    for _ in range(3):
        original.sample(users, pos, 2, rng=rng, score_fn=scorer)
    state = original.state_dict()
    for value in state.values():
        assert isinstance(value, (np.ndarray, int, float, bool, np.generic))
    resumed = build(name)
    resumed.load_state_dict(state)
    seed = np.random.SeedSequence(11)
    np.testing.assert_array_equal(
        original.sample(users, pos, 2, rng=np.random.default_rng(seed), score_fn=scorer),
        resumed.sample(users, pos, 2, rng=np.random.default_rng(seed), score_fn=scorer),
    )
    with pytest.raises(SamplingError):
        resumed.load_state_dict({**state, "unexpected": np.zeros(2)})


@pytest.mark.parametrize("name", NAMES)
def test_train_may_be_scipy_interactions_or_dataset(name):
    users, pos = batch(50, seed=5)
    empty = Interactions.empty(N_USERS, N_ITEMS)
    dataset = Dataset("toy", TRAIN, empty, empty, np.arange(N_USERS).astype(str), np.arange(N_ITEMS).astype(str), {})
    outs = [
        build(name, train=train).sample(users, pos, 2, rng=np.random.default_rng(1), score_fn=scorer)
        for train in (TRAIN, TRAIN.to_scipy(), dataset)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("name", NAMES)
def test_epoch_hooks_are_accepted(name):
    sampler = build(name)
    sampler.start_epoch(0, np.random.default_rng(0))
    users, pos = batch(20, seed=6)
    sampler.sample(users, pos, rng=0, score_fn=scorer)
    sampler.end_epoch(0, scorer)
    assert isinstance(sampler.dynamic, bool)


def test_benchmark_smoke_run_reports_every_sampler():
    from raysearch.bench.samplers import run

    lines: list[str] = []
    rows = run(report=lines.append, sizes=(1000,), draws=8192, batch=4096, quick=True)
    row = rows[0]
    for name in ("rns", "pns", "icpns", "inbatch", "mixed", "dns", "choice", "multinomial"):
        assert row[name]["draws_per_s"] > 0
    assert row["build_pns_s"] > 0 and row["build_icpns_s"] > 0
    assert any("draws per second" in line for line in lines)
    # Side-by-side ratios against choice(p), from the same interleaved repetitions.
    ratio = row["speedup_vs_choice"]
    assert ratio["pns"] == pytest.approx(row["choice"]["us_per_batch"] / row["pns"]["us_per_batch"])
    assert any("choice(p)" in line and "pns" in line and "x)" in line for line in lines)
    # The synthesising samplers (MixGCF, DENS) beside RNS, DNS and AHNS on one random LightGCN.
    synth = rows[-1]["synthesisers"]
    for name in ("rns", "dns", "ahns", "mixgcf", "dens"):
        assert synth[name]["draws_per_s"] > 0
        assert synth["over_rns"][name] == pytest.approx(synth[name]["us_per_batch"] / synth["rns"]["us_per_batch"])
        assert any(line.lstrip().startswith(name) and "x rns" in line for line in lines)


def test_scoring_benchmark_smoke_run_draws_the_same_negatives_with_both_scorers():
    from raysearch.bench.scoring import run

    lines: list[str] = []
    rows = run(report=lines.append, quick=True)  # raises if the two scorers' draws differ at any batch
    assert [r["sampler"] for r in rows] == ["srns", "dns", "gdns"]
    for row in rows:
        assert row["batches"] > 1 and row["trainer_s"] > 0 and row["pair_by_pair_s"] > 0
        assert row["speedup"] == pytest.approx(row["pair_by_pair_s"] / row["trainer_s"])
    assert sum("identical draws" in line for line in lines) == 3


def test_benchmark_interleaves_contenders_with_a_rotating_order():
    from raysearch.bench.samplers import interleaved

    calls: list[tuple[str, int]] = []
    fns = {name: (lambda rep, name=name: calls.append((name, rep))) for name in ("a", "b", "c")}
    times = interleaved(fns, 4)
    assert [n for n, _ in calls] == list("abc" "bca" "cab" "abc")  # one call each a repetition, order rotates
    assert [r for _, r in calls] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert set(times) == {"a", "b", "c"} and all(t.shape == (4,) and np.all(t >= 0) for t in times.values())
