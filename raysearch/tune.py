"""``raysearch tune``: hyperparameter studies with Ray Tune + Optuna, tracked in MLflow, leak-free.

A study (``conf/search/NAME.yaml``) names one or more samplers, each with a search space over any config
keys (``sampler.*``, ``trainer.*``, ``model.*``), plus a space shared by all of them. For each sampler,
Ray Tune runs ``num_samples`` trials suggested by Optuna's TPE (seeded; ``constant_liar`` so that trials
running in parallel get different suggestions; the first ``startup_trials`` are TPE's random start-up)
behind a concurrency limit, and ASHA stops unpromising trials on the validation metric every trial
reports after each epoch of its output stage (ICPNS: fine-tuning; its pre-training is not reported, see
``TuneReportingContext``). Every sampler gets the same budget. Trials never touch the test split.

After the search, the best trial of each sampler (its best validation value) is re-trained on
``final_seeds`` seeds, and only these final runs evaluate the test split, once each: in MLflow they are
the runs tagged ``raysearch.selected=true``, the only ones with ``test/*`` metrics. The study writes
``summary.csv`` and ``summary.json`` and prints a table.

ICPNS studies whose space only holds ``sampler.*`` keys share one pre-training: stage 1 (random
negatives) does not depend on the number of communities or the smoothing factor, so it runs once
(``pretrain/``) and every trial fine-tunes from its best weights; the trial-epochs counted are then the
fine-tuning epochs plus the pre-training once.

An interrupted study (Ctrl-C, a lost machine) resumes with ``--resume DIR``: finished trials are kept,
unfinished ones continue from their last epoch checkpoint, and the Optuna state is restored.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ray.tune import Callback

from raysearch import metrics
from raysearch.config import (
    build_run_config,
    config_tree,
    expand_experiments,
    from_mapping,
    load_group,
    parse_override,
    require,
    resolve,
)
from raysearch.errors import ConfigError
from raysearch.train.context import LocalContext
from raysearch.train.rundir import RunDir, write_json_atomic

METRIC_PREFIX = "valid/"


# --------------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class Dimension:
    """One searched key: ``{int: [lo, hi], log: bool}``, ``{float: [lo, hi], log: bool}`` or
    ``{choice: [v, ...]}``; an optional ``grid: [v, ...]`` lists the values of an exhaustive grid."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, key: str, spec: Any, where: str) -> Dimension:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}.{key}: expected a mapping like {{float: [0, 1]}} or {{choice: [...]}}")
        kinds = [k for k in ("int", "float", "choice") if k in spec]
        unknown = set(spec) - {"int", "float", "choice", "log", "grid"}
        if len(kinds) != 1 or unknown:
            raise ConfigError(f"{where}.{key}: give exactly one of int, float, choice "
                              f"(plus optional log, grid); got {sorted(spec)}")
        kind = kinds[0]
        grid = tuple(spec.get("grid") or ())
        if kind == "choice":
            values = tuple(spec["choice"])
            require(len(values) >= 1, f"{where}.{key}", "choice needs at least one value")
            return cls(key, kind, values=values, grid=grid or values)
        bounds = spec[kind]
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)):
            raise ConfigError(f"{where}.{key}: {kind} needs [low, high]")
        low, high = float(bounds[0]), float(bounds[1])
        log = bool(spec.get("log", False))
        require(low < high, f"{where}.{key}", f"low must be < high, got [{low}, {high}]")
        require(not log or low > 0, f"{where}.{key}", "a log scale needs low > 0")
        return cls(key, kind, low, high, log, grid=grid)

    def to_tune(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "int":
            lo, hi = int(self.low), int(self.high)
            return tune.lograndint(lo, hi + 1) if self.log else tune.randint(lo, hi + 1)
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)


