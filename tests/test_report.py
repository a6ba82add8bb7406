"""`raysearch report`: tables and figures from tracked runs, the page in a real headless Chromium, the
Grafana dashboard.

The MLflow store of the page tests is real: `raysearch train` runs (RNS, ICPNS, GDNS on two seeds each,
tracking on) plus search trials logged with the tags and parameters `raysearch tune` gives them (with
validation values chosen so that the expected importances are known). A slow test builds the report of
a real tiny study end to end.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import math
import os
import re
import shutil
import subprocess
import tomllib
from importlib import resources
from pathlib import Path

import mlflow
import numpy as np
import pytest

from raysearch.cli import main
from raysearch.errors import ConfigError, DataError
from raysearch.evaluation.significance import holm_adjusted
from raysearch.report import build_report
from raysearch.report.figures import heatmap_figure
from raysearch.report.runs import TrackedRun, load_runs
from raysearch.report.search import importance_note, param_importances, search_trials
from raysearch.report.tables import blocks, comparison, configurations, curves, read_scale, total_costs
from raysearch.run import train

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TRAIN = ["trainer.epochs=2", "trainer.progress=false", "trainer.batch_size=512", "model.dim=8",
         "dataset.synthetic.n_users=200", "dataset.synthetic.n_items=120", "tracking.enabled=true"]
SAMPLERS = {"rns": [], "icpns": ["sampler.n_communities=3"], "gdns": ["sampler.group_size=4"]}


# --------------------------------------------------------------------------- in-memory runs
def tracked(sampler: str, seed: int = 0, metrics: dict | None = None, *, dataset: str = "synthetic",
            phase: str | None = None, study: str = "", params: dict | None = None, history=(), epochs=(),
            status: str = "FINISHED", start: int = 0) -> TrackedRun:
    tags = {"raysearch.dataset": dataset, "raysearch.backbone": "mf", "raysearch.protocol": "full",
            "raysearch.sampler": sampler, "raysearch.seed": str(seed)}
    if phase:
        tags.update({"raysearch.phase": phase, "raysearch.study": study})
    return TrackedRun(run_id=f"{sampler}-{seed}-{start}-{dataset}", name=f"{sampler}-{seed}", status=status,
                      start_time=start, tags=tags,
                      params={"sampler.name": sampler, "trainer.seed": str(seed), **(params or {})},
                      metrics=metrics or {}, history=tuple(history), epochs=tuple(epochs))


def test_comparison_is_mean_and_sample_std_with_the_best_mean_marked():
    # Binary-exact values: (0.125 + 0.375) / 2 = 0.25; sample std of (0.25, 0.75) = sqrt(2 * 0.25^2) = 0.3536.
    runs = [
        tracked("rns", 0, {"test/ndcg_at_10": 0.125, "test/recall_at_20": 0.25, "test/ndcg_at_20": 0.5}),
        tracked("rns", 1, {"test/ndcg_at_10": 0.375, "test/recall_at_20": 0.75, "test/ndcg_at_20": 0.5}),
        tracked("icpns", 0, {"test/ndcg_at_10": 0.5, "test/recall_at_20": 0.25, "test/ndcg_at_20": 0.5}),
        *[tracked("gdns", s, {"test/ndcg_at_10": 0.25, "test/recall_at_20": 0.5, "test/ndcg_at_20": 0.5},
                  params={"trainer.lr": "0.01" if s else "0.1"}) for s in range(3)],
        tracked("rns", 0, {"test/ndcg_at_10": 0.9}, dataset="other"),  # another block
        tracked("rns", 5, {}, phase="search", study="s", history=[(1, 0.9)]),  # search trials are not tested
        tracked("rns", 6, {"test/ndcg_at_10": 1.0}, status="FAILED"),  # unfinished runs do not count
    ]
    bs = blocks(runs)
    assert [(b.dataset, len(b.runs)) for b in bs] == [("other", 1), ("synthetic", 6)]
    table = comparison(bs[1])
    assert table.metrics == ("test/recall_at_20", "test/ndcg_at_10", "test/ndcg_at_20")  # recall, ndcg; K up
    rows = {r.sampler: r for r in table.rows}
    assert list(rows) == ["gdns", "icpns", "rns"]
    rns = rows["rns"].cells
    assert rns["test/ndcg_at_10"].mean == 0.25 and rns["test/recall_at_20"].mean == 0.5
    assert rns["test/recall_at_20"].std == pytest.approx(math.sqrt(2 * 0.25**2))
    assert math.isnan(rows["icpns"].cells["test/ndcg_at_10"].std) and rows["icpns"].cells["test/ndcg_at_10"].n == 1
    assert rows["gdns"].cells["test/recall_at_20"].std == 0.0 and rows["gdns"].seeds == (0, 1, 2)
    best = {key: sorted(s for s, r in rows.items() if r.cells[key].best) for key in table.metrics}
    assert best == {"test/ndcg_at_10": ["icpns"], "test/recall_at_20": ["gdns", "rns"],  # a tie marks both
                    "test/ndcg_at_20": ["gdns", "icpns", "rns"]}
    assert rows["rns"].configurations == 1 and rows["gdns"].configurations == 2  # the seed does not count
    assert configurations([tracked("rns", 0), tracked("rns", 1)]) == 1


def test_curves_split_the_history_into_stages_by_the_metrics_lines():
    valid = {"ndcg@10": 0.0}
    lines = [{"stage": "pretrain", "valid": valid}, {"stage": "pretrain", "valid": valid},
             {"stage": "finetune"},  # an epoch without validation (eval_every > 1)
             {"stage": "finetune", "valid": valid}, {"stage": "finetune", "valid": valid}]
    run = tracked("icpns", 0, {"test/ndcg_at_10": 0.1}, history=[(0, 0.1), (1, 0.2), (3, 0.3), (4, 0.4)],
                  epochs=lines)
    (block,) = blocks([run])
    assert [(c.stage, c.epochs, c.values) for c in curves(block)] == [
        ("pretrain", (1, 2), (0.1, 0.2)), ("finetune", (4, 5), (0.3, 0.4))]
    # Lines that do not match the history (e.g. missing artifact): one stage, validations in order.
    (block,) = blocks([tracked("rns", 0, {"test/ndcg_at_10": 0.1}, history=[(0, 0.1), (1, 0.2)], epochs=lines)])
    assert [(c.stage, c.epochs, c.values) for c in curves(block)] == [("train", (1, 2), (0.1, 0.2))]


def _search_runs(n: int, seed: int = 0) -> list[TrackedRun]:
    """ICPNS trials whose best validation value is their alpha: K and the lr play no part."""
    rng = np.random.default_rng(seed)
    alphas = rng.permutation(np.linspace(0.05, 0.95, n))
    ks = rng.choice([2, 4, 8, 16, 32, 64], size=n)
    return [tracked("icpns", 0, phase="search", study="s1", start=i,
                    params={"sampler.alpha": repr(float(a)), "sampler.n_communities": str(int(k)),
                            "trainer.lr": "0.001", "trainer.valid_metric": "ndcg@10"},
                    history=[(1, float(a) / 2), (2, float(a)), (3, float(a) * 0.9)])
            for i, (a, k) in enumerate(zip(alphas, ks, strict=True))]


def test_search_trials_keep_varying_parameters_typed_with_the_best_value():
    runs = _search_runs(6)
    runs.append(tracked("icpns", 0, phase="search", study="s1", start=99, status="FAILED",
                        params={"sampler.alpha": "0.5", "sampler.n_communities": "7"}))  # no validation at all
    (trials,) = search_trials(runs)
    assert (trials.study, trials.sampler, trials.metric) == ("s1", "icpns", "ndcg@10")
    assert trials.params == ("sampler.alpha", "sampler.n_communities")  # the constant lr is not searched
    assert trials.unreported == 1 and len(trials.rows) == 6
    assert all(isinstance(v, int) for v in trials.values("sampler.n_communities"))
    assert trials.values("value") == trials.values("sampler.alpha")  # best of (a/2, a, 0.9a) is a
    assert trials.values("order") == list(range(6))


def test_importances_find_the_parameter_that_decides_the_metric():
    (trials,) = search_trials(_search_runs(16))
    importances = param_importances(trials)
    assert set(importances) == {"sampler.alpha", "sampler.n_communities"}
    assert sum(importances.values()) == pytest.approx(1.0)
    assert importances["sampler.alpha"] > 0.8  # the value is alpha itself
    (few,) = search_trials(_search_runs(4))
    assert importance_note(few) == "icpns: parameter importances need at least 5 trials (this search has 4)"
    single = [tracked("pns", 0, phase="search", study="s", start=i, params={"sampler.beta": str(b)},
                      history=[(1, b)]) for i, b in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])]
    (one,) = search_trials(single)
    assert importance_note(one) == ("pns: parameter importances need at least 2 searched parameters "
                                    "(1 varied: sampler.beta)")
    flat = [tracked("icpns", 0, phase="search", study="s", start=i, history=[(1, 0.5)],
                    params={"sampler.alpha": str(i / 10), "sampler.n_communities": str(2**i)}) for i in range(6)]
    (same,) = search_trials(flat)  # fANOVA cannot split zero variance
    assert importance_note(same) == "icpns: no parameter importances (every trial reached the same validation value)"


def test_total_cost_counts_search_tested_and_pretraining_runs_of_the_blocks_studies():
    def run(sampler, seed, phase, study, start, seconds, epochs=0, test=None, backbone="mf", budget=""):
        r = tracked(sampler, seed, {"test/ndcg_at_10": test} if test is not None else {}, phase=phase, study=study,
                    history=[(e, 0.1) for e in range(epochs)], start=start)
        tags = {**r.tags, "raysearch.backbone": backbone}
        if budget:
            tags["raysearch.search_budget"] = budget
        return dataclasses.replace(r, tags=tags, end_time=start + int(seconds * 1000))

    runs = [
        run("icpns", 0, "final", "s1", 1_000, 30.0, 5, test=0.25), run("icpns", 1, "final", "s1", 2_000, 34.0, 5, test=0.75),
        run("icpns", 0, "search", "s1", 3_000, 10.5, 4, budget="grid, 2 trials"),
        run("icpns", 0, "search", "s1", 4_000, 2.5, 1, budget="grid, 2 trials"),
        run("icpns", 0, "pretrain", "s1", 500, 60.0, 20),
        run("icpns", 0, "search", "other-study", 5_000, 99.0, 9),  # another study: not this block's cost
        run("icpns", 0, "search", "s1", 6_000, 99.0, 9, backbone="lightgcn"),  # another block
        run("rns", 0, "final", "s1", 7_000, 8.0, 5, test=0.5),
        dataclasses.replace(run("rns", 0, "search", "s1", 8_000, 1.0, 3), end_time=None),  # running: no time yet
    ]
    (block,) = [b for b in blocks(runs) if b.backbone == "mf"]
    costs = {c.sampler: c for c in total_costs(block, runs)}
    icpns = costs["icpns"]
    assert (icpns.trials, icpns.trial_epochs, icpns.tested_runs, icpns.pretraining_runs, icpns.pretraining_epochs) == (
        2, 5, 2, 1, 20)
    assert icpns.seconds == 30.0 + 34.0 + 10.5 + 2.5 + 60.0
    assert (icpns.mean, icpns.std) == (0.5, math.sqrt(0.125))  # (0.25, 0.75): sample std sqrt(2 * 0.25^2)
    assert icpns.budgets == ("grid, 2 trials",)
    rns = costs["rns"]
    assert (rns.trials, rns.trial_epochs, rns.seconds, rns.budgets) == (1, 3, 8.0, ())
    assert math.isnan(rns.std)  # one tested run
    assert not icpns.own_pretraining and not rns.own_pretraining  # ICPNS's first stage is a shared run here
    # without the shared run, ICPNS runs that carry a pre-training schedule pre-train themselves
    alone = [dataclasses.replace(r, params={**r.params, "sampler.pretrain_epochs": "20"}) for r in runs
             if r.sampler == "icpns" and r.phase != "pretrain"]
    (solo,) = total_costs(blocks(alone)[0], alone)
    assert solo.own_pretraining and solo.pretraining_runs == 0
    fine_tuned = [dataclasses.replace(r, params={**r.params, "sampler.pretrained_from": "/runs/rns"}) for r in alone]
    assert not total_costs(blocks(fine_tuned)[0], fine_tuned)[0].own_pretraining  # they fine-tune a given run


def test_verdict_is_holm_adjusted_paired_tests_against_the_best(store, report_html):
    """The page's verdict equals one recomputed from the runs' per-user files: the best mean over users, then
    paired t-tests of every other sampler against it, Holm-adjusted, indistinguishable when p >= 0.05."""
    from scipy import stats

    per = {s: np.mean([np.load(store["root"] / "runs" / f"{s}-{seed}" / "test_per_user.npz")["ndcg@10"]
                       for seed in (0, 1)], axis=0) for s in SAMPLERS}
    best = max(per, key=lambda s: per[s].mean())
    others = sorted(s for s in per if s != best)
    adjusted = holm_adjusted([stats.ttest_rel(per[best], per[s]).pvalue for s in others])
    html = report_html.read_text()
    found = re.search(r'<p class="rs-verdict" data-best="(\w+)" data-tied="([\w,]*)" data-worse="([\w,]*)">', html)
    assert found is not None
    assert found.group(1) == best
    assert set(filter(None, found.group(2).split(","))) == {s for s, p in zip(others, adjusted, strict=True) if p >= 0.05}
    assert set(filter(None, found.group(3).split(","))) == {s for s, p in zip(others, adjusted, strict=True) if p < 0.05}
    assert html.index('id="verdict"') < html.index('id="comparison"')  # the verdict leads the page
    assert re.search(r'<th data-metric="test/ndcg_at_10" class="selection"', html)  # selection column marked


def test_gdns_heat_map_cells_are_means_of_their_trials():
    runs = [tracked("gdns", 0, phase="search", study="s", start=i,
                    params={"sampler.alpha": str(a), "sampler.group_size": str(g)}, history=[(1, v)])
            for i, (a, g, v) in enumerate([(0.1, 8, 0.1), (0.1, 8, 0.3), (0.2, 16, 0.5), (0.2, 16, 0.7),
                                           (0.2, 16, 0.9)])]
    (trials,) = search_trials(runs)
    heat = heatmap_figure(trials, "sampler.group_size", "sampler.alpha").data[0]
    assert list(heat.x) == ["8", "16"] and list(heat.y) == ["0.1", "0.2"]  # a grid: values as they are
    assert heat.z[0][0] == pytest.approx(0.2) and heat.z[1][1] == pytest.approx(0.7)
    assert heat.z[0][1] is None or math.isnan(heat.z[0][1])
    assert [list(r) for r in heat.customdata] == [[2, 0], [0, 3]]
    # Continuous alpha: 5 equal-width bins over [0, 1].
    cases = [(0.0, 8), (0.05, 8), (0.3, 8), (0.35, 8), (0.5, 8), (0.7, 8), (0.9, 8), (1.0, 8), (0.5, 16)]
    runs = [tracked("gdns", 0, phase="search", study="s", start=i,
                    params={"sampler.alpha": str(a), "sampler.group_size": str(g)}, history=[(1, a)])
            for i, (a, g) in enumerate(cases)]
    (trials,) = search_trials(runs)
    heat = heatmap_figure(trials, "sampler.group_size", "sampler.alpha").data[0]
    assert list(heat.x) == ["8", "16"] and len(heat.y) == 5
    assert [list(r) for r in heat.customdata] == [[2, 0], [2, 0], [1, 1], [1, 0], [2, 0]]
    assert heat.z[4][0] == pytest.approx(0.95) and heat.z[0][0] == pytest.approx(0.025)


def test_scale_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(DataError, match=re.escape(f"{missing}: no such file (write one with `raysearch bench scale")):
        read_scale(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("[{\n oops")
    with pytest.raises(DataError, match=re.escape(f"{bad}:2: not JSON")):
        read_scale(bad)
    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"model": "mf", "workers": 1, "epoch_seconds": 1.0}]))
    with pytest.raises(DataError, match=re.escape(f"{short}: row 0 lacks draws_per_second, comm_bytes_per_step, "
                                                  "param_bytes, optimizer_bytes")):
        read_scale(short)


# --------------------------------------------------------------------------- Grafana
def _exported_metrics() -> dict[str, set[str]]:
    """Metric names (as Ray exports them, with the ray_ prefix) and tag keys from raysearch/metrics.py."""
    import raysearch.metrics as m

    tree = ast.parse((ROOT / "raysearch" / "metrics.py").read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Gauge", "Counter", "Histogram"):
            tags = next(k.value for k in node.keywords if k.arg == "tag_keys")
            keys = getattr(m, tags.id) if isinstance(tags, ast.Name) else ast.literal_eval(tags)
            out["ray_" + node.args[0].value] = set(keys)
    return out


def test_grafana_dashboard_queries_only_exported_metrics():
    exported = _exported_metrics()
    assert len(exported) == 6 and "ray_raysearch_draws_per_second" in exported
    text = resources.files("raysearch.dashboards").joinpath("grafana-raysearch.json").read_text()
    dashboard = json.loads(text)
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource", "sampler", "study"}
    datasource = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    used = set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bray_\w+", target["expr"]))
            assert names and names <= set(exported), (panel["title"], target["expr"])
            labels = set(re.findall(r"(\w+)\s*=~", target["expr"]))
            labels |= {w for group in re.findall(r"by \(([^)]*)\)", target["expr"]) for w in re.findall(r"\w+", group)}
            allowed = set().union(*(exported[n] for n in names))
            assert labels <= allowed, (panel["title"], labels - allowed)
            used |= names
    for variable in dashboard["templating"]["list"][1:]:
        (metric,) = re.findall(r"ray_\w+", variable["query"]["query"])
        assert metric in exported
    assert used == set(exported)  # every exported metric has a panel


def test_dashboards_ship_as_package_data():
    files = resources.files("raysearch.dashboards")
    assert files.joinpath("report.html.j2").is_file() and files.joinpath("grafana-raysearch.json").is_file()
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"]["raysearch.dashboards"] == "dashboards"
    assert "raysearch.dashboards" in setup["packages"]
    assert {"*.j2", "*.json"} <= set(setup["package-data"]["raysearch.dashboards"])


# --------------------------------------------------------------------------- a real store
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite MLflow store: experiment ``cmp`` (3 samplers x 2 seeds of `raysearch train`, plus search
    trials of a study ``s1``) and experiment ``solo`` (one RNS run)."""
    root = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    for sampler, extra in SAMPLERS.items():
        for seed in (0, 1):
            train([*TRAIN, f"tracking.uri={uri}", "tracking.experiment=cmp", f"sampler={sampler}",
                   f"trainer.seed={seed}", *extra], out=root / "runs" / f"{sampler}-{seed}")
    train([*TRAIN, f"tracking.uri={uri}", "tracking.experiment=solo"], out=root / "runs" / "solo")
    _log_search_trials(uri, "cmp")
    return {"root": root, "uri": uri}


