"""The study: its directory, the search of each sampler (Ray Tune + Optuna/ASHA), the shared first stage
of a pipeline that has one, and the final runs of the selected configurations."""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raysearch.config import build_run_config, config_tree, expand_experiments, parse_override, resolve
from raysearch.errors import ConfigError, RunStateError
from raysearch.tracking import TAG_PREFIX
from raysearch.train.rundir import RunDir, read_json, write_json_atomic
from raysearch.tune.callbacks import TrialsRunning, mlflow_callback
from raysearch.tune.progress import TrialProgress, quiet_ray_and_mlflow
from raysearch.tune.selection import _best_trial, _metric_key, _summarise, format_summary
from raysearch.tune.space import SearchConfig, SearchOptions, Study, load_search
from raysearch.tune.trial import run_trial


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
    _validate_trials(search, base)  # every trial's config must resolve: fail now, not in a worker
    # a search ASHA cannot use fails now too, before the study directory exists
    search.check_budget(lambda sampler: _output_epochs(base, sampler, []))
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
    meta = read_json(meta_path)
    types = {"search": str, "search_overrides": dict, "base": list, "tracking_uri": str, "experiment": str}
    for key, kind in types.items():
        if key not in meta:
            raise RunStateError(f"not a raysearch study file (no {key!r})", where=str(meta_path))
        if not isinstance(meta[key], kind) or (kind is list and not all(isinstance(o, str) for o in meta[key])):
            want = "a list of key=value strings" if kind is list else f"a {_JSON_KINDS[kind]}"
            raise RunStateError(f"{key!r} must be {want}, got {json.dumps(meta[key])[:80]}", where=str(meta_path))
    try:
        search = load_search(meta["search"], meta["search_overrides"])
        _validate_trials(search, meta["base"])
    except ConfigError as err:
        raise RunStateError(str(err), where=str(meta_path)) from None
    return Study(path, search, meta["base"], tracking_uri or meta["tracking_uri"], meta["experiment"])


FINAL_ATTEMPTS = 3  # experiments that final runs lost by a resumed one may take (see _final_runs)
_JSON_KINDS = {str: "string", dict: "JSON object", list: "JSON array"}


def _validate_trials(search: SearchConfig, base: Sequence[str]) -> None:
    """Every trial's configuration must resolve: the base overrides with each sampler, and each searched
    key with a value of its range (a typo in a search file fails now, not in a Ray worker)."""
    from raysearch.train.pipeline import validate_components

    for sampler in search.samplers:
        validate_components(build_run_config(resolve([*base, f"sampler={sampler}"])))
        for key, dim in search.space(sampler).items():
            value = dim.grid[0] if dim.grid else dim.values[0] if dim.values else (
                int(dim.low) if dim.kind == "int" else dim.low)
            validate_components(build_run_config(resolve([*base, f"sampler={sampler}",
                                                          f"{key}={json.dumps(value)}"])))


def _stamp() -> str:
    import datetime as dt

    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def run_study(study: Study, data_dir: str | None = None, cache_dir: str | None = None,
              report=print, verbose: bool = False) -> dict[str, Any]:
    """Search every sampler, re-train each selection on the final seeds (test once each), summarise.
    ``report`` gets the study's own lines (one per finished trial among them); ``verbose`` keeps Ray's,
    Tune's and MLflow's console output too."""
    study.search.check_budget(lambda sampler: _max_epochs(study, sampler, []))  # a resumed study's too
    import ray

    from raysearch.distributed.local_ray import init_ray
    from raysearch.tracking import ensure_experiment

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    if not verbose:
        quiet_ray_and_mlflow()
    init_ray()  # RAY_ADDRESS's cluster, else a fresh local one on loopback only
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
    report(f"report: {_write_report(study)}  (open it in a browser; it needs no network)")
    return summary


def _write_report(study: Study) -> Path:
    """The study's HTML report (``report.html`` in its directory), from what MLflow holds of it."""
    from raysearch.report import build_report

    return build_report(study.experiment, out=study.path / "report.html", tracking_uri=study.tracking_uri)


