"""Typed, frozen configuration built from YAML groups under ``conf/`` plus ``key=value`` overrides.

A run's configuration is a tree of frozen dataclasses (``RunConfig``). It is resolved in three steps:

1. each group (``dataset``, ``model``, ``sampler``, ``trainer``, ``eval``, ``tracking``) starts from its
   default YAML file, or the one named on the command line (``dataset=ml-100k`` reads
   ``conf/dataset/ml-100k.yaml``);
2. dotted overrides (``trainer.lr=0.01``) are applied, values parsed as YAML scalars/lists;
3. the merged mapping is converted into dataclasses: an unknown key or a value of the wrong type is a
   ``ConfigError`` naming the dotted key; range checks live in each dataclass's ``__post_init__``.

Model and sampler groups are open-ended (each backbone and sampler has its own parameters); their
parameter names are validated by the component's own registry when it is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from raysearch.errors import ConfigError

GROUPS = ("dataset", "model", "sampler", "trainer", "eval", "tracking")
DEFAULT_GROUP_CHOICE = {
    "dataset": "synthetic",
    "model": "mf",
    "sampler": "rns",
    "trainer": "default",
    "eval": "default",
    "tracking": "default",
}


def conf_dir() -> Path:
    """The directory holding the YAML groups (``conf/`` of the source tree, shipped as ``raysearch.conf``)."""
    return Path(str(importlib.resources.files("raysearch.conf")))


def unknown_key_message(dotted: str, known: Sequence[str], what: str = "key") -> str:
    """``unknown key 'trainer.lrr' (known: epochs, ..., lr, ...); did you mean 'trainer.lr'?``: the list is
    the names valid where ``dotted`` was given; the suggestion, the closest of them (when one is close)."""
    prefix, _, name = dotted.rpartition(".")
    message = f"unknown {what} {dotted!r} (known: {', '.join(known) or 'none'})"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {(f'{prefix}.' if prefix else '') + close[0]!r}?"
    return message


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError`` for ``key`` unless ``condition`` holds (for ``__post_init__`` range checks)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


# --------------------------------------------------------------------------- generic conversion
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise ``ConfigError`` naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}")
        return from_mapping(tp, value, key)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return types.MappingProxyType({str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()})
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {key}")


def from_mapping(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ``ConfigError``."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(unknown_key_message(dotted, names))
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        msg = str(err)
        raise ConfigError(f"{prefix}.{msg}" if prefix and not msg.startswith(prefix) else msg) from None


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists/scalars (for YAML/JSON output and hashing)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [to_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- the groups
@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic generator (``raysearch.data.synthetic``)."""

    n_users: int = 600
    n_items: int = 400
    n_communities: int = 4
    mean_exposures: float = 60.0  # items shown to a user, on average
    zipf_exponent: float = 1.0  # community popularity ~ rank^-exponent
    preference_dim: int = 8
    like_rate: float = 0.35  # share of exposed items a user likes, on average
    false_negative_rate: float = 0.2  # share of liked items left unobserved (known false negatives)
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_users >= 2, "synthetic.n_users", "must be >= 2")
        require(self.n_items >= 2, "synthetic.n_items", "must be >= 2")
        require(1 <= self.n_communities <= self.n_users, "synthetic.n_communities", "must be in [1, n_users]")
        require(self.mean_exposures > 0, "synthetic.mean_exposures", "must be > 0")
        require(self.zipf_exponent >= 0, "synthetic.zipf_exponent", "must be >= 0")
        require(self.preference_dim >= 1, "synthetic.preference_dim", "must be >= 1")
        require(0 < self.like_rate <= 1, "synthetic.like_rate", "must be in (0, 1]")
        require(0 <= self.false_negative_rate < 1, "synthetic.false_negative_rate", "must be in [0, 1)")


SplitName = Literal["given", "ratio", "loo", "temporal"]