def _log_search_trials(uri: str, experiment: str) -> None:
    """Search trials as `raysearch tune` tags them: ICPNS over (alpha, K), GDNS over (alpha, group size)."""
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    rng = np.random.default_rng(7)
    spaces = {"icpns": lambda: {"sampler.alpha": rng.uniform(0, 1), "sampler.n_communities": int(rng.choice([2, 4, 8, 16]))},
              "gdns": lambda: {"sampler.alpha": rng.uniform(0, 1), "sampler.group_size": int(rng.choice([4, 8, 16]))}}
    for sampler, draw in spaces.items():
        for i in range(6):
            params = draw()
            tags = {"raysearch.dataset": "synthetic", "raysearch.backbone": "mf", "raysearch.protocol": "full",
                    "raysearch.sampler": sampler, "raysearch.seed": "0", "raysearch.phase": "search",
                    "raysearch.selected": "false", "raysearch.study": "s1"}
            run = client.create_run(experiment_id, run_name=f"{sampler}-trial-{i}", tags=tags)
            for key, value in {**params, "sampler.name": sampler, "model.name": "mf", "trainer.seed": 0,
                               "trainer.valid_metric": "ndcg@10"}.items():
                client.log_param(run.info.run_id, key, str(value))
            for step in (1, 2):
                client.log_metric(run.info.run_id, "valid/ndcg_at_10", params["sampler.alpha"] * step / 20, step=step)
            client.set_terminated(run.info.run_id, "FINISHED")