@dataclass(frozen=True)
class SearchOptions:
    """The scalar settings of a study; ``search.KEY=VALUE`` on the command line overrides them."""

    description: str = ""
    num_samples: int = 8  # trials per sampler (the same budget for every sampler)
    max_concurrent: int | None = None  # None: as many as the machine's CPUs allow
    algorithm: str = "optuna"  # optuna (TPE) | grid (every combination of the dimensions' grid values)
    scheduler: str = "asha"  # asha | none
    grace_period: int = 2  # ASHA: epochs every trial gets
    reduction_factor: float = 2.0  # ASHA: keep the top 1/rf at each rung
    final_seeds: int = 1  # re-train the selected configuration of each sampler on this many seeds
    seed: int = 0  # the search's own seed (Optuna's TPE)
    startup_trials: int = 10  # TPE: trials drawn at random before TPE models the results (Optuna's default)
    share_pretraining: bool = True  # ICPNS: pre-train once when only sampler.* keys are searched
    only: tuple[str, ...] = ()  # search only these of the file's samplers (e.g. to redo one); () = all

    def __post_init__(self) -> None:
        require(self.num_samples >= 1, "search.num_samples", "must be >= 1")
        require(self.max_concurrent is None or self.max_concurrent >= 1, "search.max_concurrent", "must be >= 1")
        require(self.algorithm in ("optuna", "grid"), "search.algorithm", "must be optuna or grid")
        require(self.scheduler in ("asha", "none"), "search.scheduler", "must be asha or none")
        require(self.grace_period >= 1, "search.grace_period", "must be >= 1")
        require(self.reduction_factor > 1, "search.reduction_factor", "must be > 1")
        require(self.final_seeds >= 1, "search.final_seeds", "must be >= 1")
        require(self.startup_trials >= 1, "search.startup_trials", "must be >= 1")


@dataclass(frozen=True)
class SearchConfig:
    """A study (``conf/search/NAME.yaml``): per sampler a space, a shared space, and the options."""

    name: str
    samplers: dict[str, dict[str, Dimension]]
    shared: dict[str, Dimension] = field(default_factory=dict)
    options: SearchOptions = field(default_factory=SearchOptions)

    def __post_init__(self) -> None:
        require(len(self.samplers) >= 1, "search.samplers", "name at least one sampler")

    def space(self, sampler: str) -> dict[str, Dimension]:
        return {**self.shared, **self.samplers[sampler]}


def load_search(name: str, overrides: Mapping[str, Any] = ()) -> SearchConfig:
    """``conf/search/NAME.yaml`` with ``search.KEY=VALUE`` overrides applied to its options."""
    data = dict(load_group("search", name))
    spaces = {k: data.pop(k) for k in ("samplers", "shared") if k in data}
    options = from_mapping(SearchOptions, {**data, **dict(overrides)}, "search")
    samplers = {}
    for sampler, space in dict(spaces.get("samplers") or {}).items():
        samplers[str(sampler)] = {k: Dimension.parse(k, v, f"search.samplers.{sampler}")
                                  for k, v in dict(space or {}).items()}
    shared = {k: Dimension.parse(k, v, "search.shared") for k, v in dict(spaces.get("shared") or {}).items()}
    unknown = [s for s in options.only if s not in samplers]
    if unknown:
        raise ConfigError(f"search.only: {', '.join(unknown)} not in the study {name!r} "
                          f"(its samplers: {', '.join(samplers)})")
    if options.only:
        samplers = {s: space for s, space in samplers.items() if s in options.only}
    return SearchConfig(name=name, samplers=samplers, shared=shared, options=options)


