"""Ray Tune + Optuna studies tracked in MLflow: a tiny study end to end, leak-free; resume keeps trials."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from scipy import stats

from raysearch.config import build_run_config, conf_dir, resolve
from raysearch.errors import ConfigError
from raysearch.train.pipeline import validate_components
from raysearch.tune import (
    Dimension,
    load_search,
    load_study,
    pretraining_overrides,
    run_study,
    start_study,
    tpe_startup_note,
    trial_overrides,
)

BASE = ["trainer.epochs=3", "trainer.progress=false", "trainer.batch_size=512", "model.dim=16",
        "trainer.lr=0.01", "dataset.synthetic.n_users=300", "dataset.synthetic.n_items=200"]


def test_search_file_and_override_validation():
    search = load_search("icpns", {"num_samples": 3})
    assert search.options.num_samples == 3
    assert search.samplers["icpns"]["sampler.n_communities"].log
    with pytest.raises(ConfigError, match=r"unknown key 'search\.trials'"):
        load_search("icpns", {"trials": 3})
    with pytest.raises(ConfigError, match=r"search\.samplers\.x\.lr: a log scale needs low > 0"):
        Dimension.parse("lr", {"float": [0, 1], "log": True}, "search.samplers.x")
    with pytest.raises(ConfigError, match=r"give exactly one of int, float, choice"):
        Dimension.parse("lr", {"float": [0, 1], "int": [0, 1]}, "search.shared")


def test_grace_period_defaults_to_a_quarter_of_the_trials_epochs():
    options = load_search("compare", {}).options
    assert options.grace_period is None  # the default: tied to the schedule
    assert [options.grace_for(e) for e in (1, 3, 4, 5, 20, 40, 1000)] == [1, 1, 1, 2, 5, 10, 250]
    fixed = load_search("compare", {"grace_period": 2}).options
    assert fixed.grace_for(40) == 2
    assert fixed.budget(8, 40) == "optuna (TPE), 8 trials, ASHA grace 2 of 40 epochs, reduction 2, 3 final seeds"
    grid = load_search("icpns-k-alpha", {"algorithm": "grid", "scheduler": "none"}).options
    assert grid.budget(42, 40) == "grid, 42 trials, no early stopping, 40 epochs, 1 final seed"
    with pytest.raises(ConfigError, match=r"search\.grace_period: must be >= 1"):
        load_search("compare", {"grace_period": 0})


def test_tpe_start_up_trials_reach_optuna_and_a_random_search_says_so():
    from types import SimpleNamespace

    from raysearch.tune.study import _optuna

    compare = load_search("compare", {})  # 8 trials: inside TPE's 10 random start-up trials
    assert compare.options.startup_trials == 10
    assert "8 trial(s) <= TPE's 10 random start-up trials" in tpe_startup_note(compare.options)
    assert tpe_startup_note(load_search("compare", {"startup_trials": 4}).options) is None
    assert tpe_startup_note(load_search("compare", {"num_samples": 11}).options) is None
    assert tpe_startup_note(load_search("icpns-k-alpha", {"algorithm": "grid", "num_samples": 1}).options) is None
    search = _optuna(SimpleNamespace(search=load_search("compare", {"startup_trials": 3})), "valid/ndcg@10")
    assert search._sampler._n_startup_trials == 3
    with pytest.raises(ConfigError, match=r"search\.startup_trials: must be >= 1"):
        load_search("compare", {"startup_trials": 0})


def test_only_restricts_the_samplers_and_experiment_names_the_mlflow_experiment(tmp_path):
    assert list(load_search("compare", {"only": ["gdns", "rns"]}).samplers) == ["rns", "gdns"]  # file order
    with pytest.raises(ConfigError, match=r"search\.only: ngcf not in the study 'compare' \(its samplers: rns, pns"):
        load_search("compare", {"only": ["ngcf"]})
    study = start_study(["search=compare", "search.only=[dns]"], tmp_path / "a", None, experiment="shared")
    assert list(study.search.samplers) == ["dns"] and study.experiment == "shared"
    resumed = load_study(tmp_path / "a")
    assert list(resumed.search.samplers) == ["dns"] and resumed.experiment == "shared"
    assert start_study(["search=compare"], tmp_path / "b", None).experiment == "compare-b"


def test_start_study_rejects_a_sampler_choice_and_bad_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"a study chooses its samplers in its search file"):
        start_study(["search=icpns", "sampler=rns"], tmp_path / "a", None)
    with pytest.raises(ConfigError, match=r"unknown key 'trainer\.epoch'"):
        start_study(["search=icpns", "trainer.epoch=3"], tmp_path / "b", None)
    with pytest.raises(ConfigError, match=r"name a study: search=NAME"):
        start_study(["trainer.epochs=3"], tmp_path / "c", None)


def test_each_trial_gets_its_samplers_experiment_overrides(tmp_path):
    """An experiment's sampler_overrides reach the trials of that sampler (and only them); searched
    values still win over them."""
    study = start_study(["search=gdns-protocol", "experiment=srns-protocol-ml-100k", "trainer.seed=5"],
                        tmp_path / "s", None)
    assert study.base == ["experiment=srns-protocol-ml-100k", "trainer.seed=5"]

    def trial(sampler, **searched):
        config = {"_base": study.base, "_sampler": sampler, "_fixed": [], **searched}
        return build_run_config(resolve(trial_overrides(config)))

    gdns, rns = trial("gdns", **{"trainer.lr": 0.05}), trial("rns")
    assert gdns.trainer.optimizer == "adagrad" and gdns.trainer.batch_size == 1024 and gdns.trainer.lr == 0.05
    assert rns.trainer.optimizer == "adam" and rns.trainer.batch_size == 1000
    assert gdns.dataset.name == rns.dataset.name == "ml-100k-loo" and gdns.trainer.seed == 5
    icpns = build_run_config(resolve(trial_overrides({"_base": ["experiment=icpns-protocol"], "_sampler": "icpns",
                                                      "_fixed": [], "sampler.alpha": 0.3})))
    assert icpns.sampler.params["finetune_epochs"] == 200 and icpns.sampler.params["alpha"] == 0.3


def test_trial_overrides_put_searched_values_last():
    config = {"_base": ["trainer.epochs=3"], "_sampler": "icpns", "_fixed": ["trainer.seed=7"],
              "sampler.alpha": 0.25, "sampler.n_communities": 4}
    assert trial_overrides(config) == ["trainer.epochs=3", "sampler=icpns", "trainer.seed=7",
                                       "sampler.alpha=0.25", "sampler.n_communities=4"]


def test_shared_pretraining_runs_rns_for_the_icpns_pretraining_epochs():
    base = ["experiment=icpns-protocol", "sampler.pretrain_epochs=7", "sampler.finetune_epochs=3",
            "sampler.alpha=0.5", "trainer.seed=3"]
    overrides = pretraining_overrides(base)
    assert overrides == ["experiment=icpns-protocol", "trainer.seed=3", "sampler=rns", "trainer.epochs=7"]
    cfg = build_run_config(resolve(overrides))  # ICPNS keys gone: RNS accepts the overrides
    assert cfg.sampler.name == "rns" and cfg.trainer.epochs == 7 and cfg.trainer.patience == 100
    assert pretraining_overrides(["trainer.epochs=9"]) == ["trainer.epochs=9", "sampler=rns"]


def fake_trials(tmp_path, valid_by_trial):
    """Tune-result stand-ins: trial name -> [(stage, valid ndcg@10), ...] written as its metrics.jsonl."""
    from types import SimpleNamespace

    from raysearch.train.rundir import RunDir

    results = []
    for i, (name, records) in enumerate(valid_by_trial.items()):
        run = RunDir(tmp_path / name / "run")
        for epoch, (stage, value) in enumerate(records):
            run.append_metrics({"stage": stage, "epoch": epoch, "valid": {"ndcg@10": value}})
        results.append(SimpleNamespace(path=str(tmp_path / name), config={"sampler.alpha": 0.1 * (i + 1)},
                                       error=None))
    return results


def test_search_ranks_icpns_trials_by_fine_tuning_not_by_pre_training(tmp_path):
    from raysearch.tune.selection import _best_trial

    space = {"sampler.alpha": Dimension("sampler.alpha", "float", 0.0, 1.0)}
    grid = fake_trials(tmp_path, {
        "best-pretrain": [("pretrain", 0.30), ("pretrain", 0.31), ("finetune", 0.20), ("finetune", 0.22)],
        "best-finetune": [("pretrain", 0.25), ("finetune", 0.26), ("finetune", 0.24)],
        "stopped-while-pretraining": [("pretrain", 0.40), ("pretrain", 0.41)],
    })
    sel = _best_trial(grid, "valid/ndcg@10", space, "icpns", [])
    assert sel["best"]["path"].endswith("best-finetune") and sel["best"]["best"] == 0.26
    assert sel["best"]["params"] == {"sampler.alpha": pytest.approx(0.2)}
    assert [t["best"] for t in sel["trials"]] == [0.22, 0.26, None]  # the stopped one made no ICPNS model
    assert sel["trial_epochs"] == 9  # every epoch of the search counts as compute
    # one-stage samplers rank by their single stage
    rns = _best_trial(fake_trials(tmp_path / "rns", {"a": [("train", 0.1)], "b": [("train", 0.3)]}),
                      "valid/ndcg@10", space, "rns", [])
    assert rns["best"]["path"].endswith("b")
    with pytest.raises(ConfigError, match="no trial reported a validation in its 'finetune' stage"):
        _best_trial(fake_trials(tmp_path / "none", {"a": [("pretrain", 0.4)]}), "valid/ndcg@10", space, "icpns",
                    [])


def test_search_trials_report_only_their_output_stage_to_tune(monkeypatch, tmp_path):
    """ASHA and Optuna must not see ICPNS's pre-training (an RNS model); final runs report every stage."""
    import ray.tune

    from raysearch.tune import TuneReportingContext

    reported: list[dict] = []
    monkeypatch.setattr(ray.tune, "report", reported.append)
    epochs = [("pretrain", 0, 0.30), ("pretrain", 1, None), ("pretrain", 2, 0.31),
              ("finetune", 0, 0.20), ("finetune", 1, None), ("finetune", 2, 0.22)]

    def feed(context):
        reported.clear()
        for stage, epoch, ndcg in epochs:
            record = {"loss": 1.0, "epoch_seconds": 0.1, **({"valid": {"ndcg@10": ndcg}} if ndcg else {})}
            context.epoch_done(stage, epoch, tmp_path, record)
        return [(r["valid/ndcg@10"], r["stage_epochs"], r["epochs_done"]) for r in reported]

    # a search trial: fine-tuning's validated epochs only, ASHA's clock counting fine-tuning epochs
    assert feed(TuneReportingContext("finetune")) == [(0.20, 1, 4), (0.22, 3, 6)]
    assert feed(TuneReportingContext(None)) == [(0.30, 1, 1), (0.31, 3, 3), (0.20, 1, 4), (0.22, 3, 6)]
    assert feed(TuneReportingContext("train")) == []  # a one-stage sampler's stage is "train"


