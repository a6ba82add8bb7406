"""Ray Tune callbacks of a study's driver: MLflow logging of every trial, and the running-trials gauge."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

from raysearch import metrics
from raysearch.config import build_run_config, resolve
from raysearch.tune.space import METRIC_PREFIX
from raysearch.tune.trial import effective_config, trial_overrides


def mlflow_callback(uri: str, experiment: str, study: str, phase: str, settings: Mapping[str, Any],
                    extra_tags: Mapping[str, str] | None = None):
    """A Tune ``MLflowLoggerCallback`` (it logs from the driver) that logs each trial's resolved
    configuration as parameters, tags its run (dataset, fingerprint, protocol, sampler, backbone, seed,
    code version, study, phase, selected), reuses the run of a resumed trial, and at the end logs the
    trial's config, results and community summary as artifacts (not its checkpoints). ``extra_tags``: more
    tags for every run (the search's budget)."""
    import mlflow
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from raysearch.tracking import TAG_PREFIX, flat_params, log_artifacts, mlflow_key, run_tags
    from raysearch.version import code_version

    class StudyMLflowCallback(MLflowLoggerCallback):
        def log_trial_start(self, trial):
            if trial in self._trial_runs:
                return
            client = mlflow.MlflowClient(uri)
            existing = client.search_runs(
                [self.mlflow_util.experiment_id],
                filter_string=f"tags.trial_name = '{trial}' and tags.`{TAG_PREFIX}study` = '{study}' "
                              f"and tags.`{TAG_PREFIX}phase` = '{phase}'")
            if existing:  # a resumed study: the trial keeps its run
                self._trial_runs[trial] = existing[0].info.run_id
                return
            cfg = build_run_config(resolve(trial_overrides(effective_config(trial.config, settings))))
            info = _dataset_info(cfg, settings)
            tags = run_tags(cfg, info["name"], info["fingerprint"], info["protocol"], code_version())
            tags.update({"trial_name": str(trial), f"{TAG_PREFIX}study": study, f"{TAG_PREFIX}phase": phase,
                         f"{TAG_PREFIX}selected": "true" if phase == "final" else "false", **(extra_tags or {})})
            run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=flat_params(cfg))

        def log_trial_result(self, iteration, trial, result):
            # Our metrics only (not Tune's bookkeeping), named as MLflow allows, stepped by epochs done.
            keep = {mlflow_key(k): float(v) for k, v in result.items()
                    if k.startswith((METRIC_PREFIX, "test/")) or k in ("loss", "epoch_seconds", "sampling_share")}
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=keep,
                                         step=int(result.get("epochs_done", iteration)))

        def log_trial_end(self, trial, failed: bool = False):
            run_id = self._trial_runs.get(trial)
            if run_id is not None:
                log_artifacts(mlflow.MlflowClient(uri), run_id, Path(trial.local_path) / "run")
                self.mlflow_util.end_run(run_id=run_id, status="FAILED" if failed else "FINISHED")

    return StudyMLflowCallback(tracking_uri=uri, experiment_name=experiment, save_artifact=False)


class TrialsRunning(Callback):
    """Exports the number of running trials (``raysearch_trials_running``) for the Grafana dashboard."""

    def __init__(self, study: str):
        self.study = study
        self.running: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        metrics.record_trials_running(self.study, len(self.running))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        metrics.record_trials_running(self.study, len(self.running))

    on_trial_error = on_trial_complete


_DATASET_INFO: dict[str, dict[str, str]] = {}


def _dataset_info(cfg, settings: Mapping[str, Any]) -> dict[str, str]:
    """Name, fingerprint and protocol of a trial's dataset (read from the cache once per study)."""
    from raysearch.config import to_plain
    from raysearch.data import load_dataset
    from raysearch.train.evaluator import resolve_protocol

    key = json.dumps([to_plain(cfg.dataset), to_plain(cfg.eval)], sort_keys=True)
    if key not in _DATASET_INFO:
        ds = load_dataset(cfg.dataset, data_dir=settings.get("data_dir"), cache_dir=settings.get("cache_dir"))
        _DATASET_INFO[key] = {"name": ds.name, "fingerprint": ds.fingerprint,
                              "protocol": resolve_protocol(ds, cfg.eval)}
    return _DATASET_INFO[key]
