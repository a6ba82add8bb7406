"""Search spaces: a study file (``conf/search/NAME.yaml``), its options and its searched dimensions."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysearch.config import from_mapping, load_group, require
from raysearch.errors import ConfigError

AUTO_GRACE_DIVISOR = 4  # search.grace_period=null: a quarter of the trial's epochs
METRIC_PREFIX = "valid/"  # trials report validation metrics as valid/NAME (the selection metric among them)


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
    # ASHA: epochs of the output stage every trial gets before it may be stopped; None (the default): a
    # quarter of the stage's epochs (``grace_for``), so that a slow learning rate is not judged on its
    # first epochs (a fixed short grace stopped every slow trial: RESULTS.md 1f, BENCHMARKS.md)
    grace_period: int | None = None
    reduction_factor: float = 2.0  # ASHA: keep the top 1/rf at each rung
    final_seeds: int = 1  # re-train the selected configuration of each sampler on this many seeds
    seed: int = 0  # the search's own seed (Optuna's TPE)
    startup_trials: int = 10  # TPE: trials drawn at random before TPE models the results (Optuna's default)
    # TPE: model the searched keys jointly (Optuna's multivariate TPE) rather than one by one; it finds
    # corners where two keys matter together (a learning rate and an L2 weight)
    multivariate: bool = False
    # a pipeline with a shared first stage (ICPNS's pre-training): run it once for all trials when
    # every searched key leaves that stage unchanged
    share_pretraining: bool = True
    only: tuple[str, ...] = ()  # search only these of the file's samplers (e.g. to redo one); () = all
    # end a sampler's search once its trials together have trained this many epochs (all stages; a shared
    # pre-training not counted), whatever num_samples says: the same compute for every sampler
    # (raysearch/tune/budget.py); None: num_samples trials
    max_trial_epochs: int | None = None

    def __post_init__(self) -> None:
        require(self.num_samples >= 1, "search.num_samples", "must be >= 1")
        require(self.max_concurrent is None or self.max_concurrent >= 1, "search.max_concurrent", "must be >= 1")
        require(self.algorithm in ("optuna", "grid"), "search.algorithm", "must be optuna or grid")
        require(self.scheduler in ("asha", "none"), "search.scheduler", "must be asha or none")
        require(self.grace_period is None or self.grace_period >= 1, "search.grace_period",
                "must be >= 1 (or null: a quarter of the trial's epochs)")
        require(self.reduction_factor > 1, "search.reduction_factor", "must be > 1")
        require(self.final_seeds >= 1, "search.final_seeds", "must be >= 1")
        require(self.startup_trials >= 1, "search.startup_trials", "must be >= 1")
        require(self.max_trial_epochs is None or self.max_trial_epochs >= 1, "search.max_trial_epochs",
                "must be >= 1 (or null: no budget beyond search.num_samples)")


    def budget(self, trials: int, max_epochs: int) -> str:
        """The search budget of one sampler in words, e.g. ``optuna (TPE), 8 trials, ASHA grace 5 of 20
        epochs, reduction 2, 3 final seeds``."""
        algorithm = "grid" if self.algorithm == "grid" else "optuna (TPE)"
        stopping = (f"ASHA grace {self.grace_for(max_epochs)} of {max_epochs} epochs, reduction {self.reduction_factor:g}"
                    if self.scheduler == "asha" else f"no early stopping, {max_epochs} epochs")
        seeds = f"{self.final_seeds} final seed{'s' if self.final_seeds != 1 else ''}"
        cap = f", at most {self.max_trial_epochs} trial-epochs" if self.max_trial_epochs is not None else ""
        return f"{algorithm}, {trials} trials{cap}, {stopping}, {seeds}"

    def grace_for(self, max_epochs: int) -> int:
        """ASHA's grace period for trials of at most ``max_epochs`` epochs: ``grace_period`` when set, else
        a quarter of ``max_epochs`` rounded up (at least 1)."""
        if self.grace_period is not None:
            return self.grace_period
        return max(1, -(-max_epochs // AUTO_GRACE_DIVISOR))


@dataclass(frozen=True)
class SearchConfig:
    """A study (``conf/search/NAME.yaml``): per sampler a space, a shared space, and the options."""

    name: str
    samplers: dict[str, dict[str, Dimension]]
    shared: dict[str, Dimension] = field(default_factory=dict)
    options: SearchOptions = field(default_factory=SearchOptions)

    def __post_init__(self) -> None:
        require(len(self.samplers) >= 1, "search.samplers",
                f"the study {self.name!r} has no sampler to search; list some under samplers: in "
                f"conf/search/{self.name}.yaml")

    def space(self, sampler: str) -> dict[str, Dimension]:
        return {**self.shared, **self.samplers[sampler]}

    def trials(self, sampler: str) -> int:
        """The trials of one sampler's search: the grid's size (``search.algorithm=grid``), else
        ``search.num_samples``."""
        if self.options.algorithm == "grid":
            return math.prod(len(d.grid) for d in self.space(sampler).values())
        return self.options.num_samples

    def check_budget(self, max_epochs: Callable[[str], int]) -> None:
        """Refuse, before anything runs, a search that cannot do what it says (one ``ConfigError`` line
        saying what to change). ``max_epochs(sampler)``: the epochs of a trial's output stage (ASHA's
        ``max_t``). With ``search.scheduler=asha`` the budget is too small for ASHA's rungs when

        - the grace period (``search.grace_period``, or its automatic value, a quarter of ``max_t`` rounded
          up, at least 1) is not below ``max_t``: the first rung comes at a trial's last epoch, so ASHA
          never stops a trial;
        - a sampler has fewer trials than ``search.reduction_factor``: ASHA keeps the best 1/rf of the
          trials at each rung, which needs at least rf trials to keep one (a lone trial is never stopped).

        A grid search also needs grid values on every dimension."""
        options = self.options
        for sampler in self.samplers:
            if options.algorithm == "grid":
                bare = [k for k, d in self.space(sampler).items() if not d.grid]
                if bare:
                    raise ConfigError(f"search.algorithm=grid: {sampler}'s {bare[0]} has no grid values; give it "
                                      f"grid: [...] in conf/search/{self.name}.yaml or use search.algorithm=optuna")
            if options.scheduler != "asha":
                continue
            max_t = max_epochs(sampler)
            grace = options.grace_for(max_t)
            if grace >= max_t:
                given = "search.grace_period" if options.grace_period is not None else "the automatic grace period"
                raise ConfigError(
                    f"search.grace_period: {sampler}'s trials run {max_t} epoch(s) and {given} is {grace}, so "
                    f"ASHA would never stop a trial; set search.grace_period below {max_t}, give the trials more "
                    f"epochs, or set search.scheduler=none")
            trials = self.trials(sampler)
            if trials < options.reduction_factor:
                need = math.ceil(options.reduction_factor)
                what = (f"the grid has {trials} combination(s)" if options.algorithm == "grid"
                        else f"search.num_samples={trials}")
                raise ConfigError(
                    f"search.num_samples: {what} for {sampler}, fewer than ASHA's reduction factor "
                    f"{options.reduction_factor:g} (it keeps the best 1/{options.reduction_factor:g} of the trials "
                    f"at each rung); search at least {need} trials, lower search.reduction_factor, or set "
                    f"search.scheduler=none")


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
                          f"(its samplers: {', '.join(samplers)}); name some of them, or drop search.only")
    if options.only:
        samplers = {s: space for s, space in samplers.items() if s in options.only}
    return SearchConfig(name=name, samplers=samplers, shared=shared, options=options)


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
