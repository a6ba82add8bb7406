"""Dataset statistics for ``raysearch data describe``: ``describe`` (a dict), ``format_description``
(aligned text), ``list_datasets`` (the named datasets and whether their files are here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.config import DatasetConfig, from_mapping, group_options
from raysearch.data.dataset import Dataset
from raysearch.data.loader import data_dirs, dataset_config, load_dataset, locate_sources
from raysearch.data.readers import READERS, locate, needed_files
from raysearch.errors import ConfigError


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal, (n-1)/n: one item has everything).

    ``G = 2 * sum_i i * x_(i) / (n * sum x) - (n + 1) / n`` with ``x`` sorted ascending and ``i`` 1-based;
    0 when every count is 0.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def _spread(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}


def describe(dataset: Dataset) -> dict[str, Any]:
    """Statistics of ``dataset`` (JSON-serialisable): sizes per split, density, train popularity Gini,
    interactions per user, sampled negatives, sources with sha256, split and preprocessing parameters."""
    prov = dataset.provenance
    split_info = dict(prov.get("split", {}))
    counts = {"train": dataset.train.nnz, "valid": dataset.valid.nnz, "test": dataset.test.nnz}
    interactions: dict[str, int] = dict(counts)
    interactions["total"] = sum(counts.values())
    if split_info.get("valid_carved"):
        interactions["train+valid (as published)"] = counts["train"] + counts["valid"]
    per_user_all = dataset.train.user_counts() + dataset.valid.user_counts() + dataset.test.user_counts()
    cells = dataset.n_users * dataset.n_items
    negatives = None
    if dataset.test_negatives is not None:

        def rows_with_negatives(matrix: np.ndarray | None) -> int:
            return 0 if matrix is None else int((matrix[:, 0] >= 0).sum())

        negatives = {
            "per_user": int(dataset.test_negatives.shape[1]),
            "valid_users": rows_with_negatives(dataset.valid_negatives),
            "test_users": rows_with_negatives(dataset.test_negatives),
            **{k: v for k, v in prov.get("negatives", {}).items() if k != "num_negatives"},
        }
    config = prov.get("config", {})
    return {
        "name": dataset.name,
        "format": prov.get("format"),
        "fingerprint": dataset.fingerprint,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": interactions,
        "density": interactions["total"] / cells if cells else 0.0,
        "train_popularity_gini": gini(dataset.train.item_counts()),
        "items_without_train_interactions": int((dataset.train.item_counts() == 0).sum()),
        "interactions_per_user": {
            "train": _spread(dataset.train.user_counts()),
            "all": _spread(per_user_all),
        },
        "sampled_negatives": negatives,
        "sources": [
            {k: s[k] for k in ("part", "file", "bytes", "sha256") if k in s} for s in prov.get("sources", [])
        ],
        "preprocessing": {k: v for k, v in prov.get("preprocess", {}).items() if k != "steps"}
        | {"pool": config.get("pool", False)},
        "counts_by_step": prov.get("preprocess", {}).get("steps", {}),
        "split": split_info,
    }


# --------------------------------------------------------------------------- text
def _fmt(value: Any) -> str:
    """A count with thousands separators; floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1:
            return f"{int(value):,}"
        return f"{value:.4g}"
    return str(value)


def _fmt_params(params: Any) -> str:
    """Parameters as ``key=value`` pairs, as written in a config (no thousands separators)."""
    if isinstance(params, dict):
        inner = ", ".join(f"{k}={_fmt_params(v)}" for k, v in params.items())
        return inner
    if isinstance(params, list):
        return "[" + ", ".join(_fmt_params(v) for v in params) + "]"
    if params is None:
        return "-"
    return str(params).lower() if isinstance(params, bool) else str(params)