def _expected_table(uri: str, experiment: str) -> dict[str, dict[str, tuple[float, float]]]:
    """From MLflow directly: per sampler, (mean, sample std) of each test metric of its finished runs."""
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    values: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for key, value in run.data.metrics.items():
            if key.startswith("test/") and run.info.status == "FINISHED":
                values.setdefault(run.data.tags["raysearch.sampler"], {}).setdefault(key, []).append(value)
    return {s: {k: (float(np.mean(v)), float(np.std(v, ddof=1))) for k, v in by.items()} for s, by in values.items()}


@pytest.fixture(scope="module")
def report_html(store) -> Path:
    return build_report("cmp", out=store["root"] / "out" / "cmp.html", tracking_uri=store["uri"])


EXPECTED_FIGURES = {
    "accuracy-cost/synthetic-mf-full", "curves/synthetic-mf-full", "bands/synthetic-mf-full", "cost/synthetic-mf-full",
    "community-sizes/synthetic-mf-full", "community-popularity/synthetic-mf-full",
    "community-metrics/synthetic-mf-full", "search-progress/s1", "metric-vs-k/s1", "metric-vs-alpha/s1",
    "gdns-heatmap/s1", "importance/s1/icpns", "parallel/s1/icpns", "importance/s1/gdns", "parallel/s1/gdns",
}


