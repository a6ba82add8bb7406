"""Paired significance tests between two samplers over the same test users.

Two samplers evaluated on one split score the same users, so their per-user metric values pair up: the
test asks whether the mean per-user difference is zero. With several seeds per sampler, a user's value
is first averaged over the sampler's seeds (the seeds' variation is then inside each user's value and the
test stays paired over users, as in the ICPNS paper's t-tests over users).

Two tests, both two-sided: the paired t-test (the mean difference) and the Wilcoxon signed-rank test
(no normality assumption; per-user NDCG is far from normal, with many zeros). Users where both values
are equal carry no sign and are dropped by Wilcoxon (``zero_method="wilcox"``), not by the t-test.

``probability_below`` is the unpaired counterpart for two samples of values (the Mann-Whitney
probability), used by the GDNS false-negative analysis to say how well H and G separate two groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

PAPER_SAMPLERS = ("icpns", "gdns")
"""The samplers of the source papers: studies and reports test each against the best other sampler."""

PerUser = tuple[np.ndarray, np.ndarray]
"""``(users int64 (n,), values float64 (n,))``: one metric of one evaluation, users ascending."""


@dataclass(frozen=True)
class PairedTest:
    """``b`` against ``a`` on ``metric`` over ``n_users`` paired users; ``diff = mean_b - mean_a``.

    ``ci95``: the t-interval of the mean difference. ``p_t``/``p_wilcoxon``: two-sided p-values (1.0 when
    every difference is zero).
    """

    metric: str
    a: str
    b: str
    n_users: int
    mean_a: float
    mean_b: float
    diff: float
    ci95: tuple[float, float]
    t: float
    p_t: float
    p_wilcoxon: float

    @property
    def relative(self) -> float:
        """``diff / mean_a`` (NaN when ``mean_a`` is 0)."""
        return self.diff / self.mean_a if self.mean_a else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95), "relative": self.relative}


def mean_over_seeds(runs: Sequence[PerUser]) -> PerUser:
    """One value per user: the mean over ``runs`` (the seeds of one configuration), which must have
    evaluated the same users."""
    if not runs:
        raise ValueError("mean_over_seeds needs at least one run")
    users = np.asarray(runs[0][0], dtype=np.int64)
    for other, _ in runs[1:]:
        if not np.array_equal(np.asarray(other), users):
            raise ValueError("the runs evaluated different users: seeds of one configuration must share the split")
    return users, np.mean([np.asarray(values, dtype=np.float64) for _, values in runs], axis=0)


def paired_test(a: PerUser, b: PerUser, metric: str, name_a: str = "a", name_b: str = "b") -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of ``b`` against ``a`` over their common users.

    Raises ``ValueError`` when fewer than two users are common to both (e.g. different splits).
    """
    users, ia, ib = np.intersect1d(np.asarray(a[0]), np.asarray(b[0]), assume_unique=True, return_indices=True)
    if users.size < 2:
        raise ValueError(f"{name_a} and {name_b} share {users.size} evaluated user(s); a paired test needs two "
                         "(were they evaluated on the same split?)")
    va = np.asarray(a[1], dtype=np.float64)[ia]
    vb = np.asarray(b[1], dtype=np.float64)[ib]
    d = vb - va
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:  # every difference equal: no variance to test against
        t, p_t = (math.copysign(math.inf, mean), 0.0) if mean else (0.0, 1.0)
        ci = (mean, mean)
    else:
        t_res = stats.ttest_rel(vb, va)
        t, p_t = float(t_res.statistic), float(t_res.pvalue)
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        ci = (mean - half, mean + half)
    p_w = float(stats.wilcoxon(d, zero_method="wilcox").pvalue) if np.any(d != 0) else 1.0
    return PairedTest(metric=metric, a=name_a, b=name_b, n_users=int(n), mean_a=float(va.mean()),
                      mean_b=float(vb.mean()), diff=mean, ci95=ci, t=t, p_t=p_t, p_wilcoxon=p_w)


def against_best(per_sampler: Mapping[str, PerUser], target: str, metric: str) -> PairedTest:
    """``target`` against the best other sampler (highest mean of ``metric``) of ``per_sampler``.

    ``per_sampler``: each sampler's per-user values, already averaged over its seeds.
    """
    if target not in per_sampler:
        raise ValueError(f"no per-user values for {target!r}; have {sorted(per_sampler)}")
    others = {name: v for name, v in per_sampler.items() if name != target}
    if not others:
        raise ValueError(f"no baseline to test {target!r} against")
    best = max(sorted(others), key=lambda name: float(np.mean(others[name][1])))
    return paired_test(others[best], per_sampler[target], metric, name_a=best, name_b=target)


