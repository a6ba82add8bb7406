"""``load_dataset``: find the files, read, preprocess, split, sample negatives, cache.

Data directory (for a relative ``DatasetConfig.path``), first that applies:
1. the ``data_dir`` argument (only it is searched);
2. the environment variable ``RAYSEARCH_DATA_DIR`` (only it is searched);
3. ``../shared/data`` relative to the current directory, then ``../shared/data`` relative to the project
   root (the directory holding the ``raysearch`` package), those of them that exist.
A relative path not found in the data directory is then tried from the current directory.

Cache: a built dataset is stored as one ``.npz`` (arrays + provenance JSON inside) in ``cache_dir`` /
``RAYSEARCH_CACHE_DIR`` / ``~/.cache/raysearch``, with a ``.json`` copy of the provenance beside it. The
key (``fingerprint``) hashes the sources' sha256, the resolved ``DatasetConfig`` and
``CACHE_FORMAT_VERSION``; files are written to a temporary name and renamed (``os.replace``) only after
everything succeeded, so an error never leaves a partial cache entry. An unreadable entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import raysearch
from raysearch.config import DatasetConfig, from_mapping, load_group, to_plain
from raysearch.data.dataset import Dataset
from raysearch.data.interactions import Interactions
from raysearch.data.preprocess import IdMap, compact_index, preprocess
from raysearch.data.readers import READERS, NegativeLists, RawData, locate, needed_files
from raysearch.data.side_info import SIDE_INFO_KEYS, load_side_info, with_side_info
from raysearch.data.splits import (
    SPLITS,
    SplitInput,
    all_positives,
    interactions_of,
    negative_matrices,
    sample_negatives,
)
from raysearch.data.table import InteractionTable
from raysearch.errors import ConfigError, DataError
from raysearch.rng import make_rng

CACHE_FORMAT_VERSION = 1  # bump when the pipeline's output for the same config and files changes
DATA_DIR_ENV = "RAYSEARCH_DATA_DIR"
CACHE_DIR_ENV = "RAYSEARCH_CACHE_DIR"
_SPLIT_NAMES = ("train", "valid", "test")


# --------------------------------------------------------------------------- locations
def project_root() -> Path:
    """The directory that holds the ``raysearch`` package (the repository root in a checkout)."""
    return Path(raysearch.__file__).resolve().parent.parent


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The directories searched for datasets, in order (see the module doc)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return [Path(env).expanduser()]
    found: list[Path] = []
    for base in (Path.cwd(), project_root()):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir() and candidate not in found:
            found.append(candidate)
    return found


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$RAYSEARCH_CACHE_DIR``, else ``~/.cache/raysearch``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "raysearch"


def dataset_config(name: str) -> DatasetConfig:
    """The named dataset ``conf/dataset/NAME.yaml`` as a validated ``DatasetConfig``."""
    return from_mapping(DatasetConfig, load_group("dataset", name), "dataset")


def locate_sources(
    config: DatasetConfig, data_dir: str | Path | None = None
) -> tuple[dict[str, Path], Path | None]:
    """(part -> file, the data directory it was found in). Missing data is one ``DataError`` naming the
    directories searched and the files needed."""
    if not READERS.get(config.format).needs_files:
        return {}, None
    if config.path is None:
        raise ConfigError(f"dataset.path: required for format {config.format!r} (a file or a folder)")
    path = Path(config.path).expanduser()
    # A relative path names a folder of the data directory; failing that, a path from the current
    # directory (e.g. `raysearch data describe --path ./my.csv`).
    searched: list[Path | None] = [None]
    if not path.is_absolute():
        searched = list(dict.fromkeys(d.resolve() for d in [*data_dirs(data_dir), Path.cwd()]))
    for base in searched:
        files = locate(config, path if base is None else base / path)
        if files:
            return files, base
    where = "; ".join(str(path if base is None else base / path) for base in searched) or (
        f"nowhere: no data directory (pass --data-dir, set {DATA_DIR_ENV}, or create ../shared/data)"
    )
    raise DataError(
        f"dataset {config.name!r} ({config.format}) not found: it needs {needed_files(config)}; looked in: {where}"
        + ("" if data_dir is not None else f" (pass --data-dir or set {DATA_DIR_ENV} to look elsewhere)")
    )


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), path.stat().st_size


def describe_sources(files: Mapping[str, Path], base: Path | None) -> list[dict[str, Any]]:
    """Source records for the provenance: part, file (relative to the data directory when found in one),
    sha256 and bytes."""
    records = []
    for part, path in files.items():
        sha, size = file_digest(path)
        shown = path.relative_to(base) if base is not None and path.is_relative_to(base) else path
        records.append({"part": part, "file": shown.as_posix(), "sha256": sha, "bytes": size})
    return records


def fingerprint(config: DatasetConfig, sources: list[dict[str, Any]]) -> str:
    """16 hex digits: hash of the sources' contents, the resolved config and the cache format version."""
    key = {
        "version": CACHE_FORMAT_VERSION,
        # side information is keyed on its own (raysearch.data.side_info): the split's identity stays
        "config": {k: v for k, v in to_plain(config).items() if k not in SIDE_INFO_KEYS},
        "sources": [[s["part"], s["sha256"]] for s in sources],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- building
def _pooled_parts(raw: RawData, config: DatasetConfig) -> dict[str, InteractionTable]:
    parts = raw.parts
    if config.pool and len(parts) > 1:
        ordered = [parts[p] for p in ("all", *_SPLIT_NAMES) if p in parts]
        return {"all": InteractionTable.concat(ordered, part="all")}
    return dict(parts)


def _given_negatives(
    negatives: NegativeLists,
    users: IdMap,
    items: IdMap,
    user_new: np.ndarray,
    item_new: np.ndarray,
    n_users: int,
) -> np.ndarray:
    """int64 (n_users, N): the source's test negatives in internal ids; rows of users without a line, -1.
    Lines of users that are not in the dataset (filtered out) are ignored."""
    user_old, found = users.lookup(negatives.users)
    user_ok = found & (user_new[np.maximum(user_old, 0)] >= 0)
    item_internal = item_new[items.encode(negatives.items.ravel())].reshape(negatives.items.shape)
    matrix = np.full((n_users, negatives.items.shape[1]), -1, dtype=np.int64)
    matrix[user_new[user_old[user_ok]]] = item_internal[user_ok]
    return matrix


def _source_negatives(
    given: NegativeLists,
    users: IdMap,
    items: IdMap,
    user_new: np.ndarray,
    item_new: np.ndarray,
    splits: tuple[Interactions, Interactions, Interactions],
    config: DatasetConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(valid, test) negatives when the source gives the test negatives: validation shares them
    (``share_negatives``) or, and for users without a negatives line, gets a fresh draw of the same width."""
    train, valid, test = splits
    n_users = train.n_users
    test_neg = _given_negatives(given, users, items, user_new, item_new, n_users)
    missing = np.flatnonzero((test.user_counts() > 0) & (test_neg[:, 0] < 0))
    if missing.size:
        user = users.strings()[np.flatnonzero(user_new >= 0)][missing[0]]
        raise DataError(f"test user {str(user)!r} has no line in the negatives file", where=given.source)
    test_neg[test.user_counts() == 0] = -1
    has_valid = valid.user_counts() > 0
    valid_neg = (
        np.where(has_valid[:, None], test_neg, -1) if config.share_negatives else np.full_like(test_neg, -1)
    )
    redraw = has_valid & (valid_neg[:, 0] < 0)
    if redraw.any():
        positives = all_positives(train, valid, test)
        rng = make_rng(config.split_seed, "negatives", "valid")
        valid_neg[redraw] = sample_negatives(positives, np.flatnonzero(redraw), test_neg.shape[1], rng)
    return valid_neg, test_neg


def _extras(
    raw: RawData, users: IdMap, items: IdMap, user_new: np.ndarray, item_new: np.ndarray, n_users: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The source's extras in internal ids: per-user columns (-1 for users not in the source's list) and
    pairs (pairs of ids that left the dataset are dropped and counted)."""
    extras: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}

    def internal(idmap: IdMap, new: np.ndarray, ids: np.ndarray) -> np.ndarray:
        old, found = idmap.lookup(ids)
        return np.where(found, new[np.maximum(old, 0)], -1)

    for name, (ids, values) in raw.user_extras.items():
        rows = internal(users, user_new, ids)
        column = np.full(n_users, -1, dtype=np.int64)
        column[rows[rows >= 0]] = np.asarray(values, dtype=np.int64)[rows >= 0]
        extras[name] = column
    for name, (pair_users, pair_items) in raw.pair_extras.items():
        u, i = internal(users, user_new, pair_users), internal(items, item_new, pair_items)
        keep = (u >= 0) & (i >= 0)
        extras[f"{name}_users"], extras[f"{name}_items"] = u[keep], i[keep]
        info[f"{name}_pairs_dropped"] = int((~keep).sum())
    return extras, info


def build_dataset(raw: RawData, config: DatasetConfig, sources: list[dict[str, Any]], key: str) -> Dataset:
    """Preprocess, encode, split and sample: the whole pipeline after reading (no file IO)."""
    parts = _pooled_parts(raw, config)
    filtered, pre_report = preprocess(parts, config)
    pooled = config.pool and len(raw.parts) > 1
    given_negatives = None if pooled else raw.test_negatives  # a re-split invalidates given negatives
    # Items named only by the negatives file are catalogue items too (never interacted with).
    negative_items = [] if given_negatives is None else [given_negatives.items.ravel()]
    users = IdMap.build([t.users for t in filtered.values()])
    items = IdMap.build([t.items for t in filtered.values()] + negative_items)
    encoded = {name: t.with_ids(users.encode(t.users), items.encode(t.items)) for name, t in filtered.items()}
    result = SPLITS.get(config.split)(SplitInput(encoded, users.strings(), items.strings()), config)

    # Ids with no interaction left in any split (rows a split dropped) leave the id maps.
    pairs = {"train": result.train, "valid": result.valid, "test": result.test}
    used_users = np.zeros(len(users), dtype=bool)
    used_items = np.zeros(len(items), dtype=bool)
    for u, i in pairs.values():
        used_users[u] = True
        used_items[i] = True
    if given_negatives is not None:
        used_items[items.encode(given_negatives.items.ravel())] = True
    user_new, item_new = compact_index(used_users), compact_index(used_items)
    n_users, n_items = int(used_users.sum()), int(used_items.sum())
    splits = {
        name: interactions_of(user_new[u], item_new[i], n_users, n_items) for name, (u, i) in pairs.items()
    }
    train, valid, test = splits["train"], splits["valid"], splits["test"]

    if given_negatives is not None:
        valid_neg, test_neg = _source_negatives(
            given_negatives, users, items, user_new, item_new, (train, valid, test), config
        )
        negatives_info: dict[str, Any] = {
            "num_negatives": int(test_neg.shape[1]),
            "test": "given",
            "share_negatives": config.share_negatives,
        }
    elif config.num_negatives > 0:
        valid_neg, test_neg = negative_matrices(train, valid, test, config)
        negatives_info = {
            "num_negatives": config.num_negatives,
            "test": "sampled",
            "share_negatives": config.share_negatives,
            "pool": "items the user never interacted with in any split",
            "split_seed": config.split_seed,
        }
    else:
        valid_neg = test_neg = None
        negatives_info = {"num_negatives": 0}
    if pooled and raw.test_negatives is not None:
        negatives_info["given_negatives_ignored"] = "the parts were pooled and split anew"
    extras, extras_info = _extras(raw, users, items, user_new, item_new, n_users)

    provenance = {
        "name": config.name,
        "format": config.format,
        "fingerprint": key,
        "cache_format_version": CACHE_FORMAT_VERSION,
        "sources": sources,
        "config": to_plain(config),
        "preprocess": pre_report,
        "split": result.info,
        "negatives": negatives_info,
        "counts": {
            "users": n_users,
            "items": n_items,
            "train": train.nnz,
            "valid": valid.nnz,
            "test": test.nnz,
            "users_dropped_after_split": int(len(users) - n_users),
            "items_dropped_after_split": int(len(items) - n_items),
        },
    }
    if extras_info:
        provenance["extras"] = extras_info
    return Dataset(
        name=config.name,
        train=train,
        valid=valid,
        test=test,
        user_ids=users.strings()[used_users],
        item_ids=items.strings()[used_items],
        provenance=json.loads(json.dumps(provenance, default=_json_default)),
        valid_negatives=valid_neg,
        test_negatives=test_neg,
        extras=extras,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# --------------------------------------------------------------------------- cache
def cache_path(config: DatasetConfig, key: str, cache_dir: str | Path | None = None) -> Path:
    """The cache file of a dataset: ``<cache>/<name>-<fingerprint>.npz``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", config.name) or "dataset"
    return cache_root(cache_dir) / f"{safe}-{key}.npz"


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file object)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_cache(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` to ``path`` (npz) and its provenance to ``path`` with suffix ``.json``, atomically."""
    arrays: dict[str, np.ndarray] = {
        "shape": np.array(dataset.train.shape, dtype=np.int64),
        "user_ids": np.asarray(dataset.user_ids, dtype=str),
        "item_ids": np.asarray(dataset.item_ids, dtype=str),
        "provenance": np.array(json.dumps(dataset.provenance, sort_keys=True)),
    }
    for name in _SPLIT_NAMES:
        split: Interactions = getattr(dataset, name)
        arrays[f"{name}_indptr"], arrays[f"{name}_indices"] = split.indptr, split.indices
    if dataset.valid_negatives is not None:
        arrays["valid_negatives"] = dataset.valid_negatives
    if dataset.test_negatives is not None:
        arrays["test_negatives"] = dataset.test_negatives
    for name, value in dataset.extras.items():
        arrays[f"extra__{name}"] = value
    _atomic_write(path, lambda fh: np.savez(fh, **arrays))
    text = json.dumps(dataset.provenance, indent=2, sort_keys=True).encode()
    _atomic_write(path.with_suffix(".json"), lambda fh: fh.write(text))


def load_cache(path: Path, key: str) -> Dataset | None:
    """The dataset cached at ``path`` if it is there, readable and has fingerprint ``key``; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            provenance = json.loads(str(data["provenance"]))
            if provenance.get("fingerprint") != key:
                return None
            n_users, n_items = (int(x) for x in data["shape"])
            splits = {
                name: Interactions(data[f"{name}_indptr"], data[f"{name}_indices"], n_users, n_items)
                for name in _SPLIT_NAMES
            }
            files = set(data.files)
            return Dataset(
                name=provenance["name"],
                user_ids=data["user_ids"],
                item_ids=data["item_ids"],
                provenance=provenance,
                valid_negatives=data["valid_negatives"] if "valid_negatives" in files else None,
                test_negatives=data["test_negatives"] if "test_negatives" in files else None,
                extras={f.removeprefix("extra__"): data[f] for f in files if f.startswith("extra__")},
                **splits,
            )
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        warnings.warn(f"ignoring unreadable cache entry {path} ({err}); rebuilding it", stacklevel=2)
        return None


# --------------------------------------------------------------------------- the entry point
def load_dataset(
    config: DatasetConfig | str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load a dataset: a ``DatasetConfig``, or the name of ``conf/dataset/NAME.yaml``.

    Reads the files (found as the module doc says), preprocesses, splits, samples negatives and caches
    the result; a later call with the same files and config reads the cache. Errors: ``DataError`` (files
    missing or malformed, naming the file and line), ``ConfigError`` (a bad key or value).
    """
    if isinstance(config, str):
        config = dataset_config(config)
    SPLITS.get(config.split)  # an unknown split or format fails before any file is read
    reader = READERS.get(config.format)
    files, base = locate_sources(config, data_dir)
    sources = describe_sources(files, base)
    key = fingerprint(config, sources)
    path = cache_path(config, key, cache_dir)
    cached = load_cache(path, key) if use_cache else None
    dataset = cached if cached is not None else build_dataset(reader.read(files, config), config, sources, key)
    # side information (dataset.item_attributes, dataset.social_network): read and validated before any
    # cache entry is written, so that a bad side file leaves nothing behind
    folder = next(iter(files.values())).parent if files else None
    side = load_side_info(config, dataset, folder, base, cache_root(cache_dir) if use_cache else None)
    if use_cache and cached is None:
        try:
            save_cache(dataset, path)
        except OSError as err:
            warnings.warn(f"could not write the dataset cache {path} ({err})", stacklevel=2)
    return with_side_info(dataset, side, config)
