"""Side information for the knowledge-enhanced samplers: item attributes and social links, read, validated
against a dataset's id maps, and cached beside the dataset.

Keys of the ``dataset`` group (``DatasetConfig``):

- ``item_attributes``: a file of item attributes, in one of two formats (``item_attributes_format``;
  ``auto`` picks ``movielens`` for a file named ``u.item``, else ``tsv``):
  - ``movielens``: ML-100K's ``u.item``, latin-1, 24 '|'-separated fields a line:
    ``id|title|release date|video release date|IMDb URL|`` then 19 genre flags, each ``0`` or ``1``, in
    the order of ``MOVIELENS_GENRES``; an item's attributes are the genres flagged 1;
  - ``tsv``: UTF-8 lines ``item<TAB>attr[|attr...]``, one or more non-empty attribute names; an item may
    have several lines (their attributes are pooled).
- ``social_network``: UTF-8 lines ``user<TAB>friend`` (or whitespace separated), e.g. LastFM's
  ``trustnetwork.txt`` (``lastfm-lightgcn``). Links are made symmetric (friendship), repeats merged and
  self-links dropped (counted).

A relative file is looked up in the dataset's folder (the folder of its interaction files), then in the
current directory. No dataset file under ``conf/dataset`` sets these keys: a run that does not ask for side
information never depends on the side files (``dataset.item_attributes=u.item`` with ``dataset=ml-100k``,
``dataset.social_network=trustnetwork.txt`` with ``dataset=lastfm``).

Ids are the source's original ids, matched to the dataset's (``Dataset.item_ids`` / ``user_ids``, the
ids of the interaction files): for ML-100K the ``u.data`` item ids, for LastFM the 1-based ids of
``data1.txt``. Ids the dataset does not have (items the k-core filter removed, users without training
items) are never silently dropped: they are counted, with examples, in the provenance
(``provenance["side_info"]``); a file that names no id of the dataset at all is a ``DataError``. Every
error names the file and line (``DataError``) or the key (``ConfigError``).

What a dataset gets (``Dataset.extras``, internal ids):
- ``item_attributes``: int64 (m, 2) sorted unique (item, attribute) pairs; ``item_attribute_names``: str
  (n_attributes,), attribute a's name;
- ``social_network``: int64 (e, 2) sorted unique (user, friend) pairs, symmetric, no self-links.

Side information does not change the dataset's fingerprint (the split's identity: runs with and without
it are comparable); its own cache entry ``<cache>/<name>-<fingerprint>-side-<key>.npz`` is keyed by the
dataset's fingerprint, the side keys and the sha256 of the side files, and is written (atomically) only
after everything was read and validated, as is the dataset's own entry (``loader.load_dataset``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.config import DatasetConfig
from raysearch.data.dataset import Dataset
from raysearch.data.readers import _grid, _int_column, _token_column
from raysearch.errors import DataError

SIDE_INFO_KEYS = ("item_attributes", "item_attributes_format", "social_network")
SIDE_CACHE_VERSION = 1  # bump when the arrays or the record change for the same files and keys

# ML-100K's genres, in the order of u.item's 19 flags (the dataset's README and u.genre)
MOVIELENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                    "Sci-Fi", "Thriller", "War", "Western")
_MOVIELENS_FIELDS = 5 + len(MOVIELENS_GENRES)
_EXAMPLES = 5  # unknown ids listed in the record


@dataclass(frozen=True)
class SideInfo:
    """Validated side information: ``arrays`` (the ``Dataset.extras`` it adds) and ``record`` (its provenance)."""

    arrays: dict[str, np.ndarray]
    record: dict[str, Any]


# --------------------------------------------------------------------------- id matching
def match_ids(known: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(internal id int64, found bool) of each of ``values`` among ``known`` (the dataset's original ids as
    strings, indexed by internal id); ids not found get -1."""
    known = np.asarray(known).astype(str)
    values = np.asarray(values).astype(str)
    if known.size == 0:
        return np.full(values.shape, -1, dtype=np.int64), np.zeros(values.shape, dtype=bool)
    order = np.argsort(known, kind="stable")
    ordered = known[order]
    pos = np.minimum(np.searchsorted(ordered, values), ordered.size - 1)
    found = ordered[pos] == values
    return np.where(found, order[pos], -1).astype(np.int64), found


def _unknown(values: np.ndarray, found: np.ndarray) -> tuple[int, list[str]]:
    """(distinct ids not found, the first few of them in file order)."""
    missing = np.asarray(values)[~found].astype(str)
    _, first = np.unique(missing, return_index=True)
    return int(first.size), [str(missing[i]) for i in np.sort(first)[:_EXAMPLES]]


# --------------------------------------------------------------------------- item attributes
def attribute_format(config: DatasetConfig, path: Path) -> str:
    """``movielens`` or ``tsv``: ``dataset.item_attributes_format``, ``auto`` deciding by the file name."""
    if config.item_attributes_format != "auto":
        return config.item_attributes_format
    return "movielens" if path.name == "u.item" else "tsv"