@dataclass(frozen=True)
class DatasetConfig:
    """Where the data is, how to read it, how to preprocess and split it (``conf/dataset/*.yaml``)."""

    name: str = "synthetic"
    format: str = "synthetic"  # lightgcn | movielens | ncf | npy | csv | parquet | recbole | synthetic
    path: str | None = None  # file or directory; relative paths resolve against the data directory
    files: dict[str, str] = field(default_factory=dict)  # part (all/train/valid/test/negative) -> file
    pool: bool = False  # pool all given parts into one table, then split anew
    # reader options (csv / parquet / movielens)
    sep: str | None = None  # csv delimiter; None sniffs tab, comma, '::', whitespace
    header: bool = True  # csv: the first line names the columns
    user_col: str = "user_id"  # column name, or 0-based position when header is false
    item_col: str = "item_id"
    rating_col: str | None = None
    time_col: str | None = None
    # preprocessing
    rating_threshold: float | None = None  # keep interactions with rating >= threshold
    user_core: int = 0  # iterated k-core: every user keeps >= user_core interactions
    item_core: int = 0  # ... and every item >= item_core
    dedupe: bool = True
    # split
    split: SplitName = "given"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # ratio / temporal: train, valid, test shares
    valid_share: float = 0.1  # given splits without validation: share of each user's train carved out
    # given splits: valid/test users absent from train stop with an error, or their rows are dropped
    # (counted in the provenance; Last.fm as shipped with LightGCN has 2 such test users)
    cold_users: Literal["error", "drop"] = "error"
    num_negatives: int = 0  # sampled negatives per user for the sampled protocol (loo: 100)
    share_negatives: bool = True  # validation and test use the same negatives (as SRNS)
    split_seed: int = 2026
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # side information for the knowledge samplers (raysearch.data.side_info); a relative file is looked up
    # in the dataset's folder, then the current directory; it does not change the dataset's fingerprint
    item_attributes: str | None = None  # u.item (ML-100K genres) or item<TAB>attr[|attr...] lines
    item_attributes_format: Literal["auto", "movielens", "tsv"] = "auto"  # auto: movielens for u.item, else tsv
    social_network: str | None = None  # user<TAB>friend lines (LastFM's trustnetwork.txt), made symmetric

    def __post_init__(self) -> None:
        require(self.user_core >= 0, "dataset.user_core", "must be >= 0")
        require(self.item_core >= 0, "dataset.item_core", "must be >= 0")
        require(0 <= self.valid_share < 1, "dataset.valid_share", "must be in [0, 1)")
        require(self.num_negatives >= 0, "dataset.num_negatives", "must be >= 0")
        require(
            all(r >= 0 for r in self.ratios) and abs(sum(self.ratios) - 1) < 1e-9 and self.ratios[0] > 0,
            "dataset.ratios",
            f"must be three non-negative shares summing to 1 with train > 0, got {list(self.ratios)}",
        )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (``conf/eval/default.yaml``)."""

    protocol: Literal["auto", "full", "sampled"] = "auto"  # auto: sampled if the dataset has negatives
    ks: tuple[int, ...] = (10, 20)
    metrics: tuple[str, ...] = ("recall", "ndcg", "mrr", "hit", "precision")
    tie: Literal["pessimistic", "optimistic"] = "pessimistic"
    batch_users: int = 2048
    bands: tuple[float, float, float] = (0.2, 0.3, 0.5)  # head / mid / tail shares of items by train popularity

    def __post_init__(self) -> None:
        require(len(self.ks) > 0 and all(k >= 1 for k in self.ks), "eval.ks", "must be a non-empty list of K >= 1")
        require(self.batch_users >= 1, "eval.batch_users", "must be >= 1")
        require(
            all(b > 0 for b in self.bands) and abs(sum(self.bands) - 1) < 1e-9,
            "eval.bands",
            "must be three positive shares summing to 1",
        )


@dataclass(frozen=True)
class ComponentConfig:
    """A named component (model or sampler) and its parameters, validated by the component's registry."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackingConfig:
    """Where results go besides the run directory (MLflow)."""

    uri: str | None = None  # None: sqlite:///<cwd>/mlflow.db
    experiment: str = "raysearch"
    enabled: bool = False


