"""``raysearch bench grow``: the exponent fit, the size rule, the memory guard and a quick run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raysearch.bench import grow
from raysearch.cli import main
from raysearch.errors import RaysearchError


def test_fit_exponent_recovers_exact_power_laws():
    sizes = [1e4, 1e5, 1e6, 5e7]
    linear = grow.fit_exponent(sizes, [3.0 * s for s in sizes])
    assert linear["b"] == pytest.approx(1.0, abs=1e-12)
    assert linear["a"] == pytest.approx(3.0, rel=1e-9)
    assert grow.fit_exponent(sizes, [s**2 for s in sizes])["b"] == pytest.approx(2.0, abs=1e-12)
    assert grow.fit_exponent(sizes[:2], [7.0, 7.0])["b"] == pytest.approx(0.0, abs=1e-12)  # two sizes suffice


def test_fit_exponent_needs_two_positive_points():
    assert grow.fit_exponent([1e6], [2.0])["b"] is None
    assert grow.fit_exponent([1e6, 1e7], [2.0, None])["b"] is None  # a failed stage leaves one point
    assert grow.fit_exponent([1e6, 1e6], [2.0, 3.0])["b"] is None  # one distinct size
    fit = grow.fit_exponent([1e5, 1e6, 1e7], [0.0, 2.0, 20.0])  # a zero (unmeasurable) cost is left out
    assert fit["points"] == 2 and fit["b"] == pytest.approx(1.0)


def test_flag_above_linear_tolerance():
    assert grow.FLAG_ABOVE == 1.15
    assert not grow.flagged(1.0)
    assert not grow.flagged(1.15)
    assert grow.flagged(1.16)
    assert grow.flagged(2.0)
    assert not grow.flagged(None)
    sizes = [1e6, 1e7]
    assert grow.flagged(grow.fit_exponent(sizes, [s**2 for s in sizes])["b"])
    assert not grow.flagged(grow.fit_exponent(sizes, [3.0 * s for s in sizes])["b"])


def test_size_rule_is_gowalla_like():
    assert grow.users_items(1e6) == (28_571, 40_000)
    assert grow.users_items(5e7) == (1_428_571, 2_000_000)
    for size in (1e6, 1e7, 5e7):
        users, items = grow.users_items(size)
        assert size / users == pytest.approx(35, rel=1e-3)  # Gowalla: 34.4 interactions a user
        assert size / items == pytest.approx(25, rel=1e-3)  # Gowalla: 25.1 an item
    users, items = grow.users_items(2e4)
    assert items > grow.MEAN_EXPOSURES  # the generator clips exposures to the catalogue
    with pytest.raises(ValueError):
        grow.users_items(0)


def test_parse_sizes_and_keys():
    assert grow.parse_sizes("1e7, 1e6,1e6") == (1e6, 1e7)
    assert grow._size_key(5e7) == "5e7" and grow._size_key(2e4) == "2e4" and grow._size_key(2.5e6) == "2.5e6"
    with pytest.raises(RaysearchError, match="--sizes"):
        grow.parse_sizes("a lot")
    with pytest.raises(RaysearchError, match="--sizes"):
        grow.parse_sizes("10")


def test_eval_batch_bounded_and_estimates_grow():
    assert grow.eval_batch_users(40_000) == 2048  # Gowalla-sized: the default batch
    batch = grow.eval_batch_users(2_000_000)  # 50M: 2048 x 2M float32 would be 16 GiB
    assert batch < 2048 and batch * 2_000_000 * 4 <= grow.EVAL_BLOCK_BYTES
    small, large = grow.estimate_peak_bytes(1e6), grow.estimate_peak_bytes(5e7)
    assert set(small) == set(grow.STAGES)
    assert all(large[k] > small[k] for k in small)


def test_guard_refuses_sizes_above_max_rss(capsys):
    with pytest.raises(RaysearchError, match="estimated .* peak RSS .*--max-rss-gb"):
        grow.run(report=lambda line: None, sizes="5e7", max_rss_gb=1.0)
    # through the CLI: one error line, exit status 2, nothing measured
    assert main(["bench", "grow", "--sizes", "5e7", "--max-rss-gb", "1"]) == 2
    assert "needs an estimated" in capsys.readouterr().err


def test_sizes_option_does_not_apply_to_other_benches(capsys):
    assert main(["bench", "steps", "--sizes", "1e6"]) == 2
    assert "--sizes does not apply" in capsys.readouterr().err


def test_quick_run_through_cli(tmp_path, capsys):
    out = tmp_path / "grow.json"
    assert main(["bench", "grow", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "load average before" in text and "threads 1" in text and "<- interactions" in text
    data = json.loads(out.read_text())
    assert data["sizes"] == list(grow.QUICK_SIZES) and data["threads"] == 1
    for key, row in data["stages"].items():
        assert set(row) == set(grow.STAGES), key
        for stage, result in row.items():
            assert "error" not in result, (key, stage, result)
            assert result["peak_rss_bytes"] > 0
    interactions = data["interactions"]
    assert all(abs(x - s) / s < 0.1 for x, s in zip(interactions, grow.QUICK_SIZES, strict=True))
    figures = {(f["stage"], f["figure"]) for f in data["fits"]}
    assert figures == {(s, f) for s, f, _ in grow.FIGURES}
    for fit in data["fits"]:
        assert fit["b"] is not None and np.isfinite(fit["b"]), fit
        assert fit["flag"] == (fit["b"] > grow.FLAG_ABOVE)
        assert "note" in fit
        assert not fit["note"] or fit["flag"]
    first = data["stages"]["2e4"]
    assert first["gdns"]["state_bytes"] == first["load"]["users"] * 128 * 14 + first["load"]["users"]
    assert first["mf"]["adam"]["steps"] == -(-first["load"]["train"] // grow.BATCH)
    assert not first["eval"]["scaled"]  # every validation user ranked at quick sizes


def test_stage_past_the_guard_is_stopped(tmp_path):
    out = grow.run_stage("load", {"size": 2e4, "workdir": str(tmp_path)}, limit=1 << 20)  # 1 MiB: below any python
    assert out["error"].startswith("stopped: RSS")


def test_the_mf_stage_times_bench_steps_step_with_its_settings():
    from raysearch.bench import grow, steps

    assert (grow.DIM, grow.BATCH, grow.LR, grow.REG, grow.SEED) == (steps.DIM, steps.BATCH, steps.LR, steps.REG, steps.SEED)