def test_report_reads_runs_and_artifacts_from_mlflow(store):
    runs = load_runs(store["uri"], "cmp")
    tested = [r for r in runs if r.tested]
    assert len(runs) == 18 and len(tested) == 6
    assert all(r.results and r.epochs and r.history for r in tested)
    icpns = [r for r in tested if r.sampler == "icpns"]
    for run in icpns:  # ICPNS runs record per-community test metrics (pipeline.run_training)
        by_community = run.results["test_by_community"]
        assert set(by_community) == {str(c["community"]) for c in run.results["communities"]["communities"]}
        for key, overall in run.results["test"].items():
            # the overall mean is a user-weighted mean of the community means: it lies between them
            values = [v[key] for v in by_community.values()]
            assert min(values) - 1e-12 <= overall <= max(values) + 1e-12
        assert {c.stage for c in curves(blocks([run])[0])} == {"pretrain", "finetune"}


def test_page_structure_and_numbers(store, report_html):
    html = report_html.read_text()
    assert set(re.findall(r'data-figure="([^"]+)"', html)) == EXPECTED_FIGURES
    assert len(re.findall(r"\* plotly\.js v\d", html)) == 1  # plotly.js inline, once
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # nothing loaded from elsewhere
    expected = _expected_table(store["uri"], "cmp")
    cells = re.findall(r'<tr data-sampler="(\w+)">(.*?)</tr>', html, flags=re.S)
    assert {s for s, _ in cells} == set(expected)
    for sampler, row in cells:
        for key, mean in re.findall(r'data-metric="([^"]+)" data-mean="([^"]+)"', row):
            assert float(mean) == pytest.approx(expected[sampler][key][0], rel=1e-12)