def format_description(info: dict[str, Any]) -> str:
    """``describe``'s dict as aligned, human-readable text (thousands separators: ``29,858``)."""
    rows: list[tuple[str, str]] = [
        ("dataset", f"{info['name']} ({info.get('format')})"),
        ("fingerprint", str(info.get("fingerprint") or "-")),
        ("users", _fmt(info["users"])),
        ("items", _fmt(info["items"])),
    ]
    rows += [(f"interactions {k}", _fmt(v)) for k, v in info["interactions"].items()]
    rows += [
        ("density", f"{info['density']:.4%}"),
        ("train popularity gini", f"{info['train_popularity_gini']:.4f}"),
        ("items without train", _fmt(info["items_without_train_interactions"])),
    ]
    for part, spread in info["interactions_per_user"].items():
        rows.append(
            (
                f"per user ({part})",
                f"min {_fmt(spread['min'])}  median {_fmt(spread['median'])}  max {_fmt(spread['max'])}",
            )
        )
    if info.get("sampled_negatives"):
        rows.append(("sampled negatives", _fmt_params(info["sampled_negatives"])))
    rows.append(("preprocessing", _fmt_params(info["preprocessing"])))
    for step, parts in info.get("counts_by_step", {}).items():
        for part, c in parts.items():
            rows.append(
                (
                    f"  after {step} [{part}]",
                    f"{_fmt(c['interactions'])} rows, {_fmt(c['users'])} users, {_fmt(c['items'])} items",
                )
            )
    rows.append(("split", _fmt_params({k: v for k, v in info["split"].items() if v != {}})))
    for source in info.get("sources", []):
        rows.append(
            (
                f"source {source['part']}",
                f"{source['file']}  {_fmt(source['bytes'])} bytes  sha256 {source['sha256']}",
            )
        )
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


# --------------------------------------------------------------------------- listing and ad-hoc paths
def list_datasets(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The named datasets (``conf/dataset/*.yaml``): name, format, folder, split, and whether their files
    are present in the data directory (the generated synthetic data always is); a missing one also says
    where it was looked for (``looked_in``: the folders, empty when there is no data directory) and which
    files (``needs``)."""
    out = []
    dirs = data_dirs(data_dir)
    for name in group_options("dataset"):
        config = dataset_config(name)
        reader = READERS.get(config.format)
        roots: list[Path] = []
        if not reader.needs_files:
            present = True
        elif config.path is None:
            present = False
        else:
            path = Path(config.path).expanduser()
            roots = [path] if path.is_absolute() else [d / path for d in dirs]
            present = any(locate(config, root) for root in roots)
        row = {"name": name, "format": config.format, "folder": config.path, "split": config.split,
               "present": present}
        if not present:
            row.update(looked_in=[str(r) for r in roots], needs=needed_files(config))
        out.append(row)
    return out


def describe_path(
    path: str | Path, fmt: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
    use_cache: bool = True, **options: Any
) -> dict[str, Any]:
    """``describe`` of a file or folder in format ``fmt`` (``raysearch data describe --path P --format F``).

    ``path`` is taken relative to the current directory when it exists there, else to the data directory.
    A source with train/test parts is described as given (validation carved as usual); a single pooled
    file gets the ``ratio`` split (8:1:1 per user) so that per-split counts mean something. ``options``
    are further ``DatasetConfig`` fields (``sep``, ``header``, ``user_col``, ``split``...). The parsed
    dataset is cached as a named one is (``load_dataset``; ``use_cache=False`` parses again).
    """
    known = {f.name for f in dataclasses.fields(DatasetConfig)} - {"format", "path"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    target = Path(path).expanduser()
    if not target.is_absolute() and target.exists():
        target = target.resolve()
    options.setdefault("name", target.name or "custom")
    config = from_mapping(DatasetConfig, {**options, "format": fmt, "path": str(target)}, "dataset")
    if "split" not in options:
        files, _ = locate_sources(config, data_dir)
        pooled = set(files) - {"negative"} <= {"all"}
        config = dataclasses.replace(config, split="ratio" if pooled else "given")
    return describe(load_dataset(config, data_dir=data_dir, cache_dir=cache_dir, use_cache=use_cache))
