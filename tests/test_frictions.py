"""Issue 21's frictions and bad input: data named after where it is, ``data describe --path`` cached, no
run directory left by a run refused during set-up, "missing" data saying where it was looked for, thread
defaults that share the CPUs, the study's trial count, and searches ASHA cannot use refused up front."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from raysearch.cli import main
from raysearch.config import build_run_config, load_run_config, resolve
from raysearch.data import list_datasets
from raysearch.data.readers import READERS
from raysearch.errors import ConfigError
from raysearch.run import train
from raysearch.train.pipeline import busy_cpus_warning, configure_threads
from raysearch.tune.space import Dimension, SearchConfig, SearchOptions, load_search

ROOT = Path(__file__).resolve().parent.parent
TINY = ["dataset.synthetic.n_users=60", "dataset.synthetic.n_items=40", "dataset.synthetic.mean_exposures=20",
        "model.dim=8", "trainer.batch_size=256", "trainer.progress=false", "trainer.threads=1"]
CPUS = len(os.sched_getaffinity(0))


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("RAYSEARCH_DATA_DIR", raising=False)
    monkeypatch.delenv("RAYSEARCH_CACHE_DIR", raising=False)


def lightgcn_folder(root: Path, name: str) -> Path:
    """A LightGCN-format folder: 8 users with 10 train items each (one carved for validation) and 2 test."""
    folder = root / name
    folder.mkdir(parents=True)
    train_lines = [" ".join(str(x) for x in [u, *[(u + k) % 16 for k in range(10)]]) for u in range(8)]
    test_lines = [f"{u} {(u + 10) % 16} {(u + 11) % 16}" for u in range(8)]
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "test.txt").write_text("\n".join(test_lines) + "\n")
    return folder


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("raysearch: error: "), err
    return err[0]


# --------------------------------------------------------------------------- 2: data named after where it is
def test_a_named_dataset_pointed_elsewhere_is_named_after_that_data():
    name = lambda *o: build_run_config(resolve(list(o))).dataset.name  # noqa: E731
    assert name("experiment=gowalla", "dataset.path=/data/mine") == "gowalla@mine"
    assert name("dataset=gowalla", "dataset.path=/data/mine/") == "gowalla@mine"
    assert name("dataset=gowalla", "dataset.path=lightgcn-gowalla") == "gowalla"  # its own folder
    assert name("dataset=gowalla") == "gowalla"
    assert name("dataset.path=/data/mine", "dataset.format=lightgcn") == "mine"  # by location alone
    assert name("experiment=gowalla", "dataset.path=/data/mine", "dataset.name=other") == "other"


def test_a_run_on_other_data_names_its_directory_results_and_cache_after_it(tmp_path, monkeypatch):
    folder = lightgcn_folder(tmp_path / "data", "mine")
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    results = train(["experiment=gowalla", f"dataset.path={folder}", "trainer.epochs=1", "trainer.eval_every=1",
                     "trainer.batch_size=64", "model.dim=8", "trainer.threads=1", "trainer.progress=false",
                     "tracking.enabled=false"], cache_dir=str(cache))
    assert results["dataset"]["name"] == "gowalla@mine"
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-gowalla@mine-mf-rns"), run.name
    assert [p.name.split("-")[0] for p in cache.glob("*.npz")] == ["gowalla_mine"]


# --------------------------------------------------------------------------- 3: describe --path uses the cache
def test_describe_by_path_reads_and_writes_the_parsed_dataset_cache(tmp_path, monkeypatch, capsys):
    folder = lightgcn_folder(tmp_path, "mine")
    cache = tmp_path / "cache"
    argv = ["data", "describe", "--path", str(folder), "--format", "lightgcn", "--cache-dir", str(cache), "--json"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert [p.name.split("-")[0] for p in cache.glob("*.npz")] == ["mine"]

    def broken(files, config):
        raise AssertionError("the reader must not run on a cache hit")

    lightgcn = READERS.get("lightgcn")
    monkeypatch.setitem(READERS._items, "lightgcn", type(lightgcn)(read=broken, layouts=lightgcn.layouts))
    assert main(argv) == 0  # from the cache
    assert json.loads(capsys.readouterr().out) == json.loads(first)
    with pytest.raises(AssertionError, match="must not run"):
        main([*argv, "--no-cache"])


# --------------------------------------------------------------------------- 4: nothing left by a set-up refusal
def test_a_run_refused_during_set_up_leaves_no_run_directory(tmp_path, capsys):
    # LightGCL's SVD rank is checked against the data when the model is built, after config.yaml is written
    bad = [*TINY, "model=lightgcl", "model.svd_rank=100000", "trainer.epochs=1"]
    assert main(["train", *bad, "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "model.svd_rank" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()
    # an existing directory (not a run) keeps what it held, and gets no config.yaml
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="model.svd_rank"):
        train(bad, out=tmp_path / "mine", cache_dir=str(tmp_path / "c"))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_a_run_that_failed_after_an_epoch_keeps_its_directory(tmp_path):
    from raysearch.train.trainer import InjectedFailure

    with pytest.raises(InjectedFailure):
        train([*TINY, "trainer.epochs=3", "trainer.fail_after_epoch=0"], out=tmp_path / "cut",
              cache_dir=str(tmp_path / "c"))
    assert (tmp_path / "cut" / "config.yaml").exists() and (tmp_path / "cut" / "metrics.jsonl").exists()


# --------------------------------------------------------------------------- 6: where missing data was looked for
def test_missing_datasets_say_where_they_were_looked_for(tmp_path, capsys):
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    assert rows["gowalla"]["looked_in"] == [str(tmp_path / "lightgcn-gowalla")]
    assert "train.txt" in rows["gowalla"]["needs"] and "test.txt" in rows["gowalla"]["needs"]
    assert "looked_in" not in rows["synthetic"]
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("gowalla ")]
    assert "missing" in line and f"looked in {tmp_path / 'lightgcn-gowalla'} for train.txt" in line


# --------------------------------------------------------------------------- 7: generated files are not tracked
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a clone")
def test_reports_scale_figures_and_tables_are_ignored_by_git():
    names = ["report-mine.html", "scale.json", "tables.md"]
    ignored = subprocess.run(["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == sorted(names)


# --------------------------------------------------------------------------- 8: threads that share the CPUs
def test_threads_zero_takes_an_even_share_among_the_runs_sharing_the_machine():
    before = torch.get_num_threads()
    try:
        assert configure_threads(0) == CPUS == torch.get_num_threads()
        assert configure_threads(0, shared_by=2) == max(1, CPUS // 2) == torch.get_num_threads()
        assert configure_threads(0, shared_by=10 * CPUS) == 1
        assert configure_threads(3, shared_by=2) == 3  # an explicit count is kept
    finally:
        torch.set_num_threads(before)
    assert load_run_config(["trainer.shared_by=2"]).trainer.shared_by == 2
    with pytest.raises(ConfigError, match=r"trainer\.shared_by: must be >= 1"):
        load_run_config(["trainer.shared_by=0"])


def test_distributed_workers_share_the_run_s_part_of_the_node():
    from raysearch.distributed.trainer import cpus_per_worker

    assert cpus_per_worker(load_run_config(["trainer.workers=2"]), 8) == 4
    assert cpus_per_worker(load_run_config(["trainer.workers=2", "trainer.shared_by=2"]), 8) == 2


@pytest.mark.skipif(CPUS < 2, reason="one CPU cannot be oversubscribed by one thread")
def test_a_busy_machine_warns_when_threads_zero_would_take_every_cpu(tmp_path, monkeypatch, capsys):
    assert busy_cpus_warning(0, 1, load=0.3) is None
    assert busy_cpus_warning(1, 1, load=5.0) is None and busy_cpus_warning(0, 2, load=5.0) is None
    message = busy_cpus_warning(0, 1, load=1.7)
    assert f"takes all {CPUS} CPUs" in message and "(1.7)" in message and "trainer.shared_by" in message
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the runs' threads stay this process's
    argv = ["train", *[o for o in TINY if o != "trainer.threads=1"], "trainer.epochs=1"]
    options = ["--cache-dir", str(tmp_path / "c"), "--out"]
    assert main([*argv, *options, str(tmp_path / "a")]) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert warnings == [f"raysearch: warning: {busy_cpus_warning(0, 1, load=3.0)}"]
    assert main([*argv, "trainer.shared_by=2", *options, str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().err


# --------------------------------------------------------------------------- 9: the study's real trial count
def test_a_grid_study_announces_the_grid_s_size(tmp_path, monkeypatch):
    import ray.tune

    import raysearch.tune.study as study_module
    from raysearch.tune.space import Study

    class Started(Exception):
        pass

    class NoTuner:
        can_restore = staticmethod(lambda path: False)

        def __init__(self, *args, **kwargs):
            raise Started

    monkeypatch.setattr(ray.tune, "Tuner", NoTuner)
    monkeypatch.setattr(ray.tune, "with_parameters", lambda f, **kw: f)
    monkeypatch.setattr(ray.tune, "with_resources", lambda f, resources: f)
    monkeypatch.setattr(study_module, "mlflow_callback", lambda *a, **kw: None)
    lr = Dimension("trainer.lr", "float", 1e-3, 1e-1, True, grid=(0.001, 0.01, 0.1))
    search = SearchConfig("g", {"rns": {"trainer.lr": lr}}, options=SearchOptions(algorithm="grid", num_samples=8))
    study = Study(tmp_path, search, ["trainer.epochs=4"], f"sqlite:///{tmp_path / 'm.db'}", "g")
    lines = []
    with pytest.raises(Started):
        study_module._search(study, "rns", [], {"threads": 1}, 2, lines.append)
    assert lines == ["[rns] searching trainer.lr: 3 trials, 2 at a time"]


# --------------------------------------------------------------------------- 10: studies that cannot search
def search(**options) -> SearchConfig:
    lr = Dimension("trainer.lr", "float", 1e-3, 1e-1, True, grid=(0.001, 0.01))
    return SearchConfig("s", {"rns": {"trainer.lr": lr}}, options=SearchOptions(**options))


@pytest.mark.parametrize(("options", "epochs", "message"), [
    ({"grace_period": 10}, 10, r"search\.grace_period: rns's trials run 10 epoch\(s\) and search\.grace_period is 10, "
                               r"so ASHA would never stop a trial; set search\.grace_period below 10"),
    ({"grace_period": 12}, 10, "ASHA would never stop a trial"),
    ({}, 1, r"the automatic grace period is 1, so ASHA would never stop a trial"),
    ({"num_samples": 1}, 20, r"search\.num_samples: search\.num_samples=1 for rns, fewer than ASHA's reduction "
                             r"factor 2 .* search at least 2 trials"),
    ({"num_samples": 3, "reduction_factor": 4}, 20, "search at least 4 trials"),
    ({"algorithm": "grid", "reduction_factor": 3}, 20, r"the grid has 2 combination\(s\) for rns"),
])
def test_a_budget_too_small_for_asha_s_rungs_is_refused(options, epochs, message):
    with pytest.raises(ConfigError, match=message):
        search(**options).check_budget(lambda sampler: epochs)


@pytest.mark.parametrize(("options", "epochs"), [
    ({}, 2), ({"grace_period": 9}, 10), ({"num_samples": 2}, 20), ({"algorithm": "grid"}, 20),
    ({"scheduler": "none", "num_samples": 1, "grace_period": 50}, 1),  # no ASHA: nothing to check
])
def test_a_budget_asha_can_use_passes(options, epochs):
    search(**options).check_budget(lambda sampler: epochs)


def test_a_grid_search_needs_grid_values_on_every_dimension():
    lr = Dimension("trainer.lr", "float", 1e-3, 1e-1, True)  # no grid
    bad = SearchConfig("s", {"rns": {"trainer.lr": lr}}, options=SearchOptions(algorithm="grid"))
    with pytest.raises(ConfigError, match=r"search\.algorithm=grid: rns's trainer\.lr has no grid values"):
        bad.check_budget(lambda sampler: 20)


def test_an_empty_study_is_refused_with_what_to_do(tmp_path, capsys):
    out = ["--out", str(tmp_path / "s"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    assert main(["tune", "search=compare", "search.only=[nosuch]", *out]) == 2
    line = one_line_error(capsys)
    assert "search.only: nosuch not in the study 'compare' (its samplers: rns," in line
    assert line.endswith("name some of them, or drop search.only")
    with pytest.raises(ConfigError, match=r"search\.samplers: the study 'x' has no sampler to search"):
        SearchConfig("x", {})
    assert list(load_search("compare", {"only": ["dns"]}).samplers) == ["dns"]


def test_a_study_asha_cannot_use_stops_before_anything_runs(tmp_path, capsys, monkeypatch):
    import raysearch.distributed.local_ray as local_ray

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a refused study")

    monkeypatch.setattr(local_ray, "init_ray", no_ray)
    out = ["--out", str(tmp_path / "s"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    assert main(["tune", "search=compare", "search.only=[rns]", "search.grace_period=5", "trainer.epochs=5",
                 *TINY, *out]) == 2
    assert "search.grace_period: rns's trials run 5 epoch(s)" in one_line_error(capsys)
    assert not (tmp_path / "s").exists()  # refused before the study directory is made
