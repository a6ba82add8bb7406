"""MLflow: where runs go, what every run is tagged with, and the two ways runs get there.

* ``raysearch tune``: the driver logs (``StudyMLflowCallback``, a Tune logger callback): one run per
  trial with its parameters, per-epoch validation metrics, the tags below and, at the end, the trial's
  config, results and community summary as artifacts.
* ``raysearch train`` with ``tracking.enabled=true``: the main process of the training itself logs
  (``TrainingRunLogger``; under Ray Train that is rank 0, which gets the tracking settings in its train
  config: environment variables of the driver do not reach the workers).

The default store is a sqlite file in the working directory (``sqlite:///<cwd>/mlflow.db``): MLflow 3
refuses its old file store, and one sqlite file is what a laptop needs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raysearch.config import RunConfig, to_plain
from raysearch.train.callbacks import RunCallback

TAG_PREFIX = "raysearch."
ARTIFACTS = ("config.yaml", "results.json", "communities.json", "metrics.jsonl", "false_negatives.json",
             "test_per_user.npz")


def mlflow_key(name: str) -> str:
    """Metric names as MLflow accepts them: ``valid/ndcg@10`` -> ``valid/ndcg_at_10``."""
    return name.replace("@", "_at_")


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """``sqlite:///<absolute cwd>/mlflow.db``."""
    return f"sqlite:///{(Path(cwd or os.getcwd()) / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None) -> str:
    """An absolute URI: a relative sqlite path or plain file path would resolve differently in workers."""
    if not uri:
        return default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    if "://" not in uri:  # a bare path to a .db file
        return f"sqlite:///{Path(uri).resolve()}"
    return uri


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a sqlite store (``<db>.lock``), held while the store and an experiment
    are created: two first writers (parallel ``raysearch train`` runs with tracking on) race on MLflow's
    schema migration and on creating the same experiment. Other URIs need none (a server serialises)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri[len("sqlite:///"):] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store and the experiment once: safe from parallel processes on one store (see
    ``_store_lock``); returns the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = Path(uri[len("sqlite:///"):]).parent / "mlartifacts" if uri.startswith("sqlite:///") else None
        return client.create_experiment(name, artifact_location=artifacts.as_uri() if artifacts else None)


def run_tags(cfg: RunConfig, dataset_name: str, fingerprint: str, protocol: str, code: str) -> dict[str, str]:
    """The tags every run carries: dataset and its provenance hash, protocol, sampler, backbone, seed, code."""
    return {
        f"{TAG_PREFIX}dataset": dataset_name,
        f"{TAG_PREFIX}dataset_fingerprint": fingerprint,
        f"{TAG_PREFIX}protocol": protocol,
        f"{TAG_PREFIX}sampler": cfg.sampler.name,
        f"{TAG_PREFIX}backbone": cfg.model.name,
        f"{TAG_PREFIX}seed": str(cfg.trainer.seed),
        f"{TAG_PREFIX}code_version": code,
    }


