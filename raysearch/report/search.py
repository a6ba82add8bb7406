"""The search trials of a study as a table, and Optuna's parameter importances over them.

A study's search trials are the MLflow runs tagged ``raysearch.phase=search``; per study and sampler,
each trial is its searched parameter values (the parameters that vary between the sampler's trials,
read back from the run's MLflow parameters) and its best validation value (the maximum of its
selection metric's history, as the study itself selects; ASHA-stopped trials included).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raysearch.report.runs import TrackedRun

MIN_IMPORTANCE_TRIALS = 5  # fANOVA on fewer trials says more about the forest than about the space
LOG_SPAN = 100.0  # a positive numeric parameter spanning this ratio is treated as log-scaled


@dataclass(frozen=True)
class Trials:
    """Search trials of one sampler in one study.

    ``params``: the varying parameter keys (``sampler.alpha``, ...), in name order. ``rows``: per trial
    ``{run_id, name, order (0-based, by start time), value (best validation), epochs, <param>: value}``
    with numeric parameters as int / float.
    """

    study: str
    sampler: str
    metric: str  # selection metric, e.g. ndcg@10
    params: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]
    unreported: int = 0  # trials without a validation value (failed before their first epoch)

    def values(self, key: str) -> list[Any]:
        return [row[key] for row in self.rows]

    def numeric(self, key: str) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values(key))


def search_trials(runs: Iterable[TrackedRun]) -> list[Trials]:
    """Per (study, sampler), the search trials that reported at least one validation value (and how many
    did not)."""
    runs = list(runs)
    groups: dict[tuple[str, str], list[TrackedRun]] = {}
    unreported: dict[tuple[str, str], int] = {}
    for run in runs:
        if run.phase == "search":
            key = (run.study, run.sampler)
            if math.isnan(run.best_valid):
                unreported[key] = unreported.get(key, 0) + 1
            else:
                groups.setdefault(key, []).append(run)
    out = []
    for study, sampler in sorted(set(groups) | set(unreported)):
        group = groups.get((study, sampler), [])
        group.sort(key=lambda r: (r.start_time, r.run_id))
        keys = sorted({k for r in group for k in r.params})
        varying = tuple(k for k in keys if len({r.params.get(k) for r in group}) > 1)
        typed = {k: _typed([r.params.get(k) for r in group]) for k in varying}
        rows = tuple({"run_id": r.run_id, "name": r.name, "order": i, "value": r.best_valid,
                      "epochs": len(r.history), **{k: typed[k][i] for k in varying}}
                     for i, r in enumerate(group))
        names = [r.valid_metric for r in group] or [r.valid_metric for r in runs if r.study == study]
        metric = max(sorted(set(names)), key=names.count)
        out.append(Trials(study, sampler, metric, varying, rows, unreported.get((study, sampler), 0)))
    return out


def _typed(texts: list[str | None]) -> list[Any]:
    """MLflow keeps parameters as text: all-int columns become int, all-number columns float."""
    for kind in (int, float):
        try:
            return [kind(t) for t in texts]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return [str(t) for t in texts]


def importance_note(trials: Trials) -> str | None:
    """Why no importances can be computed for ``trials`` (None when they can)."""
    if len(trials.params) < 2:
        return (f"{trials.sampler}: parameter importances need at least 2 searched parameters "
                f"({len(trials.params)} varied: {', '.join(trials.params) or 'none'})")
    if len(trials.rows) < MIN_IMPORTANCE_TRIALS:
        return (f"{trials.sampler}: parameter importances need at least {MIN_IMPORTANCE_TRIALS} trials "
                f"(this search has {len(trials.rows)})")
    if len(set(trials.values("value"))) == 1:
        return f"{trials.sampler}: no parameter importances (every trial reached the same validation value)"
    return None


def param_importances(trials: Trials, seed: int = 0) -> dict[str, float]:
    """Optuna's fANOVA importances (summing to 1, most important first) of ``trials``' parameters for
    its best validation value, from an in-memory Optuna study holding one finished trial per run."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.importance import FanovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions: dict[str, Any] = {}
    for key in trials.params:
        values = trials.values(key)
        if trials.numeric(key):
            low, high = min(values), max(values)
            log = low > 0 and high / low >= LOG_SPAN
            kind = IntDistribution if all(isinstance(v, int) for v in values) else FloatDistribution
            distributions[key] = kind(low, high, log=log)
        else:
            distributions[key] = CategoricalDistribution(sorted(set(values)))
    study = optuna.create_study(direction="maximize")
    for row in trials.rows:
        study.add_trial(optuna.trial.create_trial(
            params={k: row[k] for k in trials.params}, distributions=distributions, value=float(row["value"])))
    return dict(optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed)))
