"""Paired significance tests over users: hand-computed statistics, alignment, seeds, errors, and the
test's size under the null (simulated, fixed seed)."""

import math

import numpy as np
import pytest
from scipy import stats

from raysearch.evaluation import EvalResult, load_per_user, save_per_user
from raysearch.evaluation.significance import against_best, mean_over_seeds, paired_test


def test_hand_computed_t_statistic_and_interval():
    users = np.arange(4)
    a = np.array([0.1, 0.2, 0.3, 0.4])
    b = np.array([0.2, 0.4, 0.3, 0.6])  # differences 0.1, 0.2, 0.0, 0.2: mean 0.125, sd 0.0957427
    test = paired_test((users, a), (users, b), "ndcg@10", "rns", "icpns")
    sd = math.sqrt(((0.1 - 0.125) ** 2 + (0.2 - 0.125) ** 2 + 0.125**2 + (0.2 - 0.125) ** 2) / 3)
    assert test.n_users == 4 and test.a == "rns" and test.b == "icpns"
    assert test.diff == pytest.approx(0.125)
    assert test.t == pytest.approx(0.125 / (sd / 2))  # 2.6112
    assert test.p_t == pytest.approx(2 * stats.t.sf(0.125 / (sd / 2), 3))
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert test.ci95 == pytest.approx((0.125 - half, 0.125 + half))
    assert test.relative == pytest.approx(0.125 / 0.25)
    # Wilcoxon drops the zero difference: ranks of 0.1, 0.2, 0.2 are 1, 2.5, 2.5, all positive
    assert test.p_wilcoxon == pytest.approx(stats.wilcoxon([0.1, 0.2, 0.2]).pvalue)


def test_users_are_paired_by_id_not_by_position():
    a = (np.array([3, 1, 2, 7]), np.array([0.3, 0.1, 0.2, 0.9]))
    b = (np.array([1, 2, 3]), np.array([0.1, 0.2, 0.3]))  # user 7 missing; same values per user
    test = paired_test(a, b, "m")
    assert test.n_users == 3 and test.diff == 0.0 and test.p_t == 1.0 and test.p_wilcoxon == 1.0


def test_constant_nonzero_difference_is_certain():
    users = np.arange(5)
    test = paired_test((users, np.zeros(5)), (users, np.full(5, 0.1)), "m")
    assert test.p_t == 0.0 and test.ci95 == pytest.approx((0.1, 0.1)) and test.t == math.inf


def test_too_few_common_users():
    with pytest.raises(ValueError, match="share 1 evaluated user"):
        paired_test((np.array([0, 1]), np.ones(2)), (np.array([1, 2]), np.ones(2)), "m", "x", "y")


def test_mean_over_seeds_and_mismatched_users():
    users = np.array([0, 2, 5])
    got = mean_over_seeds([(users, np.array([0.0, 1.0, 0.5])), (users, np.array([1.0, 0.0, 0.5]))])
    np.testing.assert_array_equal(got[0], users)
    np.testing.assert_allclose(got[1], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="different users"):
        mean_over_seeds([(users, np.zeros(3)), (np.array([0, 2, 6]), np.zeros(3))])


def test_against_best_picks_the_best_other_sampler():
    users = np.arange(50)
    rng = np.random.default_rng(0)
    per = {"rns": (users, rng.random(50) * 0.5), "dns": (users, rng.random(50) * 0.5 + 0.3),
           "icpns": (users, rng.random(50))}
    test = against_best(per, "icpns", "test/ndcg@10")
    assert test.a == "dns" and test.b == "icpns" and test.metric == "test/ndcg@10"
    assert test.mean_a == pytest.approx(per["dns"][1].mean())
    with pytest.raises(ValueError, match="no per-user values for 'gdns'"):
        against_best(per, "gdns", "m")
    with pytest.raises(ValueError, match="no baseline"):
        against_best({"icpns": per["icpns"]}, "icpns", "m")