@dataclass(frozen=True)
class TrainerConfig:
    """The training loop (``conf/trainer/default.yaml``)."""

    epochs: int = 50
    batch_size: int = 2048
    lr: float = 1e-3
    optimizer: Literal["adam", "adagrad", "sgd", "sparse_adam", "rowwise_adagrad"] = "adam"  # raysearch.train.optimisers
    reg: float = 1e-4  # L2 on the batch's layer-0 embeddings
    loss: str = "auto"  # a name in raysearch.losses.LOSSES, or auto: group_hinge for GDNS, else bpr
    margin: float = 1.0
    temperature: float = 1.0  # softmax: logits are scores / temperature
    logq_correction: bool = False  # softmax: subtract log q(j | u) from each negative's logit
    num_negatives: int = 1
    # Static samplers: draw the epoch's negatives ahead in a few large calls keyed by the global row
    # (raysearch/train/epoch_draws.py). Off by default: its draws come from other streams than per-batch
    # draws, so a seed's published results would move.
    epoch_draws: bool = False
    seed: int = 2026
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = 0  # torch intra-op threads; 0: the CPUs available to this process, divided by shared_by
    shared_by: int = 1  # runs sharing this machine's CPUs (threads=0 gives each an even share)
    keep_freed_memory: bool = True  # glibc: reuse freed buffers instead of page-faulting new ones (raysearch/heap.py)
    workers: int = 1  # > 1: Ray Train workers with row-sharded embeddings
    max_failures: int = 0  # Ray Train: worker-group restarts from the latest checkpoint before giving up
    eval_every: int = 1
    patience: int = 10  # evaluations without improvement before stopping
    valid_metric: str = "ndcg@10"
    progress: bool | None = None  # progress bars; None: only when stderr is a terminal
    fail_after_epoch: int | None = None  # fault-injection for tests: fail once after this epoch's checkpoint

    def __post_init__(self) -> None:
        require(self.epochs >= 0, "trainer.epochs", "must be >= 0")
        require(self.batch_size >= 1, "trainer.batch_size", "must be >= 1")
        require(self.lr > 0, "trainer.lr", "must be > 0")
        require(self.reg >= 0, "trainer.reg", f"must be >= 0, got {self.reg}")
        require(self.num_negatives >= 1, "trainer.num_negatives", "must be >= 1")
        require(self.temperature > 0, "trainer.temperature", f"must be > 0, got {self.temperature}")
        require(self.threads >= 0, "trainer.threads", "must be >= 0")
        require(self.shared_by >= 1, "trainer.shared_by", "must be >= 1 (the runs sharing this machine's CPUs)")
        require(self.workers >= 1, "trainer.workers", "must be >= 1")
        require(self.max_failures >= 0, "trainer.max_failures", "must be >= 0")
        require(self.eval_every >= 1, "trainer.eval_every", "must be >= 1")
        require(self.patience >= 1, "trainer.patience", "must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ComponentConfig = field(default_factory=lambda: ComponentConfig("mf"))
    sampler: ComponentConfig = field(default_factory=lambda: ComponentConfig("rns"))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------- YAML groups and overrides
def group_options(group: str) -> list[str]:
    """Names of the YAML files available for ``group`` (``conf/<group>/*.yaml``)."""
    d = conf_dir() / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each config key without its group (``trainer.lr`` -> ``lr``), but whole where that would be
    ambiguous (``trainer.lr`` beside ``sampler.lr``, the adversarial generator's)."""
    tails = [k.split(".", 1)[-1] for k in keys]
    return {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails, strict=True)}


def load_group(group: str, choice: str) -> dict[str, Any]:
    """The mapping in ``conf/<group>/<choice>.yaml``."""
    path = conf_dir() / group / f"{choice}.yaml"
    if not path.is_file():
        known = ", ".join(group_options(group)) or "none"
        raise ConfigError(f"unknown {group} {choice!r} (known: {known})")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``'a.b=1e-3'`` -> ``('a.b', 0.001)``; values are YAML (lists, null, booleans, numbers)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-3 as a string (no dot); numbers are what users mean.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") and value.strip() else value
        except ValueError:
            pass
    return key, value


def load_experiment(name: str) -> dict[str, Any]:
    """``conf/experiments/NAME.yaml``: ``description``, ``overrides`` (a list of key=value strings) and
    optionally ``model_overrides`` (model name -> list) and ``sampler_overrides`` (sampler name -> list),
    applied only when that model or sampler is chosen."""
    data = load_group("experiments", name)
    lists = [data.get("overrides", []), *dict(data.get("model_overrides") or {}).values(),
             *dict(data.get("sampler_overrides") or {}).values()]
    for entries in lists:
        if not isinstance(entries, list) or not all(isinstance(o, str) for o in entries):
            raise ConfigError(f"experiment {name!r}: overrides must be lists of key=value strings")
    return data


def expand_experiments(overrides: Sequence[str]) -> list[str]:
    """Replace each ``experiment=NAME`` by its overrides (recursively), followed by the experiment's
    ``model_overrides`` for the model finally chosen, then its ``sampler_overrides`` for the sampler
    finally chosen (a sampler's setting wins over a model's: GDNS counts users a step, not rows)."""

    def flatten(entries: Sequence[str], seen: tuple[str, ...]) -> list[str | tuple[str, dict]]:
        out: list[str | tuple[str, dict]] = []
        for text in entries:
            key, value = parse_override(text)
            if key != "experiment":
                out.append(text)
                continue
            if value in seen:
                raise ConfigError(f"experiment {value!r} includes itself ({' -> '.join([*seen, str(value)])})")
            data = load_experiment(str(value))
            out.extend(flatten(data.get("overrides", []), (*seen, str(value))))
            for group in ("model", "sampler"):
                if data.get(f"{group}_overrides"):
                    out.append((group, dict(data[f"{group}_overrides"])))
        return out

    flat = flatten(overrides, ())
    chosen = {group: DEFAULT_GROUP_CHOICE[group] for group in ("model", "sampler")}
    for entry in flat:
        if isinstance(entry, str) and parse_override(entry)[0] in chosen:
            key, value = parse_override(entry)
            chosen[key] = str(value)
    expanded: list[str] = []
    for entry in flat:
        expanded.extend(entry[1].get(chosen[entry[0]], []) if isinstance(entry, tuple) else [entry])
    return expanded


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} is a value, not a group")
        node = child
    node[parts[-1]] = value