def test_sections_without_data_say_so(store, tmp_path):
    path = build_report("solo", out=tmp_path / "solo.html", tracking_uri=store["uri"])
    html = path.read_text()
    for note in ("No search trials in this experiment", "No run with communities in this experiment",
                 "No per-community test metrics", "No scale measurements given",
                 "one sampler only: nothing to compare", "no search recorded for these runs"):
        assert note in html, note
    assert set(re.findall(r'data-figure="([^"]+)"', html)) == {
        "accuracy-cost/synthetic-mf-full", "curves/synthetic-mf-full", "bands/synthetic-mf-full",
        "cost/synthetic-mf-full"}


def test_malformed_artifact_names_the_run_and_line(store, tmp_path):
    client = mlflow.MlflowClient(store["uri"])
    experiment_id = client.create_experiment("broken", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment_id, tags={"raysearch.sampler": "rns"})
    client.log_metric(run.info.run_id, "test/ndcg_at_10", 0.1)
    bad = tmp_path / "results.json"
    bad.write_text('{"test": {}}\n{')
    client.log_artifact(run.info.run_id, str(bad))
    client.set_terminated(run.info.run_id, "FINISHED")
    with pytest.raises(DataError, match=rf"^run {run.info.run_id} results\.json:2: malformed artifact: Extra data$"):
        build_report("broken", out=tmp_path / "broken.html", tracking_uri=store["uri"])
    assert not (tmp_path / "broken.html").exists()