def read_movielens_items(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], int]:
    """(item ids str (m,), attribute ids int64 (m,), line of each pair, attribute names, lines) of a ``u.item``."""
    grid = _grid(path, "|", header=False)
    if grid.n_cols != _MOVIELENS_FIELDS:
        raise DataError(f"expected {_MOVIELENS_FIELDS} '|'-separated fields (id|title|release date|video release "
                        f"date|URL|19 genre flags), found {grid.n_cols}", where=f"{path}:{grid.lines[0]}")
    items = _int_column(grid.column(0), grid.lines, path, "item").astype(str)
    flags = np.strings.strip(grid.fields[:, 5:])
    one, zero = flags == b"1", flags == b"0"
    bad = ~(one | zero)
    if bad.any():
        row, col = (int(x[0]) for x in np.nonzero(bad))
        value = bytes(flags[row, col]).decode("latin-1")
        raise DataError(f"genre flag {col + 1} ({MOVIELENS_GENRES[col]}) is {value!r}, not 0 or 1",
                        where=f"{path}:{grid.lines[row]}")
    row, attr = np.nonzero(one)
    return items[row], attr.astype(np.int64), grid.lines[row], list(MOVIELENS_GENRES), int(grid.lines.size)


def read_attribute_lines(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], int]:
    """(item ids str (m,), attribute ids int64 (m,), line of each pair, attribute names, lines) of an
    ``item<TAB>attr[|attr...]`` file; names are numbered in sorted order."""
    grid = _grid(path, "\t", header=False)
    if grid.n_cols != 2:
        raise DataError(f"expected item<TAB>attr[|attr...], found {grid.n_cols} tab-separated fields",
                        where=f"{path}:{grid.lines[0]}")
    items = _token_column(grid.column(0), grid.lines, path, "item").astype(str)
    column = grid.column(1)
    counts = np.strings.count(column, b"|") + 1
    tokens = np.strings.strip(np.array(b"|".join(column.tolist()).split(b"|")))
    lines = np.repeat(grid.lines, counts)
    empty = np.strings.str_len(tokens) == 0
    if empty.any():
        raise DataError("empty attribute name (expected item<TAB>attr[|attr...])",
                        where=f"{path}:{lines[int(np.argmax(empty))]}")
    names, attr = np.unique(np.char.decode(tokens, "utf-8", errors="replace"), return_inverse=True)
    return np.repeat(items, counts), attr.astype(np.int64), lines, [str(n) for n in names], int(grid.lines.size)