@pytest.mark.ray
def test_asha_does_not_stop_icpns_trials_while_they_pre_train(ray_session, tmp_path):
    # lr is searched, so every trial pre-trains on its own (no shared pre-training); one trial at a time
    # makes ASHA's decisions deterministic
    study = start_study(["search=compare", "search.only=[icpns]", "search.num_samples=4",
                         "search.max_concurrent=1", "search.grace_period=1", "search.final_seeds=1",
                         "trainer.threads=1", *BASE], tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}")
    lines: list[str] = []
    summary = run_study(study, report=lines.append)
    trials = summary["trials"]["icpns"]
    assert len(trials) == 4
    assert all(t["best"] is not None for t in trials), trials  # every trial reached fine-tuning
    assert all(t["epochs"] > 3 for t in trials)  # 3 pre-training epochs, then at least one fine-tuning one
    # one line per finished trial, in order, with its parameters, best validation, epochs and the time left
    progress = [line for line in lines if line.startswith("[icpns ")]
    assert [line.split("]")[0] for line in progress] == [f"[icpns {k}/4" for k in range(1, 5)], lines
    best = sorted(round(t["best"], 4) for t in trials)
    shown = sorted(float(line.split("valid ndcg@10 ")[1].split()[0]) for line in progress)
    assert shown == best
    assert all("lr=" in line and "epochs" in line for line in progress)
    assert all("left" in line for line in progress[:3]) and "left" not in progress[3]
    assert any(line.startswith("[final 1/1]  icpns seed=") for line in lines), lines