# --------------------------------------------------------------------------- the trial
class TuneReportingContext(LocalContext):
    """One-process context that reports each validated epoch to Ray Tune (for ASHA, Optuna and MLflow).

    ``output_stage``: when given (search trials), only that stage's epochs are reported. ICPNS's
    pre-training validates an RNS model: ASHA would rank ICPNS trials on it and stop most of them before
    they fine-tune, and Optuna would learn from it. ``stage_epochs`` (ASHA's time attribute) is the
    1-based epoch within the reported stage, so the grace period is counted in fine-tuning epochs and a
    resumed trial goes on from its own epoch. ``None`` (final runs) reports every stage, for MLflow's curves.
    """

    def __init__(self, output_stage: str | None = None) -> None:
        self.output_stage = output_stage
        self.epochs_done = 0

    def epoch_done(self, stage: str, epoch: int, stage_dir: Path, record: dict) -> None:
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
    from raysearch.train.pipeline import pipeline_of, run_training

    config = effective_config(config, settings)
    cfg = build_run_config(resolve(trial_overrides(config)))
    run_dir = RunDir(Path(tune.get_context().get_trial_dir()) / "run")
    if not run_dir.config_path.exists():
        run_dir.write_config(config_tree(cfg))
    dataset = load_dataset(cfg.dataset, data_dir=settings.get("data_dir"), cache_dir=settings.get("cache_dir"))
    final = bool(config.get("_final"))
    context = TuneReportingContext(None if final else pipeline_of(cfg.sampler.name).output_stage)
    results = run_training(cfg, dataset, run_dir, context=context, threads=settings["threads"],
                           evaluate_test=final)
    if final:
        tune.report({**{f"{METRIC_PREFIX}{k}": v for k, v in results["valid"].items()},
                     **{f"test/{k}": v for k, v in results["test"].items()},
                     "epochs_done": context.epochs_done})


# --------------------------------------------------------------------------- MLflow from the driver
def mlflow_callback(uri: str, experiment: str, study: str, phase: str, settings: Mapping[str, Any]):
    """A Tune ``MLflowLoggerCallback`` (it logs from the driver) that logs each trial's resolved
    configuration as parameters, tags its run (dataset, fingerprint, protocol, sampler, backbone, seed,
    code version, study, phase, selected), reuses the run of a resumed trial, and at the end logs the
    trial's config, results and community summary as artifacts (not its checkpoints)."""
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
                         f"{TAG_PREFIX}selected": "true" if phase == "final" else "false"})
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


# --------------------------------------------------------------------------- the study
@dataclass
class Study:
    """A study directory: ``study.json`` (what was asked), ``tune/`` (Ray Tune), ``summary.*``."""

    path: Path
    search: SearchConfig
    base: list[str]
    tracking_uri: str
    experiment: str

    @property
    def tune_dir(self) -> Path:
        return self.path / "tune"


def start_study(args_overrides: Sequence[str], out: str | Path | None, tracking_uri: str | None,
                experiment: str | None = None) -> Study:
    """Parse ``search=NAME``, ``search.*`` and the run overrides into a new study directory.

    ``experiment``: the MLflow experiment to log into (several studies may share one, so that one report
    compares them); default ``<search>-<study directory name>``."""
    from raysearch.tracking import resolve_tracking_uri

    # experiment=NAME stays unexpanded in the base: each trial expands it with its own sampler, so that
    # the experiment's per-sampler overrides (sampler_overrides) reach that sampler's trials
    expand_experiments(args_overrides)  # unknown experiments fail now
    search_name, search_values, base = None, {}, []
    for text in args_overrides:
        key, value = parse_override(text)
        if key == "search":
            search_name = str(value)
        elif key.startswith("search."):
            search_values[key.removeprefix("search.")] = value
        elif key == "sampler":
            raise ConfigError(f"{text}: a study chooses its samplers in its search file (conf/search/*.yaml)")
        else:
            base.append(text)
    if search_name is None:
        raise ConfigError("name a study: search=NAME (conf/search/*.yaml)")
    search = load_search(search_name, search_values)
    from raysearch.train.pipeline import validate_components

    for sampler in search.samplers:  # every trial's config must resolve: fail now, not in a worker
        validate_components(build_run_config(resolve([*base, f"sampler={sampler}"])))
    # Absolute: Ray Tune's storage must be (a relative path reads as a URI without a scheme).
    path = (Path(out) if out else Path("studies") / f"{search_name}-{_stamp()}").resolve()
    if (path / "study.json").exists():
        raise ConfigError(f"--out {path}: a study exists there; use --resume {path} or another --out")
    path.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(tracking_uri)
    experiment = experiment or f"{search_name}-{path.resolve().name}"
    write_json_atomic(path / "study.json", {"search": search_name, "search_overrides": search_values,
                                            "base": base, "tracking_uri": uri, "experiment": experiment})
    return Study(path, search, base, uri, experiment)