def paper_samplers_against_best(per_run: Mapping[str, Sequence[PerUser]], metric: str) -> list[PairedTest]:
    """Each of ``PAPER_SAMPLERS`` present in ``per_run`` (sampler -> its runs' per-user values) against
    the best other sampler, every sampler's values averaged over its runs first."""
    per_sampler = {sampler: mean_over_seeds(runs) for sampler, runs in per_run.items() if runs}
    return [against_best(per_sampler, target, metric)
            for target in PAPER_SAMPLERS if target in per_sampler and len(per_sampler) > 1]


def holm_adjusted(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of ``m`` p-values (family-wise error control, no independence assumed):
    the i-th smallest becomes max over j <= i of min(1, (m - j + 1) p_(j)); returned in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


@dataclass(frozen=True)
class Verdict:
    """Which sampler is best on ``metric`` (highest mean over users) and which others cannot be told apart
    from it: each other sampler's paired t-test against the best, Holm-adjusted over the comparisons,
    ``tied`` when the adjusted p is at least ``alpha``."""

    metric: str
    best: str
    best_mean: float
    alpha: float
    tied: tuple[str, ...]
    worse: tuple[str, ...]
    tests: tuple[dict[str, Any], ...]  # per other sampler: sampler, mean, diff, p_t, p_holm

    correction = "Holm"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tied": list(self.tied), "worse": list(self.worse), "tests": list(self.tests),
                "correction": self.correction}


def verdict(per_run: Mapping[str, Sequence[PerUser]], metric: str, alpha: float = 0.05) -> Verdict | None:
    """The study's verdict (see ``Verdict``) from each sampler's runs' per-user values (averaged over its
    runs first); None with fewer than two samplers."""
    per_sampler = {sampler: mean_over_seeds(runs) for sampler, runs in per_run.items() if runs}
    if len(per_sampler) < 2:
        return None
    means = {name: float(np.mean(values)) for name, (_, values) in per_sampler.items()}
    best = max(sorted(means), key=means.__getitem__)
    others = [name for name in sorted(per_sampler) if name != best]
    tests = [paired_test(per_sampler[best], per_sampler[name], metric, name_a=best, name_b=name) for name in others]
    adjusted = holm_adjusted([t.p_t for t in tests])
    rows = tuple({"sampler": t.b, "mean": t.mean_b, "diff": t.diff, "p_t": t.p_t, "p_holm": float(p)}
                 for t, p in zip(tests, adjusted, strict=True))
    order = sorted(rows, key=lambda r: -r["mean"])
    return Verdict(metric=metric, best=best, best_mean=means[best], alpha=alpha,
                   tied=tuple(r["sampler"] for r in order if r["p_holm"] >= alpha),
                   worse=tuple(r["sampler"] for r in order if r["p_holm"] < alpha),
                   tests=tuple(order))


def describe_verdict(found: Mapping[str, Any], best: str = "{}") -> str:
    """A verdict (``Verdict.to_dict()``) in one sentence: ``rns is best on test/ndcg@10 (0.0943);
    indistinguishable from it: dns (p = 0.82); below it: pns (p = 0.0012) (paired t-tests over test users
    against the best, Holm-adjusted, alpha 0.05)``. ``best``: how the best sampler's name is written."""
    p = {t["sampler"]: t["p_holm"] for t in found["tests"]}
    tied = ", ".join(f"{s} (p = {p[s]:.2g})" for s in found["tied"]) or "none"
    worse = ", ".join(f"{s} (p = {p[s]:.2g})" for s in found["worse"]) or "none"
    return (f"{best.format(found['best'])} is best on {found['metric']} ({found['best_mean']:.4f}); "
            f"indistinguishable from it: {tied}; below it: {worse} (paired t-tests over test users against the "
            f"best, {found['correction']}-adjusted, alpha {found['alpha']:g})")


def probability_below(a: np.ndarray, b: np.ndarray) -> float:
    """P(x < y) + P(x = y) / 2 for x from ``a`` and y from ``b`` drawn independently (the Mann-Whitney
    statistic over n_a n_b; 0.5 when the two cannot be told apart); NaN when either is empty."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (a.size and b.size):
        return math.nan
    ranks = stats.rankdata(np.concatenate([a, b]))  # average ranks for ties
    u_above = ranks[: a.size].sum() - a.size * (a.size + 1) / 2  # pairs with a above b, ties half
    return float(1.0 - u_above / (a.size * b.size))