def _abs(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _shared_pretraining(study: Study, sampler: str, settings: dict, report) -> tuple[list[str], int]:
    """Run the sampler's shared first stage once (when its pipeline has one, the study's
    ``share_pretraining`` is on and every searched key is independent of that stage); returns the
    override that points trials at it and its epochs (counted once in the study's compute)."""
    from raysearch.train.pipeline import pipeline_of

    shared = pipeline_of(sampler).shared_first_stage
    if shared is None or not study.search.options.share_pretraining:
        return [], 0
    if not all(shared.independent(k) for k in study.search.space(sampler)):
        return [], 0
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import run_training

    run_dir = RunDir(study.path / "pretrain")
    span = None
    if not run_dir.results_path.exists():
        report(f"[{sampler}] running its first stage once, shared by every trial")
        cfg = build_run_config(resolve(shared.overrides(study.base)))
        if not run_dir.config_path.exists():
            run_dir.write_config(config_tree(cfg))
        start = _now_ms()
        dataset = load_dataset(cfg.dataset, data_dir=settings["data_dir"], cache_dir=settings["cache_dir"])
        run_training(cfg, dataset, run_dir, threads=settings["threads"], evaluate_test=False)
        span = (start, _now_ms())
    done = read_json(run_dir.results_path)
    epochs = sum(stage["epochs_run"] for stage in done["stages"].values())
    _track_pretraining(study, sampler, run_dir, done, span)
    return [f"{shared.source_key}={run_dir.path.resolve()}"], epochs


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _track_pretraining(study: Study, sampler: str, run_dir: RunDir, done: dict, span: tuple[int, int] | None) -> None:
    """The shared first stage as an MLflow run of its own (phase ``pretrain``), once per study and sampler,
    so that a report counts its compute with the sampler's. A stage trained before an interruption has no
    measured wall time here: its recorded epoch seconds stand in."""
    import mlflow

    from raysearch.tracking import track_run_dir

    client = mlflow.MlflowClient(study.tracking_uri)
    experiment = client.get_experiment_by_name(study.experiment)
    tags = {f"{TAG_PREFIX}study": study.path.name, f"{TAG_PREFIX}phase": "pretrain", f"{TAG_PREFIX}sampler": sampler,
            f"{TAG_PREFIX}selected": "false"}
    found = client.search_runs([experiment.experiment_id], filter_string=" and ".join(
        f"tags.`{k}` = '{v}'" for k, v in tags.items()), max_results=1)
    if found:
        return
    if span is None:
        end = _now_ms()
        seconds = sum(st["epochs_run"] * (st.get("epoch_seconds_mean") or 0.0) for st in done["stages"].values())
        span = (end - int(seconds * 1000), end)
    track_run_dir(run_dir.path, study.tracking_uri, study.experiment, extra_tags=tags, span_ms=span)


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
    grid = study.search.options.algorithm == "grid"
    total = math.prod(len(d.grid) for d in space.values()) if grid else study.search.options.num_samples
    max_t = _max_epochs(study, sampler, fixed)
    budget = {f"{TAG_PREFIX}search_budget": study.search.options.budget(total, max_t)}
    callbacks = [mlflow_callback(study.tracking_uri, study.experiment, study.path.name, "search", settings, budget),
                 TrialsRunning(study.path.name), TrialProgress(sampler, total, metric, list(space), report=report)]
    if grid:
        if any(not d.grid for d in space.values()):
            raise ConfigError("search.algorithm=grid needs grid values for every dimension")
        param_space.update({k: tune.grid_search(list(d.grid)) for k, d in space.items()})
    else:
        param_space.update({k: d.to_tune() for k, d in space.items()})

    def start():
        search_alg = None if grid or not space else _optuna(study, metric)
        scheduler = None
        if study.search.options.scheduler == "asha":
            scheduler = ASHAScheduler(time_attr="stage_epochs", max_t=max_t,
                                      grace_period=study.search.options.grace_for(max_t),
                                      reduction_factor=study.search.options.reduction_factor)
        return tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(metric=metric, mode="max", search_alg=search_alg, scheduler=scheduler,
                                        num_samples=1 if grid else study.search.options.num_samples,
                                        max_concurrent_trials=concurrency, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=str(study.tune_dir.resolve()), verbose=0,
                                      callbacks=callbacks, stop=_budget_stopper(study, path)),
        )

    if tune_state_saved(path):
        report(f"[{sampler}] resuming the search in {path}")
    else:
        report(f"[{sampler}] searching {', '.join(space) or '(no parameters)'}: "
               f"{total} trials, {concurrency} at a time")
    tuner = restore_or_start(path, trainable, start, param_space)
    results = tuner.fit()
    selection = _best_trial(results, metric, space, sampler, fixed)
    cap = study.search.options.max_trial_epochs
    if cap is not None and selection["trial_epochs"] >= cap:
        report(f"[{sampler}] the budget of {cap} trial-epochs is spent ({selection['trial_epochs']}): "
               f"{len(selection['trials'])} of {total} trials started")
    return selection


