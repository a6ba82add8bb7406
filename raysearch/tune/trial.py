"""The trial: one training run in a Ray Tune worker, reporting validation to Tune after every epoch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from raysearch.config import build_run_config, config_tree, resolve
from raysearch.train.context import LocalContext
from raysearch.train.rundir import RunDir
from raysearch.tune.space import METRIC_PREFIX


class TuneReportingContext(LocalContext):
    """One-process context that reports each validated epoch to Ray Tune (for ASHA, Optuna and MLflow).

    ``output_stage``: when given (search trials), only that stage's epochs are reported. ICPNS's
    pre-training validates an RNS model: ASHA would rank ICPNS trials on it and stop most of them before
    they fine-tune, and Optuna would learn from it. ``stage_epochs`` (ASHA's time attribute) is the
    1-based epoch within the reported stage, so the grace period is counted in fine-tuning epochs and a
    resumed trial goes on from its own epoch. ``None`` (final runs) reports every stage, for MLflow's curves.
    """

    def __init__(self, output_stage: str | None = None, run_dir: RunDir | None = None) -> None:
        self.output_stage = output_stage
        self.run_dir = run_dir
        self.epochs_done: int | None = None if run_dir is not None else 0

    def epoch_done(self, stage: str, epoch: int, stage_dir: Path, record: dict) -> None:
        # ``epochs_done``: the run's epochs so far, all stages; a resumed trial counts those trained before
        # (its run directory's records, this epoch's included; read once)
        if self.epochs_done is None:
            self.epochs_done = len(self.run_dir.read_metrics())
        else:
            self.epochs_done += 1
        if not record.get("valid") or self.output_stage not in (None, stage):
            return
        from ray import tune

        metrics = {f"{METRIC_PREFIX}{k}": v for k, v in record["valid"].items()}
        metrics.update(loss=record["loss"], epoch_seconds=record["epoch_seconds"],
                       sampling_share=record.get("sampling_share") or 0.0, epochs_done=self.epochs_done,
                       stage_epochs=epoch + 1)
        tune.report(metrics)


def trial_overrides(config: Mapping[str, Any]) -> list[str]:
    """The ``key=value`` overrides of a trial: the study's base, its sampler, fixed values, searched values."""
    searched = [f"{k}={_yaml_scalar(v)}" for k, v in config.items() if not k.startswith("_")]
    return [*config["_base"], f"sampler={config['_sampler']}", *config.get("_fixed", []), *searched]


def effective_config(config: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """A final run's trial config is an index into ``settings["final_configs"]``; a search trial's is itself."""
    if "_final_index" in config:
        return settings["final_configs"][config["_final_index"]]
    return dict(config)


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run_trial(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """A Tune trial: one training run (one process) reporting validation after every epoch.

    Final runs also evaluate the test split once, at the end, and report it with their best validation.
    """
    from ray import tune

    from raysearch.data import load_dataset
    from raysearch.metrics import RayMetricsCallback
    from raysearch.train.pipeline import pipeline_of, run_training

    config = effective_config(config, settings)
    cfg = build_run_config(resolve(trial_overrides(config)))
    run_dir = RunDir(Path(tune.get_context().get_trial_dir()) / "run")
    if not run_dir.config_path.exists():
        run_dir.write_config(config_tree(cfg))
    dataset = load_dataset(cfg.dataset, data_dir=settings.get("data_dir"), cache_dir=settings.get("cache_dir"))
    final = bool(config.get("_final"))
    context = TuneReportingContext(None if final else pipeline_of(cfg.sampler.name).output_stage, run_dir)
    results = run_training(cfg, dataset, run_dir, context=context, threads=settings["threads"],
                           evaluate_test=final, callbacks=[RayMetricsCallback(dataset.name, cfg.model.name)])
    if final:
        tune.report({**{f"{METRIC_PREFIX}{k}": v for k, v in results["valid"].items()},
                     **{f"test/{k}": v for k, v in results["test"].items()},
                     "epochs_done": context.epochs_done or 0})