def test_scale_curves_when_given(store, tmp_path):
    rows = [{"model": m, "workers": w, "epoch_seconds": 10.0 / w, "draws_per_second": 1e6 * w,
             "comm_bytes_per_step": 2**20 * (w - 1), "param_bytes": [2**20] * w, "optimizer_bytes": [2**21] * w}
            for m in ("mf", "lightgcn") for w in (1, 2)]
    scale = tmp_path / "scale.json"
    scale.write_text(json.dumps(rows))
    html = build_report("solo", out=tmp_path / "solo.html", tracking_uri=store["uri"], scale=scale).read_text()
    assert 'data-figure="scale"' in html and "No scale measurements" not in html


def test_markdown_tables_match_the_comparison_and_significance(store, tmp_path, capsys):
    md = tmp_path / "cmp.md"
    assert main(["report", "--experiment", "cmp", "--tracking-uri", store["uri"], "--out", str(tmp_path / "c.html"),
                 "--markdown", str(md)]) == 0
    assert f"tables: {md}" in capsys.readouterr().out
    text = md.read_text()
    expected = _expected_table(store["uri"], "cmp")
    rows = {}  # the first table (the comparison) of each sampler's row
    for line in text.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].strip("| "), line)
    for sampler, by_key in expected.items():
        mean, std = by_key["test/ndcg_at_10"]
        assert f"{mean:.4f} ± {std:.4f}" in rows[sampler]
    assert "n_communities=3" in rows["icpns"] and "group_size=4" in rows["gdns"]
    assert "| icpns | " in text and "paired t p" in text and "recall@10 tail" in text and "share@10 head" in text
    best = max(expected, key=lambda s: expected[s]["test/ndcg_at_10"][0])
    assert f"**{expected[best]['test/ndcg_at_10'][0]:.4f}" in rows[best]
    # the verdict leads each block, the same as the page's (best by mean over users = mean over seeds here)
    html = build_report("cmp", out=tmp_path / "v.html", tracking_uri=store["uri"]).read_text()
    page_best = re.search(r'class="rs-verdict" data-best="(\w+)"', html).group(1)
    assert page_best == best
    assert f"Verdict: **{best}** is best on test/ndcg@10 ({expected[best]['test/ndcg_at_10'][0]:.4f}); " in text