def test_study_significance_pairs_users_over_the_final_seeds(tmp_path):
    from raysearch.evaluation import EvalResult, save_per_user
    from raysearch.tune.selection import _significance

    rng = np.random.default_rng(3)
    users = np.arange(40)
    values = {("rns", 0): rng.random(40), ("rns", 1): rng.random(40), ("dns", 0): rng.random(40) + 0.5,
              ("icpns", 0): rng.random(40) + 0.2, ("icpns", 1): rng.random(40) + 0.2}
    finals = []
    for (sampler, seed), v in values.items():
        path = tmp_path / f"{sampler}-{seed}"
        (path / "run").mkdir(parents=True)
        save_per_user(EvalResult(users, {"ndcg@10": v}, {"protocol": "full"}), path / "run" / "test_per_user.npz")
        finals.append({"sampler": sampler, "path": str(path)})
    found = _significance(finals, "ndcg@10")
    (test,) = found["significance"]  # no GDNS in the study: one test
    icpns = (values["icpns", 0] + values["icpns", 1]) / 2
    assert test["a"] == "dns" and test["b"] == "icpns" and test["n_users"] == 40
    assert test["diff"] == pytest.approx((icpns - values["dns", 0]).mean())
    assert test["p_t"] == pytest.approx(stats.ttest_rel(icpns, values["dns", 0]).pvalue)
    # the verdict: dns is best; rns and icpns each against it, Holm over the two comparisons
    rns = (values["rns", 0] + values["rns", 1]) / 2
    verdict = found["verdict"]
    assert verdict["best"] == "dns" and verdict["correction"] == "Holm"
    p = sorted([stats.ttest_rel(rns, values["dns", 0]).pvalue, stats.ttest_rel(icpns, values["dns", 0]).pvalue])
    holm = [min(1, 2 * p[0]), max(min(1, 2 * p[0]), min(1, p[1]))]
    assert sorted(t["p_holm"] for t in verdict["tests"]) == pytest.approx(holm)
    assert set(verdict["tied"]) | set(verdict["worse"]) == {"rns", "icpns"}