def load_study(path: str | Path, tracking_uri: str | None = None) -> Study:
    path = Path(path).resolve()
    meta_path = path / "study.json"
    if not meta_path.exists():
        raise ConfigError(f"--resume {path}: no study.json there (not a raysearch study directory)")
    meta = json.loads(meta_path.read_text())
    search = load_search(meta["search"], meta["search_overrides"])
    return Study(path, search, meta["base"], tracking_uri or meta["tracking_uri"], meta["experiment"])


def _stamp() -> str:
    import datetime as dt

    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def run_study(study: Study, data_dir: str | None = None, cache_dir: str | None = None,
              report=print) -> dict[str, Any]:
    """Search every sampler, re-train each selection on the final seeds (test once each), summarise."""
    import ray

    from raysearch.tracking import ensure_experiment

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ensure_experiment(study.tracking_uri, study.experiment)
    # Ctrl-C must interrupt the study (KeyboardInterrupt; Tune's saved state keeps running trials as
    # unfinished, so --resume continues them) rather than make Tune mark running trials finished.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    cpus = int(ray.cluster_resources().get("CPU", 1))
    base_cfg = build_run_config(resolve(study.base))
    threads = base_cfg.trainer.threads or 1
    if base_cfg.trainer.workers > 1:
        raise ConfigError("trainer.workers > 1 inside a study is not supported yet: trials run one process "
                          "each (use search.max_concurrent to run several at once)")
    concurrency = study.search.options.max_concurrent or max(1, cpus // threads)
    settings = {"threads": threads, "data_dir": _abs(data_dir), "cache_dir": _abs(cache_dir)}
    from raysearch.data import load_dataset

    load_dataset(base_cfg.dataset, data_dir=data_dir, cache_dir=cache_dir)  # warm the cache once
    if note := tpe_startup_note(study.search.options):
        report(note)

    selections: dict[str, dict[str, Any]] = {}
    for sampler in study.search.samplers:
        fixed, pretrain_epochs = _shared_pretraining(study, sampler, settings, report)
        selections[sampler] = _search(study, sampler, fixed, settings, concurrency, report)
        selections[sampler]["trial_epochs"] += pretrain_epochs
        selections[sampler]["shared_pretraining_epochs"] = pretrain_epochs
    finals = _final_runs(study, selections, settings, concurrency, report)
    summary = _summarise(study, selections, finals)
    report(format_summary(summary))
    return summary


def _abs(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _metric_key(study: Study) -> str:
    return METRIC_PREFIX + build_run_config(resolve(study.base)).trainer.valid_metric


def _shared_pretraining(study: Study, sampler: str, settings: dict, report) -> tuple[list[str], int]:
    """ICPNS with a space of sampler.* keys only: pre-train once; returns the override that makes trials
    fine-tune from it and the pre-training's epochs (counted once in the study's compute)."""
    space = study.search.space(sampler)
    if sampler != "icpns" or not study.search.options.share_pretraining:
        return [], 0
    if not all(k.startswith("sampler.") and k not in ("sampler.pretrain", "sampler.pretrain_epochs")
               for k in space):
        return [], 0
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import run_training

    run_dir = RunDir(study.path / "pretrain")
    if not run_dir.results_path.exists():
        report(f"[{sampler}] pre-training once (random negatives), shared by every trial")
        cfg = build_run_config(resolve(pretraining_overrides(study.base)))
        if not run_dir.config_path.exists():
            from raysearch.config import config_tree

            run_dir.write_config(config_tree(cfg))
        dataset = load_dataset(cfg.dataset, data_dir=settings["data_dir"], cache_dir=settings["cache_dir"])
        run_training(cfg, dataset, run_dir, threads=settings["threads"], evaluate_test=False)
    done = json.loads(run_dir.results_path.read_text())
    epochs = sum(stage["epochs_run"] for stage in done["stages"].values())
    return [f"sampler.pretrained_from={run_dir.path.resolve()}"], epochs


def pretraining_overrides(base: Sequence[str]) -> list[str]:
    """The overrides of the shared stage 1: the study's, with RNS as the sampler and the ICPNS pipeline's
    ``sampler.pretrain_epochs`` (when set) as ``trainer.epochs``; the other ``sampler.*`` keys belong to
    ICPNS and are dropped."""
    out, epochs = [], None
    for text in base:
        key, _, value = text.partition("=")
        key = key.lstrip("+")
        if key == "sampler.pretrain_epochs":
            epochs = value
        elif key != "sampler" and not key.startswith("sampler."):
            out.append(text)
    out.append("sampler=rns")
    if epochs not in (None, "", "null", "None"):
        out.append(f"trainer.epochs={epochs}")
    return out


def _search(study: Study, sampler: str, fixed: list[str], settings: dict, concurrency: int, report) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    name = f"search-{sampler}"
    metric = _metric_key(study)
    space = study.search.space(sampler)
    param_space: dict[str, Any] = {"_base": study.base, "_sampler": sampler, "_fixed": fixed}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                                    {"cpu": settings["threads"]})
    path = study.tune_dir / name
    callbacks = [mlflow_callback(study.tracking_uri, study.experiment, study.path.name, "search", settings),
                 TrialsRunning(study.path.name)]
    if tune.Tuner.can_restore(str(path)):
        report(f"[{sampler}] resuming the search in {path}")
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        report(f"[{sampler}] searching {', '.join(space) or '(no parameters)'}: "
               f"{study.search.options.num_samples} trials, {concurrency} at a time")
        if study.search.options.algorithm == "grid":
            param_space.update({k: tune.grid_search(list(d.grid)) for k, d in space.items()})
            search_alg, num_samples = None, 1
            if any(not d.grid for d in space.values()):
                raise ConfigError("search.algorithm=grid needs grid values for every dimension")
        else:
            param_space.update({k: d.to_tune() for k, d in space.items()})
            search_alg = _optuna(study, metric) if space else None
            num_samples = study.search.options.num_samples
        scheduler = None
        if study.search.options.scheduler == "asha":
            scheduler = ASHAScheduler(time_attr="stage_epochs", max_t=_max_epochs(study, sampler, fixed),
                                      grace_period=study.search.options.grace_period,
                                      reduction_factor=study.search.options.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(metric=metric, mode="max", search_alg=search_alg, scheduler=scheduler,
                                        num_samples=num_samples, max_concurrent_trials=concurrency,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=str(study.tune_dir.resolve()), verbose=0,
                                      callbacks=callbacks),
        )
    grid = tuner.fit()
    return _best_trial(grid, metric, space, sampler, fixed)


def _trial_dirname(trial) -> str:
    return f"trial-{trial.trial_id}"


def _optuna(study: Study, metric: str):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = study.search.options
    sampler = optuna.samplers.TPESampler(seed=options.seed, constant_liar=True,
                                         n_startup_trials=options.startup_trials)
    return OptunaSearch(metric=metric, mode="max", sampler=sampler)


def tpe_startup_note(options: SearchOptions) -> str | None:
    """A warning when TPE never leaves its random start-up: its first ``startup_trials`` suggestions are
    seeded random draws, so with no more trials than that the search is a random search (the same draws
    for every sampler and backbone of a study that share a space and a seed)."""
    if options.algorithm != "optuna" or options.num_samples > options.startup_trials:
        return None
    return (f"note: {options.num_samples} trial(s) <= TPE's {options.startup_trials} random start-up "
            f"trials, so this search is a seeded random search; raise search.num_samples or lower "
            f"search.startup_trials for TPE to use the results")


def _max_epochs(study: Study, sampler: str, fixed: list[str]) -> int:
    """ASHA's ``max_t``: the most epochs a trial runs in its output stage (ICPNS: fine-tuning)."""
    cfg = build_run_config(resolve([*study.base, f"sampler={sampler}", *fixed]))
    epochs = cfg.trainer.epochs
    if sampler == "icpns":
        return max(1, cfg.sampler.params.get("finetune_epochs") or epochs)
    return max(1, epochs)


def _best_trial(grid, metric: str, space: Mapping[str, Dimension], sampler: str, fixed: list[str]) -> dict:
    """The trial with the highest validation value it reached in its pipeline's output stage (read from
    each trial's own ``metrics.jsonl``, ASHA-stopped trials included) and the compute the search used
    (trial-epochs).

    Only the output stage counts: it holds the model a run returns. ICPNS's pre-training reports
    validation too (ASHA ranks trials on it while they pre-train), but its best epoch is an RNS model; a
    trial stopped before fine-tuning produced no ICPNS model and cannot be selected.
    """
    from raysearch.train.pipeline import pipeline_of

    name = metric.removeprefix(METRIC_PREFIX)
    stage = pipeline_of(sampler).output_stage
    best, trial_epochs, trials, errors = None, 0, [], []
    for result in grid:
        records = RunDir(Path(result.path) / "run", writable=False).read_metrics()
        values = [r["valid"][name] for r in records
                  if r.get("valid") and name in r["valid"] and r.get("stage") == stage]
        trial_epochs += len(records)
        if result.error is not None:
            errors.append(f"{Path(result.path).name}: {result.error}")
        # every trial is listed; one without a validation in the output stage has best None
        entry = {"params": {k: _plain(result.config[k]) for k in space},
                 "best": float(max(values)) if values else None, "epochs": len(records), "path": str(result.path)}
        trials.append(entry)
        if values and (best is None or entry["best"] > best["best"]):
            best = entry
    if best is None:
        detail = "; ".join(errors[:3]) or f"no trial reported a validation in its {stage!r} stage"
        raise ConfigError(f"search for {sampler!r}: no trial reached {metric!r} ({detail})")
    return {"sampler": sampler, "fixed": fixed, "best": best, "trials": trials, "trial_epochs": trial_epochs,
            "errors": errors}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, (np.integer, np.floating)) else value