def test_cli_report_and_its_errors(store, tmp_path, capsys):
    out = tmp_path / "cli" / "report.html"
    assert main(["report", "--experiment", "solo", "--tracking-uri", store["uri"], "--out", str(out)]) == 0
    assert out.is_file() and f"report: {out}" in capsys.readouterr().out

    assert main(["report", "--experiment", "nope", "--tracking-uri", store["uri"], "--out", str(tmp_path / "a.html")]) == 2
    listed = re.search(r"raysearch: error: --experiment: no experiment 'nope' in (\S+) \(experiments there: (.*)\)",
                       capsys.readouterr().err)
    assert listed and listed[1] == store["uri"] and {"Default", "cmp", "solo"} <= set(listed[2].split(", "))
    missing = tmp_path / "none.db"
    assert main(["report", "--experiment", "cmp", "--tracking-uri", str(missing)]) == 2
    assert f"--tracking-uri: no MLflow store at {missing}" in capsys.readouterr().err
    assert not missing.exists()  # MLflow was not allowed to create an empty store

    bad = tmp_path / "scale.json"
    bad.write_text("{")
    with pytest.raises(DataError, match=r"scale\.json:1: not JSON"):
        build_report("solo", out=tmp_path / "b.html", tracking_uri=store["uri"], scale=bad)
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*.tmp"))  # nothing half-written
    mlflow.MlflowClient(store["uri"]).create_experiment("empty", artifact_location=(tmp_path / "a").as_uri())
    with pytest.raises(ConfigError, match="experiment 'empty' in .* has no runs"):
        build_report("empty", out=tmp_path / "c.html", tracking_uri=store["uri"])
    client = mlflow.MlflowClient(store["uri"])
    unfinished = client.create_experiment("unfinished", artifact_location=(tmp_path / "u").as_uri())
    client.create_run(unfinished)  # still running
    client.set_terminated(client.create_run(unfinished).info.run_id, "FAILED")
    assert main(["report", "--experiment", "unfinished", "--tracking-uri", store["uri"],
                 "--out", str(tmp_path / "u.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no finished run (1 failed, 1 running); report it once a run has finished" in err[0]
    assert not (tmp_path / "u.html").exists()


# --------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; installed here with apt-get when missing and we are root, else the tests skip."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=False)
        subprocess.run(["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=1800,
                       check=False)
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package (the tests do it themselves "
                    "when run as root with apt-get)")
    return CHROMIUM


@pytest.fixture(scope="module")
def playwright(chromium):
    """One Playwright driver for the module: its sync API runs an event loop in this thread, so a second
    driver started while the first is alive fails."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    yield pw
    pw.stop()


def open_page(pw, chromium: str, html: Path, profile: Path):
    """(context, page, events) with ``html`` loaded and every figure drawn; every request that is not the
    file itself is recorded and aborted (the page must work offline)."""
    context = pw.chromium.launch_persistent_context(str(profile), executable_path=chromium, headless=True,
                                                    args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    events: dict[str, list] = {"console": [], "errors": [], "blocked": []}
    page.on("console", lambda m: events["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: events["errors"].append(str(e)))

    def block(route):
        events["blocked"].append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!file:).*"), block)
    page.goto(html.as_uri(), wait_until="load", timeout=180_000)  # generous: CI machines can be busy
    page.wait_for_function("() => [...document.querySelectorAll('.rs-figure .plotly-graph-div')]"
                           ".every(d => d._fullLayout && d.querySelector('.main-svg'))", timeout=120_000)
    page.add_style_tag(content="nav { display: none !important; }")  # keep the sticky bar out of screenshots
    return context, page, events


@pytest.fixture(scope="module")
def page(playwright, chromium, report_html, tmp_path_factory):
    context, page, events = open_page(playwright, chromium, report_html, tmp_path_factory.mktemp("chromium-profile"))
    yield page, events
    context.close()


def check_figures(page) -> set[str]:
    """Every figure has traces, plotly's SVG, and a screenshot that is not blank; returns their names."""
    from PIL import Image

    names = set()
    for figure in page.query_selector_all("figure.rs-figure"):
        name = figure.get_attribute("data-figure")
        div = figure.query_selector(".plotly-graph-div")
        assert div is not None and div.evaluate("d => d._fullData.length") > 0, name
        assert div.query_selector(".main-svg") is not None, name
        assert div.bounding_box()["width"] > 200 and div.bounding_box()["height"] > 100, name
        image = Image.open(io.BytesIO(div.screenshot())).convert("RGB")
        colours = image.getcolors(maxcolors=1 << 20)
        background = max(colours)[0] / (image.width * image.height)
        assert len(colours) > 20 and background < 0.97, (name, len(colours), background)
        names.add(name)
    return names


def check_table(page, expected: dict[str, dict[str, tuple[float, float]]]) -> None:
    """The comparison table shows MLflow's means and sample stds, and marks the best mean per column."""
    rows = page.query_selector_all("table.rs-comparison tbody tr")
    assert {r.get_attribute("data-sampler") for r in rows} == set(expected)
    metrics = {k for by in expected.values() for k in by}
    for row in rows:
        sampler = row.get_attribute("data-sampler")
        cells = row.query_selector_all("td.metric")
        assert {c.get_attribute("data-metric") for c in cells} == metrics
        for cell in cells:
            key = cell.get_attribute("data-metric")
            mean, std = expected[sampler][key]
            assert cell.query_selector(".mean").inner_text() == f"{mean:.4f}", (sampler, key)
            assert cell.query_selector(".std").inner_text() == f"± {std:.4f}", (sampler, key)
            assert float(cell.get_attribute("data-mean")) == pytest.approx(mean, rel=1e-12)
            assert float(cell.get_attribute("data-std")) == pytest.approx(std, rel=1e-9)
            best = max(expected[s][key][0] for s in expected)
            assert ("best" in cell.get_attribute("class").split()) == (mean == best), (sampler, key)


def test_page_loads_offline_without_console_errors(page):
    page, events = page
    assert events["errors"] == []
    assert [m for m in events["console"] if m[0] == "error"] == []
    assert events["blocked"] == []  # nothing asked for the network
    assert page.title() == "raysearch report · cmp"
    assert page.evaluate("() => typeof Plotly") == "object"


def test_first_screen_holds_the_verdict_and_the_cost_chart(page, tmp_path):
    """The verdict and the accuracy-against-cost chart lie in the first 1,000 px of the page as Chromium lays
    it out (1400 px wide), and the chart has drawn one marker per sampler there."""
    from PIL import Image

    page, _ = page
    page.evaluate("() => window.scrollTo(0, 0)")
    verdict = page.query_selector("p.rs-verdict").bounding_box()
    chart = page.query_selector('figure[data-figure^="accuracy-cost/"] .plotly-graph-div')
    box = chart.bounding_box()
    assert verdict["y"] + verdict["height"] <= 1000 and box["y"] + box["height"] <= 1000, (verdict, box)
    assert chart.evaluate("d => d.querySelectorAll('.scatterlayer .point').length") == len(SAMPLERS)
    shot = tmp_path / "first-screen.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1400, "height": 1000})
    image = Image.open(shot).convert("RGB").crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                                                   int(box["y"] + box["height"])))
    assert len(image.getcolors(maxcolors=1 << 20)) > 20  # the chart is drawn inside the first screen, not blank


def test_every_figure_renders(page):
    page, _ = page
    assert check_figures(page) == EXPECTED_FIGURES


def test_table_numbers_equal_mlflow(page, store):
    page, _ = page
    check_table(page, _expected_table(store["uri"], "cmp"))


def test_significance_rows_equal_scipy_on_the_runs_per_user_values(page, store):
    """ICPNS and GDNS each against the best other sampler: the page's numbers equal scipy's paired tests
    on the per-user test NDCG@10 that the runs wrote to disk, averaged over the two seeds."""
    from scipy import stats

    page, _ = page
    per = {}
    for sampler in SAMPLERS:
        loaded = [np.load(store["root"] / "runs" / f"{sampler}-{seed}" / "test_per_user.npz") for seed in (0, 1)]
        assert np.array_equal(loaded[0]["users"], loaded[1]["users"])
        per[sampler] = (loaded[0]["ndcg@10"] + loaded[1]["ndcg@10"]) / 2
    rows = page.query_selector_all("table.rs-significance tbody tr")
    assert sorted(r.get_attribute("data-sampler") for r in rows) == ["gdns", "icpns"]
    for row in rows:
        target = row.get_attribute("data-sampler")
        best = max((s for s in per if s != target), key=lambda s: per[s].mean())
        assert row.get_attribute("data-baseline") == best
        expected = stats.ttest_rel(per[target], per[best]).pvalue
        assert float(row.get_attribute("data-p-t")) == pytest.approx(expected, rel=1e-9)
        assert float(row.get_attribute("data-diff")) == pytest.approx((per[target] - per[best]).mean(), abs=1e-12)
        assert float(row.get_attribute("data-p-wilcoxon")) == pytest.approx(
            stats.wilcoxon(per[target] - per[best]).pvalue, rel=1e-9)


# --------------------------------------------------------------------------- a real study
@pytest.mark.slow
@pytest.mark.ray
def test_report_of_a_real_study(ray_session, playwright, chromium, tmp_path):
    from raysearch.tune import run_study, start_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = start_study(["search=icpns-k-alpha", "search.num_samples=5", "search.max_concurrent=2",
                         "search.grace_period=1", "search.final_seeds=2", "trainer.epochs=2", "trainer.progress=false",
                         "trainer.batch_size=512", "model.dim=8", "dataset.synthetic.n_users=200",
                         "dataset.synthetic.n_items=120"], tmp_path / "study", uri)
    run_study(study, report=lambda *_: None)
    (block,) = blocks(load_runs(uri, study.experiment))
    # Final runs fine-tune from the shared pre-training; their history (whose last step a study logs
    # twice) matches their metrics lines epoch for epoch, so the stage is known.
    assert {c.stage for c in curves(block)} == {"finetune"} and len(block.runs) == 2
    html = build_report(study.experiment, out=tmp_path / "report.html", tracking_uri=uri)
    context, page, events = open_page(playwright, chromium, html, tmp_path / "profile")
    try:
        assert events["errors"] == [] and [m for m in events["console"] if m[0] == "error"] == []
        assert events["blocked"] == []
        names = check_figures(page)
        name = study.path.name
        assert {f"metric-vs-k/{name}", f"metric-vs-alpha/{name}", f"parallel/{name}/icpns",
                f"importance/{name}/icpns", "community-sizes/synthetic-mf-full"} <= names
        check_table(page, _expected_table(uri, study.experiment))
        # the cost table: every run of the study (5 trials, 2 final runs, the shared pre-training) in full
        client = mlflow.MlflowClient(uri)
        every = client.search_runs([client.get_experiment_by_name(study.experiment).experiment_id])
        assert sorted(r.data.tags["raysearch.phase"] for r in every) == ["final"] * 2 + ["pretrain"] + ["search"] * 5
        row = page.query_selector('table.rs-budget tr[data-sampler="icpns"]')
        assert int(row.get_attribute("data-trials")) == 5
        assert float(row.get_attribute("data-seconds")) == pytest.approx(
            sum((r.info.end_time - r.info.start_time) / 1000 for r in every), rel=1e-9)
        assert "optuna (TPE), 5 trials, ASHA grace 1 of 2 epochs" in page.inner_text("section#verdict")
    finally:
        context.close()


def test_configuration_text_keeps_a_key_whole_where_its_short_name_is_ambiguous():
    from raysearch.report.markdown import configuration

    # the adversarial generator's rate (sampler.lr) beside the backbone's (trainer.lr); temperature differs
    # from the sampler's default (0.2), steps does not (5): it is left out
    runs = [tracked("adversarial", s, params={"trainer.lr": "0.001", "sampler.lr": "0.01",
                                              "sampler.temperature": "0.5", "sampler.steps": "5"}) for s in (0, 1)]
    assert configuration(runs) == "sampler.lr=0.01, temperature=0.5, trainer.lr=0.001"
    assert configuration([tracked("rns", 0, params={"trainer.lr": "0.001"})]) == "lr=0.001"