@pytest.mark.ray
def test_tiny_study_end_to_end_is_tracked_and_leak_free(ray_session, tmp_path):
    db = tmp_path / "mlflow.db"
    study = start_study(["search=icpns", "search.num_samples=4", "search.max_concurrent=2",
                         "search.grace_period=1", *BASE], tmp_path / "study", f"sqlite:///{db}")
    summary = run_study(study, report=lambda *_: None)
    row = summary["rows"][0]
    assert row["sampler"] == "icpns" and row["trials"] == 4 and row["final_runs"] == 1
    assert 0 < row["search_best_valid"] <= 1
    assert (tmp_path / "study" / "summary.csv").exists()
    page = (tmp_path / "study" / "report.html").read_text()  # the study writes its own report
    assert study.experiment in page and "icpns" in page

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name(study.experiment).experiment_id])
    search_runs = [r for r in runs if r.data.tags["raysearch.phase"] == "search"]
    final_runs = [r for r in runs if r.data.tags["raysearch.phase"] == "final"]
    (pretraining,) = [r for r in runs if r.data.tags["raysearch.phase"] == "pretrain"]  # logged once, shared
    assert len(search_runs) == 4 and len(final_runs) == 1 and len(runs) == 6
    # the shared pre-training counts as ICPNS's compute: its own run, timed, with its epochs and no test
    assert pretraining.data.tags["raysearch.sampler"] == "icpns" and pretraining.info.status == "FINISHED"
    assert pretraining.info.end_time > pretraining.info.start_time
    assert not any(k.startswith("test/") for k in pretraining.data.metrics)
    assert len(client.get_metric_history(pretraining.info.run_id, "epoch_seconds")) == 3  # trainer.epochs=3
    # every search run carries the budget in words: 4 trials, ASHA from epoch 1 of the 3 fine-tuning epochs
    assert {r.data.tags["raysearch.search_budget"] for r in search_runs} == {
        "optuna (TPE), 4 trials, ASHA grace 1 of 3 epochs, reduction 2, 1 final seed"}
    for run in search_runs + final_runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"
        for key in ("dataset", "dataset_fingerprint", "protocol", "sampler", "backbone", "seed", "code_version"):
            assert tags[f"raysearch.{key}"], key
        assert tags["raysearch.sampler"] == "icpns" and tags["raysearch.protocol"] == "full"
        assert {"sampler.n_communities", "sampler.alpha", "sampler.finetune_lr", "trainer.epochs"} <= set(params)
        assert "valid/ndcg_at_10" in metrics
        has_test = any(k.startswith("test/") for k in metrics)
        assert has_test == (tags["raysearch.selected"] == "true")  # the test metric only on the selected run
    history = client.get_metric_history(search_runs[0].info.run_id, "valid/ndcg_at_10")
    assert len(history) >= 1  # per-epoch metrics
    artifacts = {a.path for a in client.list_artifacts(final_runs[0].info.run_id)}
    assert {"config.yaml", "results.json", "communities.json", "test_per_user.npz"} <= artifacts
    assert summary["significance"] == []  # one sampler: nothing to test against
    selected = final_runs[0].data.params
    assert float(selected["sampler.alpha"]) == pytest.approx(row["params"]["sampler.alpha"])