def resolve(overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge group YAML files and overrides into one plain mapping (not yet validated).

    ``base`` supplies group choices and values below the command line's. ``experiment=NAME`` (first on
    the command line) expands into the overrides listed in ``conf/experiments/NAME.yaml``, which the
    rest of the command line can still override.
    """
    parsed = [parse_override(o) for o in expand_experiments(overrides)]
    choices = dict(DEFAULT_GROUP_CHOICE)
    tree: dict[str, Any] = {}
    base = dict(base or {})
    for group in GROUPS:
        if isinstance(base.get(group), str):
            choices[group] = base.pop(group)
    explicit_dataset = False
    for key, value in parsed:
        if key in GROUPS:
            if not isinstance(value, str):
                raise ConfigError(f"{key}={value!r}: expected the name of a {key} file")
            choices[key] = value
            explicit_dataset |= key == "dataset"
    # A dataset given by location alone starts from the bare defaults, not from the synthetic preset.
    by_path = any(k == "dataset.path" for k, _ in parsed) and not explicit_dataset and "dataset" not in base
    for group in GROUPS:
        if group == "dataset" and by_path:
            tree[group] = {"name": "custom", "format": "csv"}
        else:
            tree[group] = load_group(group, choices[group])
    for group, values in base.items():
        if group not in GROUPS:
            raise ConfigError(f"unknown group {group!r} (known: {', '.join(GROUPS)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{group}: expected a mapping")
        for k, v in _flatten(values, group):
            _set_dotted(tree, k, v)
    preset_path = tree["dataset"].get("path")
    for key, value in parsed:
        if key in GROUPS:
            continue
        if key.split(".")[0] not in GROUPS:
            group = key.split(".")[0]
            close = difflib.get_close_matches(group, GROUPS, n=1, cutoff=0.6)
            hint = f"; did you mean {key.replace(group, close[0], 1)!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r} (groups: {', '.join(GROUPS)}){hint}")
        _set_dotted(tree, key, value)
    _name_data_by_location(tree, parsed, by_path, preset_path)
    return tree


def _name_data_by_location(tree: dict[str, Any], parsed: Sequence[tuple[str, Any]], by_path: bool,
                           preset_path: Any) -> None:
    """Data given by location is named after its folder (or file), so that its runs, results, tracked
    runs and cache file say whose data they hold: ``dataset.path=DIR`` alone names it ``DIR``'s name, and a
    named dataset pointed elsewhere (``dataset=gowalla dataset.path=other``) ``gowalla@other``. An explicit
    ``dataset.name`` wins; a path equal to the named dataset's own changes nothing."""
    paths = [v for k, v in parsed if k == "dataset.path"]
    if not paths or paths[-1] is None or any(k == "dataset.name" for k, _ in parsed):
        return
    path = Path(str(paths[-1])).expanduser()
    label = path.name if path.name not in ("", ".", "..") else (path.resolve().name or "data")
    if by_path:
        tree["dataset"]["name"] = label
    elif str(paths[-1]) != str(preset_path):
        tree["dataset"]["name"] = f"{tree['dataset'].get('name', 'dataset')}@{label}"


def _flatten(values: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in values.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping) and k not in ("files", "params"):
            out.extend(_flatten(v, key))
        else:
            out.append((key, v))
    return out


def build_run_config(tree: Mapping[str, Any]) -> RunConfig:
    """Validate a resolved mapping into a ``RunConfig``."""
    groups: dict[str, Any] = {}
    for group in GROUPS:
        data = dict(tree.get(group) or {})
        if group in ("model", "sampler"):
            name = data.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(f"{group}.name: missing (the {group} file must name the {group})")
            groups[group] = ComponentConfig(name=name, params=types.MappingProxyType(data))
        else:
            cls = typing.get_type_hints(RunConfig)[group]
            groups[group] = from_mapping(cls, data, group)
    return RunConfig(**groups)


def load_run_config(overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> RunConfig:
    """Resolve and validate in one call."""
    return build_run_config(resolve(overrides, base))


def config_tree(cfg: RunConfig) -> dict[str, Any]:
    """The resolvable mapping of ``cfg`` (model/sampler parameters inline): ``build_run_config`` inverts it."""
    tree = to_plain(cfg)
    for group in ("model", "sampler"):
        tree[group] = {"name": tree[group]["name"], **tree[group]["params"]}
    return tree
