"""Search spaces: a study file (``conf/search/NAME.yaml``), its options and its searched dimensions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysearch.config import from_mapping, load_group, require
from raysearch.errors import ConfigError

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
    grace_period: int = 2  # ASHA: epochs every trial gets
    reduction_factor: float = 2.0  # ASHA: keep the top 1/rf at each rung
    final_seeds: int = 1  # re-train the selected configuration of each sampler on this many seeds
    seed: int = 0  # the search's own seed (Optuna's TPE)
    startup_trials: int = 10  # TPE: trials drawn at random before TPE models the results (Optuna's default)
    # a pipeline with a shared first stage (ICPNS's pre-training): run it once for all trials when
    # every searched key leaves that stage unchanged
    share_pretraining: bool = True
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