@pytest.mark.slow
@pytest.mark.ray
def test_interrupted_study_resumes_keeping_finished_trials(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}  # the suite's token auth (conftest)
    exe = str(Path(sys.executable).parent / "raysearch")
    study_dir = tmp_path / "study"
    args = [exe, "tune", "search=icpns", "search.num_samples=4", "search.max_concurrent=1",
            "search.scheduler=none", "trainer.threads=1", *BASE, f"--out={study_dir}",
            f"--tracking-uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    search_dir = study_dir / "tune" / "search-icpns"
    finished: dict[str, str] = {}  # trial -> its results: a trial run again would time itself anew
    deadline = time.time() + 300
    while time.time() < deadline and len(finished) < 2:
        for path in search_dir.glob("trial-*/run/results.json"):
            with contextlib.suppress(json.JSONDecodeError):  # Tune may be copying it there right now
                finished[path.parent.parent.name] = _canonical(json.loads(path.read_text()))
        time.sleep(0.5)
    assert len(finished) >= 2, proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "too slow"
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal that runs the study
    assert proc.wait(timeout=120) == 130
    assert not (study_dir / "summary.json").exists()

    resumed = subprocess.run([exe, "tune", f"--resume={study_dir}"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["rows"][0]["trials"] == 4, resumed.stdout[-4000:]
    # Finished trials were kept, not run again. Their files' times say nothing: Tune writes trial directories
    # in its session's staging directory and copies them into the study at each sync, rewriting every file.
    assert len(list(search_dir.glob("trial-*"))) == 4
    for name, results in finished.items():
        assert _canonical(json.loads((search_dir / name / "run" / "results.json").read_text())) == results, name


@pytest.mark.ray
def test_final_runs_a_restored_experiment_lost_are_run_in_a_next_one(ray_session, tmp_path, monkeypatch):
    """Tune restores a grid experiment from snapshots of its trials and of its variant generator taken at
    different moments, so a resumed final experiment can end without a run created between the two (seen
    with Tune's own interrupt). Simulated here: the first final experiment hands back all its runs but one;
    the study runs the missing one in ``final-2`` and summarises every seed."""
    from raysearch.tune import study as study_module

    real = study_module.restore_or_start
    lost: list[int] = []

    class LosesOneRun:
        def __init__(self, tuner):
            self.tuner = tuner

        def fit(self):
            results = list(self.tuner.fit())
            lost.append(results[-1].config["_final_index"])
            return results[:-1]

    def restore_or_start(path, trainable, start, param_space):
        tuner = real(path, trainable, start, param_space)
        return LosesOneRun(tuner) if path.name == "final" else tuner

    monkeypatch.setattr(study_module, "restore_or_start", restore_or_start)
    study = start_study(["search=rns-lr-reg", "search.num_samples=1", "search.max_trial_epochs=null",
                         "search.scheduler=none", "search.final_seeds=3", "trainer.threads=1", *BASE],
                        tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}")
    lines: list[str] = []
    summary = run_study(study, report=lines.append)
    assert summary["rows"][0]["final_runs"] == 3
    assert "final: 1 run(s) missing from the resumed experiment, run in final-2" in lines
    again = [json.loads(p.read_text()) for p in (study.tune_dir / "final-2").glob("trial-*/run/results.json")]
    assert [r["seed"] for r in again] == [2026 + lost[0]]


def _canonical(results: dict) -> str:
    """A results dict as text that equals itself when it holds NaN (NaN != NaN)."""
    return json.dumps(results, sort_keys=True)


def test_every_search_file_loads_and_its_trials_resolve(tmp_path):
    from raysearch.config import group_options

    for i, name in enumerate(group_options("search")):
        study = start_study([f"search={name}", "trainer.epochs=40"], tmp_path / str(i), None)
        assert study.search.samplers
        for space in study.search.samplers.values():
            for dim in {**study.search.shared, **space}.values():
                dim.to_tune()  # every dimension converts to a Tune domain


def test_summary_shows_a_spread_only_over_several_final_runs():
    from raysearch.tune import format_summary

    def summary(final_runs):
        row = {"sampler": "rns", "params": {}, "search_best_valid": 0.1, "final_runs": final_runs, "trials": 2,
               "trial_epochs": 4, "test/ndcg@10 mean": 0.25, "test/ndcg@10 std": 0.0125}
        return format_summary({"study": "s", "metric": "valid/ndcg@10", "rows": [row]})

    assert "test/ndcg@10 0.2500  (2 trials" in summary(1) and "±" not in summary(1)
    assert "test/ndcg@10 0.2500±0.0125" in summary(3)


def test_a_trial_line_shows_its_parameters_best_epochs_and_the_time_left():
    from raysearch.tune.progress import TrialProgress, format_seconds

    now = [100.0]
    progress = TrialProgress("icpns", 4, "valid/ndcg@10", ["sampler.alpha", "sampler.n_communities"],
                             clock=lambda: now[0])
    now[0] = 130.0  # the first trial ends after 30 s: 3 more at that pace, 90 s
    first = progress.line({"sampler.alpha": 0.0212345, "sampler.n_communities": 4, "_base": []},
                          {"epochs_done": 7, "time_total_s": 29.6}, 0.10119, failed=False)
    assert first == "[icpns 1/4]  alpha=0.02123 n_communities=4  valid ndcg@10 0.1012  7 epochs  30 s  | 30 s, ~1 min 30 s left"
    now[0] = 220.0
    assert progress.line({"sampler.alpha": 0.5}, {}, None, failed=True).endswith("FAILED  | 2 min 00 s, ~2 min 00 s left")
    assert format_seconds(3725) == "1 h 02 min" and format_seconds(-3) == "0 s"
    # two searched keys with one name (the adversarial generator's rate beside the backbone's) stay whole
    both = TrialProgress("adversarial", 2, "valid/ndcg@10", ["trainer.lr", "sampler.lr", "sampler.temperature"])
    line = both.line({"trainer.lr": 0.001, "sampler.lr": 0.01, "sampler.temperature": 0.2}, {}, 0.2, failed=False)
    assert line.startswith("[adversarial 1/2]  trainer.lr=0.001 sampler.lr=0.01 temperature=0.2  valid")


@pytest.mark.parametrize("name", sorted(p.stem for p in (conf_dir() / "search").glob("*.yaml")))
def test_every_shipped_search_file_names_keys_its_samplers_accept(name):
    """Each study file loads, and each sampler's space at its lowest and at its highest values is a valid
    run configuration (a misspelt or out-of-range key would fail a study only when its trial starts)."""
    search = load_search(name)
    assert search.samplers, f"{name}: no sampler"
    for sampler, space in search.samplers.items():
        for end in (0, -1):
            overrides = [f"sampler={sampler}"]
            for dim in (*search.shared.values(), *space.values()):
                value = dim.values[end] if dim.kind == "choice" else (dim.low, dim.high)[end]
                overrides.append(f"{dim.key}={int(value) if dim.kind == 'int' else value}")
            validate_components(build_run_config(resolve(overrides)))


def test_trial_epoch_budget_counts_each_trials_epochs_and_those_trained_before_a_resume(tmp_path):
    from raysearch.train.rundir import RunDir
    from raysearch.tune.budget import TrialEpochBudget

    for trial, epochs in (("a_00000", 3), ("a_00001", 2)):  # trained before an interruption
        run = RunDir(tmp_path / f"trial-{trial}" / "run")
        for epoch in range(epochs):
            run.append_metrics({"stage": "train", "epoch": epoch, "loss": 0.5})
    (tmp_path / "trial-a_00002" / "run").mkdir(parents=True)  # created, never trained
    budget = TrialEpochBudget(8, tmp_path)
    assert budget.spent() == 5 and not budget.stop_all()
    assert budget("a_00001", {"epochs_done": 3}) is False  # a resumed trial: 3 epochs in all, not 2 + 3
    assert budget.spent() == 6 and not budget.stop_all()
    budget("a_00002", {"epochs_done": 1})
    assert budget.spent() == 7 and not budget.stop_all()
    budget("a_00002", {"loss": 0.1})  # a result without the count changes nothing
    budget("a_00002", {"epochs_done": 2})
    assert budget.spent() == 8 and budget.stop_all()
    with pytest.raises(ConfigError, match=r"search\.max_trial_epochs: must be >= 1"):
        load_search("compare", {"max_trial_epochs": 0})
    assert load_search("compare", {"max_trial_epochs": 540}).options.budget(20, 40) == (
        "optuna (TPE), 20 trials, at most 540 trial-epochs, ASHA grace 10 of 40 epochs, reduction 2, 3 final seeds")


@pytest.mark.ray
def test_a_search_ends_when_its_trial_epoch_budget_is_spent(ray_session, tmp_path):
    # 6 trials of 3 epochs would train 18; a budget of 5 ends the search during the second trial (one
    # trial at a time, no early stopping)
    study = start_study(["search=rns-lr-reg", "search.num_samples=6", "search.max_concurrent=1",
                         "search.scheduler=none", "search.max_trial_epochs=5", "trainer.threads=1", *BASE],
                        tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}")
    lines: list[str] = []
    summary = run_study(study, report=lines.append)
    row = summary["rows"][0]
    assert 5 <= row["trial_epochs"] <= 6, row  # at most one epoch in flight beyond the budget
    assert row["trials"] == 2, summary["trials"]
    assert any(line.startswith("[rns] the budget of 5 trial-epochs is spent") and "2 of 6 trials started" in line
               for line in lines), lines


@pytest.mark.ray
def test_an_experiment_interrupted_before_tune_saved_its_state_runs_again_with_its_space(ray_session, tmp_path):
    # Tune writes its tuner when a Tuner is created and the experiment's state only once it runs, and it
    # does not save the search space: restored in between (Ctrl-C at that moment), it would restart from
    # an empty space (one trial, empty config). Such an experiment starts again, what it left removed.
    from ray import tune

    from raysearch.tune.study import restore_or_start

    def trainable(config):
        tune.report({"x": config["x"]})

    space = {"x": tune.grid_search([1, 2, 3])}

    def start():
        return tune.Tuner(trainable, param_space=space,
                          run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0))

    start()  # created, never run
    (tmp_path / "exp" / "trial-left").mkdir()
    tuner = restore_or_start(tmp_path / "exp", trainable, start, space)
    assert not (tmp_path / "exp" / "trial-left").exists()
    first = sorted((result.metrics["x"], result.path) for result in tuner.fit())
    assert [x for x, _ in first] == [1, 2, 3]
    # once run, it is restored (its trials kept), not started again
    again = restore_or_start(tmp_path / "exp", trainable, lambda: pytest.fail("started again"), space)
    assert sorted((result.metrics["x"], result.path) for result in again.fit()) == first
