"""MLflow tracking of `raysearch train` (from the training process) and the `raysearch ui` command."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from raysearch.cli import main
from raysearch.distributed.process_group import free_port
from raysearch.run import train
from raysearch.tracking import mlflow_key, resolve_tracking_uri


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert resolve_tracking_uri("store.db") == f"sqlite:///{tmp_path / 'store.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert mlflow_key("valid/ndcg@10") == "valid/ndcg_at_10"


def test_parallel_first_writers_share_one_new_store(tmp_path):
    # parallel `raysearch train ... tracking.enabled=true` runs on a store that does not exist yet: without
    # the store lock one of them died in MLflow's schema migration (or on creating the same experiment)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("import sys, time; from raysearch.tracking import ensure_experiment; "
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); print(ensure_experiment(sys.argv[1], 'shared'))")
    start_at = time.time() + 6  # past every process's imports, so that they all reach the store at once
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, str(start_at)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err[-2000:] for _, err in outs]
    ids = {out.strip() for out, _ in outs}
    assert len(ids) == 1
    assert mlflow.MlflowClient(uri).get_experiment_by_name("shared").experiment_id == ids.pop()


def test_train_logs_params_metrics_tags_and_artifacts(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = train(["trainer.epochs=3", "trainer.progress=false", "model.dim=8", "tracking.enabled=true",
                     f"tracking.uri={uri}", "tracking.experiment=unit"], out=tmp_path / "run")
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.epochs"] == "3" and run.data.params["model.name"] == "mf"
    tags = run.data.tags
    assert tags["raysearch.dataset"] == "synthetic" and tags["raysearch.sampler"] == "rns"
    assert tags["raysearch.dataset_fingerprint"] == results["dataset"]["fingerprint"]
    assert tags["raysearch.test_evaluated_once"] == "true"
    assert len(client.get_metric_history(run.info.run_id, "valid/ndcg_at_10")) == 3
    assert run.data.metrics["test/ndcg_at_10"] == pytest.approx(results["test"]["ndcg@10"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "results.json", "metrics.jsonl"} <= artifacts


@pytest.mark.slow
def test_ui_serves_the_store_on_loopback(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "raysearch"), "ui", f"--tracking-uri={uri}",
                             f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240  # generous: a busy machine starts the server slowly
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.time() < deadline, "the MLflow UI did not answer"
                assert proc.poll() is None, "raysearch ui exited"
                time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_track_logs_a_finished_untracked_run_as_train_would(tmp_path, capsys):
    results = train(["trainer.epochs=3", "trainer.progress=false", "model.dim=8"], out=tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["track", str(tmp_path / "run"), "--experiment", "later", "--tracking-uri", uri]) == 0
    assert "MLflow run" in capsys.readouterr().out
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("later").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["trainer.epochs"] == "3"
    assert run.data.tags["raysearch.protocol"] == results["protocol"]["protocol"]
    assert run.data.tags["raysearch.imported_from"] == str((tmp_path / "run").resolve())
    assert run.data.metrics["test/ndcg_at_10"] == pytest.approx(results["test"]["ndcg@10"], abs=0)
    history = client.get_metric_history(run.info.run_id, "valid/ndcg_at_10")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [r["valid"]["ndcg@10"] for r in (json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").open())])
    assert {"results.json", "test_per_user.npz"} <= {a.path for a in client.list_artifacts(run.info.run_id)}

    (tmp_path / "unfinished").mkdir()
    assert main(["track", str(tmp_path / "unfinished"), "--experiment", "later", "--tracking-uri", uri]) == 2
    assert "no results.json (not a finished raysearch run)" in capsys.readouterr().err