def test_size_under_the_null_and_power_under_a_shift():
    """Per-user NDCG-like values (many zeros) from one distribution for both samplers: about 5% of 400
    studies reject at 0.05 (binomial 99.9% band: 7 to 35). A shift of +0.15 of the non-zero values
    (about +0.06 on the mean) over 900 users is found."""
    rng = np.random.default_rng(2026)
    users = np.arange(900)

    def draw(shift=0.0):
        hit = rng.random(900) < 0.4
        return np.where(hit, np.clip(rng.beta(2, 3, 900) + shift, 0, 1), 0.0)

    rejected_t = rejected_w = 0
    for _ in range(400):
        test = paired_test((users, draw()), (users, draw()), "m")
        rejected_t += test.p_t < 0.05
        rejected_w += test.p_wilcoxon < 0.05
    assert 7 <= rejected_t <= 35 and 7 <= rejected_w <= 35
    shifted = paired_test((users, draw()), (users, draw(0.15)), "m")
    assert shifted.diff > 0 and shifted.p_t < 1e-3 and shifted.p_wilcoxon < 1e-3


def test_per_user_file_round_trip(tmp_path):
    result = EvalResult(np.array([1, 4, 9]), {"ndcg@10": np.array([0.5, 0.0, 1.0]), "recall@10": np.ones(3)},
                        {"protocol": "full"})
    save_per_user(result, tmp_path / "pu.npz")
    users, values = load_per_user(tmp_path / "pu.npz")
    np.testing.assert_array_equal(users, [1, 4, 9])
    assert set(values) == {"ndcg@10", "recall@10"}
    np.testing.assert_array_equal(values["ndcg@10"], [0.5, 0.0, 1.0])
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="no 'users' array"):
        load_per_user(tmp_path / "other.npz")


def test_holm_adjustment_by_hand():
    from raysearch.evaluation.significance import holm_adjusted

    # m = 4, sorted p: .01 .02 .03 .04 -> 4x.01=.04, 3x.02=.06, 2x.03=.06, 1x.04=.04 -> running max .04 .06 .06 .06
    got = holm_adjusted([0.03, 0.01, 0.04, 0.02])
    np.testing.assert_allclose(got, [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(holm_adjusted([0.5, 0.6]), [1.0, 1.0])


def test_verdict_names_the_best_and_who_is_indistinguishable_from_it():
    from raysearch.evaluation.significance import verdict

    rng = np.random.default_rng(11)
    users = np.arange(400)
    base = rng.random(400)
    runs = {"best": [(users, base + 0.30)], "tied": [(users, base + 0.30 + rng.normal(0, 0.05, 400))],
            "worse": [(users, base + rng.normal(0, 0.05, 400))]}
    found = verdict(runs, "test/ndcg@10")
    assert found.best in ("best", "tied") and found.correction == "Holm"
    other = "tied" if found.best == "best" else "best"
    assert found.tied == (other,) and found.worse == ("worse",)
    assert [t["sampler"] for t in found.tests] == [other, "worse"]  # by mean, highest first
    assert verdict({"only": [(users, base)]}, "test/ndcg@10") is None


def test_a_verdict_reads_as_one_sentence_with_the_holm_p_values():
    from raysearch.evaluation.significance import describe_verdict

    found = {"metric": "test/ndcg@10", "best": "dns", "best_mean": 0.10911, "alpha": 0.05, "correction": "Holm",
             "tied": ["rns"], "worse": ["pns", "gdns"],
             "tests": [{"sampler": "rns", "p_holm": 0.4123}, {"sampler": "pns", "p_holm": 0.00123},
                       {"sampler": "gdns", "p_holm": 1.5e-22}]}
    assert describe_verdict(found, best="**{}**") == (
        "**dns** is best on test/ndcg@10 (0.1091); indistinguishable from it: rns (p = 0.41); below it: "
        "pns (p = 0.0012), gdns (p = 1.5e-22) (paired t-tests over test users against the best, Holm-adjusted, "
        "alpha 0.05)")
    assert describe_verdict({**found, "tied": [], "worse": []}).startswith(
        "dns is best on test/ndcg@10 (0.1091); indistinguishable from it: none; below it: none")