def _final_runs(study: Study, selections: dict, settings: dict, concurrency: int, report) -> list[dict]:
    """Re-train each sampler's selection on the final seeds; these runs alone evaluate test (once each)."""
    from ray import tune

    base_seed = build_run_config(resolve(study.base)).trainer.seed
    seeds = [base_seed + i for i in range(study.search.options.final_seeds)]
    configs = [{"_base": study.base, "_sampler": sampler, "_final": True,
                "_fixed": [*sel["fixed"], f"trainer.seed={seed}"], **sel["best"]["params"]}
               for sampler, sel in selections.items() for seed in seeds]
    settings = {**settings, "final_configs": configs}
    path = study.tune_dir / "final"
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                                    {"cpu": settings["threads"]})
    callbacks = [mlflow_callback(study.tracking_uri, study.experiment, study.path.name, "final", settings),
                 TrialsRunning(study.path.name)]
    report(f"final: the selected configuration of each sampler on seeds {seeds} (test evaluated once per run)")
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"_final_index": tune.grid_search(list(range(len(configs))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name="final", storage_path=str(study.tune_dir.resolve()), verbose=0,
                                      callbacks=callbacks),
        )
    grid = tuner.fit()
    runs = []
    for result in grid:
        if result.error is not None or not result.metrics:
            raise ConfigError(f"a final run failed: {result.error}")
        config = configs[result.config["_final_index"]]
        runs.append({"sampler": config["_sampler"], "metrics": result.metrics, "path": str(result.path)})
    return runs