def flat_params(cfg: RunConfig) -> dict[str, str]:
    """The run's configuration as MLflow parameters (dotted keys, values as text)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = str(value)[:500]  # MLflow caps parameter values

    tree = to_plain(cfg)
    for group in ("model", "sampler"):
        tree[group] = {"name": tree[group]["name"], **tree[group]["params"]}
    walk("", tree)
    return out


def log_artifacts(client, run_id: str, run_dir: Path) -> None:
    for name in ARTIFACTS:
        path = run_dir / name
        if path.exists():
            client.log_artifact(run_id, str(path))


class TrainingRunLogger:
    """Logs one ``raysearch train`` run to MLflow from the main training process."""

    def __init__(self, cfg: RunConfig, tags: dict[str, str], run_name: str, start_time: int | None = None):
        import mlflow

        uri = resolve_tracking_uri(cfg.tracking.uri)
        experiment_id = ensure_experiment(uri, cfg.tracking.experiment)
        self.client = mlflow.MlflowClient(uri)
        run = self.client.create_run(experiment_id, start_time=start_time, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        for key, value in flat_params(cfg).items():
            self.client.log_param(self.run_id, key, value)

    def log_epoch(self, record: dict[str, Any], step: int) -> None:
        metrics = {"loss": record.get("loss"), "epoch_seconds": record.get("epoch_seconds"),
                   "sampling_share": record.get("sampling_share")}
        metrics.update({f"loss/{k}": v for k, v in (record.get("loss_terms") or {}).items()})
        metrics.update({f"valid/{k}": v for k, v in (record.get("valid") or {}).items()})
        metrics.update({f"sampler/{k}": v for k, v in (record.get("sampler_stats") or {}).items()})
        for key, value in metrics.items():
            if value is not None:
                self.client.log_metric(self.run_id, mlflow_key(key), float(value), step=step)

    def finish(self, results: dict[str, Any], run_dir: Path, end_time: int | None = None) -> None:
        """Test metrics (when the run evaluated test), artifacts, and the run marked finished."""
        for key, value in (results.get("test") or {}).items():
            self.client.log_metric(self.run_id, mlflow_key(f"test/{key}"), float(value))
        if results.get("test"):
            self.client.set_tag(self.run_id, f"{TAG_PREFIX}test_evaluated_once", "true")
        log_artifacts(self.client, self.run_id, run_dir)
        self.client.set_terminated(self.run_id, "FINISHED", end_time=end_time)

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


class MLflowRunCallback(RunCallback):
    """Logs a ``run_training`` run to MLflow (attach it on the main process only): parameters and tags at
    the start, every epoch's loss, loss terms, validation and sampler measurements, then the test metrics
    and the artifacts."""

    def __init__(self, cfg: RunConfig, dataset: Any, run_name: str):
        from raysearch.train.evaluator import resolve_protocol
        from raysearch.version import code_version

        tags = run_tags(cfg, dataset.name, dataset.fingerprint, resolve_protocol(dataset, cfg.eval), code_version())
        self.logger = TrainingRunLogger(cfg, tags, run_name=run_name)
        self.step = 0

    def on_epoch(self, record: dict[str, Any], sampler: Any) -> None:
        self.logger.log_epoch(record, self.step)
        self.step += 1

    def on_finish(self, results: dict[str, Any], run_dir: Path) -> None:
        self.logger.finish(results, run_dir)

    def on_failure(self) -> None:
        self.logger.fail()


def tracking_callbacks(cfg: RunConfig, dataset: Any, run_name: str, is_main: bool = True) -> list[RunCallback]:
    """The MLflow callback when ``tracking.enabled`` and this is the main process, else none."""
    return [MLflowRunCallback(cfg, dataset, run_name)] if cfg.tracking.enabled and is_main else []


def track_run_dir(run_dir: str | Path, tracking_uri: str | None, experiment: str,
                  extra_tags: dict[str, str] | None = None, span_ms: tuple[int, int] | None = None) -> str:
    """Log a finished run directory (``raysearch train`` without tracking) to MLflow as if it had been
    tracked: parameters, tags, the per-epoch metrics of ``metrics.jsonl``, the test metrics (if it
    evaluated test) and the artifacts. Returns the MLflow run id. The run is not re-evaluated: what it
    recorded is what is logged. ``extra_tags`` are added; ``span_ms``: the run's (start, end) wall-clock
    times in ms since the epoch (default: the time of logging)."""
    import dataclasses

    from raysearch.config import build_run_config
    from raysearch.errors import ConfigError
    from raysearch.train.rundir import RunDir, read_json

    rd = RunDir(run_dir, writable=False)
    if not rd.results_path.exists():
        raise ConfigError(f"{rd.path}: no results.json (not a finished raysearch run)")
    results = read_json(rd.results_path)
    cfg = build_run_config(rd.read_config())
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(
        cfg.tracking, enabled=True, uri=resolve_tracking_uri(tracking_uri), experiment=experiment))
    tags = run_tags(cfg, results["dataset"]["name"], results["dataset"]["fingerprint"],
                    results["protocol"]["protocol"], results.get("raysearch_version", ""))
    start, end = span_ms or (None, None)
    logger = TrainingRunLogger(cfg, {**tags, f"{TAG_PREFIX}imported_from": str(rd.path.resolve()),
                                     **(extra_tags or {})}, run_name=rd.path.name, start_time=start)
    for step, record in enumerate(rd.read_metrics()):
        logger.log_epoch(record, step)
    logger.finish(results, rd.path, end_time=end)
    return logger.run_id