def item_attributes(path: Path, fmt: str, dataset: Dataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``item_attributes`` arrays of ``dataset`` from the file at ``path`` and their record."""
    read = read_movielens_items if fmt == "movielens" else read_attribute_lines
    ids, attrs, lines, names, n_lines = read(path)
    internal, found = match_ids(dataset.item_ids, ids)
    if not found.any():
        message = (f"names no item of dataset {dataset.name!r} (first: item {str(ids[0])!r}, line {lines[0]})"
                   if ids.size else f"gives no attribute to any item (dataset {dataset.name!r})")
        raise DataError(message, where=str(path))
    n_unknown, examples = _unknown(ids, found)
    pairs = np.unique(np.stack([internal[found], attrs[found]], axis=1), axis=0).astype(np.int64)
    used = np.zeros(len(names), dtype=bool)
    used[pairs[:, 1]] = True
    n_in_file = int(np.unique(ids).size)
    arrays = {"item_attributes": pairs, "item_attribute_names": np.asarray(names, dtype=str)}
    record = {
        "format": fmt, "lines": n_lines, "attributes": len(names), "attributes_of_dataset_items": int(used.sum()),
        "pairs": int(pairs.shape[0]), "items_in_file": n_in_file, "items_not_in_dataset": n_unknown,
        "items_not_in_dataset_examples": examples,
        "dataset_items_without_attributes": int(dataset.n_items - np.unique(pairs[:, 0]).size),
    }
    return arrays, record


# --------------------------------------------------------------------------- social links
def social_network(path: Path, dataset: Dataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``social_network`` array of ``dataset`` from a ``user<TAB>friend`` file and its record."""
    grid = _grid(path, None, header=False)
    if grid.n_cols != 2:
        raise DataError(f"expected user<TAB>friend, found {grid.n_cols} fields", where=f"{path}:{grid.lines[0]}")
    ends = [_token_column(grid.column(j), grid.lines, path, "user").astype(str) for j in (0, 1)]
    (a, found_a), (b, found_b) = (match_ids(dataset.user_ids, e) for e in ends)
    known = found_a & found_b
    self_links = known & (a == b)
    keep = known & ~self_links
    if not keep.any():
        raise DataError(f"names no link between users of dataset {dataset.name!r} (first line {grid.lines[0]}: "
                        f"{ends[0][0]!r} - {ends[1][0]!r})", where=str(path))
    all_ids, all_found = np.stack(ends, axis=1).ravel(), np.stack([found_a, found_b], axis=1).ravel()  # file order
    n_unknown, examples = _unknown(all_ids, all_found)
    links = np.concatenate([np.stack([a[keep], b[keep]], axis=1), np.stack([b[keep], a[keep]], axis=1)])
    links = np.unique(links, axis=0).astype(np.int64)
    record = {
        "lines": int(grid.lines.size), "links": int(links.shape[0]), "symmetric": True,
        "lines_with_users_not_in_dataset": int((~known).sum()), "users_not_in_dataset": n_unknown,
        "users_not_in_dataset_examples": examples, "self_links": int(self_links.sum()),
        "dataset_users_with_friends": int(np.unique(links[:, 0]).size),
    }
    return {"social_network": links}, record


# --------------------------------------------------------------------------- files, cache, the entry point
def side_file(value: str, key: str, folder: Path | None) -> Path:
    """The file ``dataset.<key>`` = ``value`` names: absolute, or found in ``folder`` then the current directory."""
    path = Path(value).expanduser()
    bases = [None] if path.is_absolute() else [b for b in (folder, Path.cwd()) if b is not None]
    tried = [path if base is None else base / path for base in bases]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise DataError(f"dataset.{key}: no file {value!r} (looked in: {'; '.join(str(p) for p in tried)})")


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shown(path: Path, base: Path | None) -> str:
    return (path.relative_to(base) if base is not None and path.is_relative_to(base) else path).as_posix()


def side_config(config: DatasetConfig) -> dict[str, Any]:
    """The side-information keys of ``config`` and their values."""
    return {key: getattr(config, key) for key in SIDE_INFO_KEYS}


def _cache_file(cache_dir: Path, dataset: Dataset, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name) or "dataset"
    return cache_dir / f"{safe}-{dataset.fingerprint}-side-{key}.npz"


def _load_cached(path: Path, key: str) -> SideInfo | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            record = json.loads(str(data["record"]))
            if record.get("cache_key") != key:
                return None
            return SideInfo({name: data[name] for name in data.files if name != "record"}, record)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        warnings.warn(f"ignoring unreadable side-information cache entry {path} ({err}); rebuilding it", stacklevel=3)
        return None


def _save_cached(path: Path, side: SideInfo) -> None:
    """Write the entry to a temporary file beside ``path`` and rename it: never a partial entry."""
    arrays = {**side.arrays, "record": np.array(json.dumps(side.record, sort_keys=True))}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write the side-information cache {path} ({err})", stacklevel=3)


def load_side_info(config: DatasetConfig, dataset: Dataset, folder: Path | None, base: Path | None = None,
                   cache_dir: Path | None = None) -> SideInfo | None:
    """The side information ``config`` asks for, for ``dataset``; None when it asks for none.

    ``folder``: where relative side files are looked up first (the dataset's folder); ``base``: the data
    directory (files are shown relative to it); ``cache_dir``: where the entry is cached (None: no cache).
    Raises ``DataError`` (naming the file and line) before anything is written.
    """
    wanted = {k: getattr(config, k) for k in ("item_attributes", "social_network") if getattr(config, k)}
    if not wanted:
        return None
    paths = {k: side_file(v, k, folder) for k, v in wanted.items()}
    digests = {k: _digest(p) for k, p in paths.items()}
    blob = {"version": SIDE_CACHE_VERSION, "dataset": dataset.fingerprint, "config": side_config(config),
            "files": sorted(digests.items())}
    key = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = _cache_file(cache_dir, dataset, key) if cache_dir is not None else None
    if cache_file is not None and (cached := _load_cached(cache_file, key)) is not None:
        return cached
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {"cache_key": key}
    for name, path in paths.items():
        if name == "item_attributes":
            got, info = item_attributes(path, attribute_format(config, path), dataset)
        else:
            got, info = social_network(path, dataset)
        arrays.update(got)
        record[name] = {"file": _shown(path, base), "sha256": digests[name], "bytes": path.stat().st_size, **info}
    side = SideInfo(arrays, record)
    if cache_file is not None:
        _save_cached(cache_file, side)
    return side


def with_side_info(dataset: Dataset, side: SideInfo | None, config: DatasetConfig) -> Dataset:
    """``dataset`` with ``side``'s arrays in its extras and its record in ``provenance["side_info"]``; the
    provenance's config shows ``config``'s side keys (a cached dataset may have been built under others)."""
    provenance = dict(dataset.provenance)
    if isinstance(provenance.get("config"), dict):
        provenance["config"] = {**provenance["config"], **side_config(config)}
    provenance.pop("side_info", None)
    extras = dict(dataset.extras)
    if side is None:
        if provenance == dataset.provenance:
            return dataset
    else:
        provenance["side_info"] = {k: v for k, v in side.record.items() if k != "cache_key"}
        extras.update(side.arrays)
    return dataclasses.replace(dataset, provenance=provenance, extras=extras)