def _summarise(study: Study, selections: dict, finals: list[dict]) -> dict:
    metric = _metric_key(study)
    rows = []
    for sampler, sel in selections.items():
        runs = [r["metrics"] for r in finals if r["sampler"] == sampler]
        row = {"sampler": sampler, "search_best_valid": sel["best"]["best"], "params": sel["best"]["params"],
               "trials": len(sel["trials"]), "trial_epochs": sel["trial_epochs"], "final_runs": len(runs)}
        for key in sorted({k for m in runs for k in m if k.startswith(("test/", METRIC_PREFIX))}):
            values = np.array([m[key] for m in runs if key in m], dtype=np.float64)
            row[f"{key} mean"] = float(values.mean())
            row[f"{key} std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        rows.append(row)
    summary = {"study": study.path.name, "metric": metric, "base": study.base,
               "mlflow": {"tracking_uri": study.tracking_uri, "experiment": study.experiment},
               "rows": rows, "significance": _significance(finals, metric.removeprefix(METRIC_PREFIX)),
               "trials": {s: sel["trials"] for s, sel in selections.items()}}
    write_json_atomic(study.path / "summary.json", summary)
    keys = ["sampler", "search_best_valid", "params", "trials", "trial_epochs", "final_runs"]
    keys += sorted({k for r in rows for k in r} - set(keys))
    with (study.path / "summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    return summary


def _significance(finals: list[dict], metric: str) -> list[dict]:
    """ICPNS and GDNS (when in the study) against the best other sampler: paired tests over test users on
    the selection metric, each sampler's per-user values averaged over its final seeds."""
    from raysearch.evaluation import PER_USER_FILE, load_per_user
    from raysearch.evaluation.significance import paper_samplers_against_best

    per_run: dict[str, list] = {}
    for run in finals:
        path = Path(run["path"]) / "run" / PER_USER_FILE
        if not path.exists():  # a run from before per-user values were kept
            return []
        users, values = load_per_user(path)
        per_run.setdefault(run["sampler"], []).append((users, values[metric]))
    return [test.to_dict() for test in paper_samplers_against_best(per_run, "test/" + metric)]


def format_summary(summary: dict) -> str:
    lines = [f"study {summary['study']}  (selection on {summary['metric']}; test on the selected runs only)"]
    for row in summary["rows"]:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in row["params"].items()) or "-"
        selection = "test/" + summary["metric"].removeprefix(METRIC_PREFIX)
        tests = sorted((k.removesuffix(" mean") for k in row if k.startswith("test/") and k.endswith(" mean")),
                       key=lambda k: (k != selection, not k.startswith(("test/recall", "test/ndcg")), k))
        shown = "  ".join(f"{k} {row[k + ' mean']:.4f}±{row[k + ' std']:.4f}" for k in tests[:4])
        lines.append(f"  {row['sampler']:<8} valid {row['search_best_valid']:.4f}  {params}")
        lines.append(f"  {'':<8} {row['final_runs']} final run(s): {shown}  "
                     f"({row['trials']} trials, {row['trial_epochs']} trial-epochs)")
    for test in summary.get("significance", []):
        lines.append(f"  {test['b']} vs {test['a']} (best other) on {test['metric']}: "
                     f"{test['mean_b']:.4f} vs {test['mean_a']:.4f}, diff {test['diff']:+.4f} "
                     f"(95% CI {test['ci95'][0]:+.4f} to {test['ci95'][1]:+.4f}), paired t p = {test['p_t']:.3g}, "
                     f"Wilcoxon p = {test['p_wilcoxon']:.3g}, {test['n_users']} users")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else str(value)