def restore_or_start(path: Path, trainable, start, param_space: dict[str, Any]):
    """The Tune experiment at ``path``: restored (unfinished and errored trials resumed) when Tune saved its
    state there, else ``start()``'s new ``Tuner``.

    ``param_space``: the one ``start`` gives its ``Tuner``, handed to the restore as well: Tune leaves it out
    of ``tuner.pkl`` and takes it again on restore (checking its keys against the original's).

    Tune writes its tuner when a ``Tuner`` is created but the experiment's state only once it runs, and it
    does not save the search space: an experiment interrupted in between (or while its tuner was being
    written) cannot be restored, only run again; so it starts afresh, and what it left is removed first
    (a trial directory from then would count in the search's budget)."""
    from ray import tune

    if tune_state_saved(path):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=param_space)
    if path.exists():
        shutil.rmtree(path)
    return start()


def tune_state_saved(path: Path) -> bool:
    """Whether Tune saved an experiment's state in ``path`` (it then can be resumed)."""
    from ray.tune.execution.tune_controller import TuneController

    return any(path.glob(TuneController.CKPT_FILE_TMPL.format("*")))


def _budget_stopper(study: Study, search_dir: Path):
    """``search.max_trial_epochs``'s stopper (None without a budget)."""
    if study.search.options.max_trial_epochs is None:
        return None
    from raysearch.tune.budget import TrialEpochBudget

    return TrialEpochBudget(study.search.options.max_trial_epochs, search_dir)


def _trial_dirname(trial) -> str:
    return f"trial-{trial.trial_id}"


def _optuna(study: Study, metric: str):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = study.search.options
    with warnings.catch_warnings():  # multivariate TPE is marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=options.seed, constant_liar=True,
                                             n_startup_trials=options.startup_trials,
                                             multivariate=options.multivariate)
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
    """ASHA's ``max_t``: the most epochs a trial runs in its pipeline's output stage."""
    return _output_epochs(study.base, sampler, fixed)


def _output_epochs(base: Sequence[str], sampler: str, fixed: list[str]) -> int:
    """The most epochs a trial of ``sampler`` on ``base`` runs in its pipeline's output stage."""
    from raysearch.train.pipeline import pipeline_of

    cfg = build_run_config(resolve([*base, f"sampler={sampler}", *fixed]))
    return max(1, pipeline_of(sampler).output_epochs(cfg))


def _final_runs(study: Study, selections: dict, settings: dict, concurrency: int, report) -> list[dict]:
    """Re-train each sampler's selection on the final seeds; these runs alone evaluate test (once each)."""
    from ray import tune

    base_seed = build_run_config(resolve(study.base)).trainer.seed
    seeds = [base_seed + i for i in range(study.search.options.final_seeds)]
    configs = [{"_base": study.base, "_sampler": sampler, "_final": True,
                "_fixed": [*sel["fixed"], f"trainer.seed={seed}"], **sel["best"]["params"]}
               for sampler, sel in selections.items() for seed in seeds]
    settings = {**settings, "final_configs": configs}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                                    {"cpu": settings["threads"]})
    def describe(config: dict[str, Any]) -> str:
        run = configs[config["_final_index"]]
        return f"{run['_sampler']} {run['_fixed'][-1].split('.', 1)[-1]}"

    callbacks = [mlflow_callback(study.tracking_uri, study.experiment, study.path.name, "final", settings),
                 TrialsRunning(study.path.name),
                 TrialProgress("final", len(configs), _metric_key(study), describe=describe, report=report)]
    report(f"final: the selected configuration of each sampler on seeds {seeds} (test evaluated once per run)")
    runs: dict[int, dict] = {}
    # Tune restores a grid experiment from snapshots of its trials and of its variant generator taken at
    # different moments, and a run created between the two is lost on resume; so the runs a restored
    # experiment lacks run in a next one ("final-2", ...), which a later resume restores in turn.
    for attempt in range(1, FINAL_ATTEMPTS + 1):
        pending = [i for i in range(len(configs)) if i not in runs]
        if not pending:
            break
        name = "final" if attempt == 1 else f"final-{attempt}"
        if attempt > 1:
            report(f"final: {len(pending)} run(s) missing from the resumed experiment, run in {name}")
        param_space = {"_final_index": tune.grid_search(pending)}

        def start(name: str = name, param_space: dict = param_space):
            return tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(name=name, storage_path=str(study.tune_dir.resolve()), verbose=0,
                                          callbacks=callbacks),
            )

        tuner = restore_or_start(study.tune_dir / name, trainable, start, param_space)
        for result in tuner.fit():
            if result.error is not None or not result.metrics:
                raise ConfigError(f"a final run failed: {result.error}")
            index = result.config["_final_index"]
            runs[index] = {"sampler": configs[index]["_sampler"], "metrics": result.metrics, "path": str(result.path)}
    if len(runs) < len(configs):
        raise RunStateError(f"final: {len(configs) - len(runs)} run(s) still missing after {FINAL_ATTEMPTS} "
                             f"experiments in {study.tune_dir}")
    return [runs[i] for i in sorted(runs)]
