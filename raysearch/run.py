"""``raysearch train``: resolve the configuration, load the data, run the pipeline with what the run is
reported to (MLflow when ``tracking.enabled``; Ray Train workers when ``trainer.workers > 1``).

This module sits above the core: it attaches tracking and distribution to ``run_training`` from outside.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raysearch.config import build_run_config, config_tree, resolve
from raysearch.errors import ConfigError, RunStateError
from raysearch.train.rundir import RunDir, default_run_dir


def train(overrides: Sequence[str] = (), out: str | Path | None = None, resume: str | Path | None = None,
          data_dir: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """What ``raysearch train`` does: resolve the config, load the data, run the pipeline, return results.

    ``resume``: a run directory of an interrupted run; its saved config is used (no overrides allowed)
    and training continues from the last checkpoint, giving the same result as an uninterrupted run.
    """
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import busy_cpus_warning, check_run, run_training, validate_components

    if resume is not None:
        if overrides:
            raise ConfigError("--resume continues a run with its saved configuration; drop the overrides "
                              f"({', '.join(overrides)})")
        # Read-only until every check has passed: a refused resume leaves the directory as it was.
        run_dir = RunDir(resume, writable=False)
        if not run_dir.path.is_dir():
            raise ConfigError(f"--resume {resume}: no such directory")
        if not run_dir.config_path.exists():
            raise ConfigError(f"--resume {resume}: no config.yaml there (not a raysearch run directory)")
        if run_dir.results_path.exists():
            raise ConfigError(f"--resume {resume}: this run has finished already (results.json exists)")
        try:
            cfg = build_run_config(run_dir.read_config())
            validate_components(cfg)
        except ConfigError as err:
            raise RunStateError(str(err), where=str(run_dir.config_path)) from None
        run_dir.check_resumable()
    else:
        cfg = build_run_config(resolve(overrides))
        validate_components(cfg)
        if cfg.tracking.enabled:
            # Resolve the store here: workers run in other directories.
            from raysearch.tracking import resolve_tracking_uri

            cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(
                cfg.tracking, uri=resolve_tracking_uri(cfg.tracking.uri)))
        path = Path(out) if out is not None else default_run_dir(cfg.dataset.name, cfg.model.name, cfg.sampler.name)
        if (path / "config.yaml").exists():
            state = "a finished run" if (path / "results.json").exists() else "an unfinished run (--resume it)"
            raise ConfigError(f"--out {path}: the directory holds {state}; choose another --out")
    # Load (and so validate) the data, and check what needs it, before the run directory is written: a bad
    # file, a split without validation users or a bad pretrained_from source leaves nothing behind.
    dataset = load_dataset(cfg.dataset, data_dir=data_dir, cache_dir=cache_dir)
    check_run(cfg, dataset)
    if warning := busy_cpus_warning(cfg.trainer.threads, cfg.trainer.shared_by):  # a run that will start
        print(f"raysearch: warning: {warning}", file=sys.stderr)
    if resume is None:
        created = not path.exists()
        run_dir = RunDir(path)
        run_dir.write_config(config_tree(cfg))
    else:
        run_dir = RunDir(resume)
    try:
        if cfg.trainer.workers > 1:
            from raysearch.distributed.trainer import train_distributed

            return train_distributed(cfg, run_dir, data_dir=data_dir, cache_dir=cache_dir)
        from raysearch.tracking import tracking_callbacks

        return run_training(cfg, dataset, run_dir, callbacks=tracking_callbacks(cfg, dataset, run_dir.path.name))
    except BaseException:
        if resume is None:
            discard_unstarted(run_dir, created)
        raise


def discard_unstarted(run_dir: RunDir, created: bool) -> None:
    """A fresh run that failed before recording its first epoch (a set-up error: a model or sampler that
    refuses the data, a tracking store that cannot be opened) leaves no run directory behind: the directory
    when this run created it, else only the ``config.yaml`` it wrote. A run with an epoch recorded stays (it
    can be resumed); an earlier run's directory is never reached (``--out`` refuses one)."""
    import shutil

    metrics = run_dir.metrics_path
    stages = run_dir.path / "stages"
    if (metrics.exists() and metrics.stat().st_size > 0) or (stages.exists() and any(stages.rglob("*.pt"))):
        return
    if created:
        shutil.rmtree(run_dir.path, ignore_errors=True)
    else:
        run_dir.config_path.unlink(missing_ok=True)
