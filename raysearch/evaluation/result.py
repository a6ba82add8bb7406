"""``EvalResult``: per-user metric values of one evaluation, with the protocol that produced them.

Results keep per-user values (not only means) so that shards evaluated by different workers merge
exactly: ``EvalResult.merge`` concatenates users, it never averages per-worker means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BAND_NAMES: tuple[str, ...] = ("head", "mid", "tail")
"""Popularity bands, in the order of their codes 0, 1, 2 (see ``breakdown.popularity_bands``)."""


def _readonly(array: np.ndarray, dtype: type) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Metric values of ``n`` evaluated users.

    ``users``: int64 (n,), ascending user ids. ``per_user``: ``{"ndcg@10": float64 (n,)}``.
    ``protocol``: plain JSON-able description (``protocol`` full/sampled, ``ks``, ``metrics``, ``tie``,
    ``exclude`` part names, ``n_negatives``, ``n_items``). ``bands`` (full ranking with item bands):
    ``{"recall@K": float64 (n, 3)}``, per-band recall with NaN where the user has no held-out item in
    the band, and ``{"slots@K": int64 (n, 3)}``, how many of the user's top-K slots hold an item of
    each band (head, mid, tail).
    """

    users: np.ndarray
    per_user: Mapping[str, np.ndarray]
    protocol: Mapping[str, Any]
    bands: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        users = _readonly(self.users, np.int64)
        if users.ndim != 1:
            raise ValueError(f"users must be 1-d, got shape {users.shape}")
        n = users.size
        per_user = {}
        for key, values in self.per_user.items():
            per_user[key] = _readonly(values, np.float64)
            if per_user[key].shape != (n,):
                raise ValueError(f"per_user[{key!r}] has shape {per_user[key].shape}, expected ({n},)")
        bands = {}
        for key, values in self.bands.items():
            bands[key] = _readonly(values, np.int64 if key.startswith("slots@") else np.float64)
            if bands[key].shape != (n, len(BAND_NAMES)):
                raise ValueError(f"bands[{key!r}] has shape {bands[key].shape}, expected ({n}, {len(BAND_NAMES)})")
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "per_user", per_user)
        object.__setattr__(self, "protocol", dict(self.protocol))
        object.__setattr__(self, "bands", bands)

    @property
    def n_users(self) -> int:
        return int(self.users.size)

    @property
    def means(self) -> dict[str, float]:
        """``{"ndcg@10": mean over the evaluated users}``; NaN when no user was evaluated."""
        return {key: float(values.mean()) if values.size else math.nan for key, values in self.per_user.items()}

    @property
    def band_means(self) -> dict[str, dict[str, float]]:
        """Per band: ``recall@K`` (mean over users with held-out items in the band, NaN if none) and
        ``share@K`` (share of all filled top-K slots that hold an item of the band)."""
        out: dict[str, dict[str, float]] = {}
        for key, values in self.bands.items():
            if key.startswith("slots@"):
                total = values.sum()
                shares = values.sum(axis=0) / total if total else np.full(len(BAND_NAMES), math.nan)
                out["share@" + key.split("@", 1)[1]] = dict(zip(BAND_NAMES, map(float, shares), strict=True))
            else:
                present = ~np.isnan(values)
                counts = present.sum(axis=0)
                sums = np.where(present, values, 0.0).sum(axis=0)
                means = [float(s / c) if c else math.nan for s, c in zip(sums, counts, strict=True)]
                out[key] = dict(zip(BAND_NAMES, means, strict=True))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: protocol, number of users, means and band means."""
        summary: dict[str, Any] = {"protocol": dict(self.protocol), "n_users": self.n_users, "means": self.means}
        if self.bands:
            summary["bands"] = self.band_means
        return summary

    @classmethod
    def merge(cls, results: Sequence[EvalResult]) -> EvalResult:
        """One result from disjoint shards of the same evaluation (same protocol and keys), users ascending.

        Equal to evaluating all the shards' users at once: per-user values are concatenated, so means are
        over users, never means of shard means.
        """
        if not results:
            raise ValueError("merge needs at least one EvalResult")
        first = results[0]
        for other in results[1:]:
            if other.protocol != first.protocol:
                raise ValueError(f"cannot merge results of different protocols: {first.protocol} vs {other.protocol}")
            if set(other.per_user) != set(first.per_user) or set(other.bands) != set(first.bands):
                raise ValueError("cannot merge results with different metric keys")
        users = np.concatenate([r.users for r in results])
        order = np.argsort(users, kind="stable")
        users = users[order]
        if users.size > 1 and np.any(users[1:] == users[:-1]):
            raise ValueError(f"cannot merge overlapping shards: user {int(users[1:][users[1:] == users[:-1]][0])} "
                             "appears in more than one result")
        per_user = {key: np.concatenate([r.per_user[key] for r in results])[order] for key in first.per_user}
        bands = {key: np.concatenate([r.bands[key] for r in results])[order] for key in first.bands}
        return cls(users=users, per_user=per_user, protocol=first.protocol, bands=bands)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.means.items())
        return f"EvalResult({self.protocol.get('protocol')}, users={self.n_users}, {shown})"


PER_USER_FILE = "test_per_user.npz"
"""A tested run's per-user test values (``save_per_user``), the input of the paired significance tests."""


def save_per_user(result: EvalResult, path: str | Path) -> None:
    """Write ``result``'s users and per-user metric values to ``path`` (npz: ``users`` int64 (n,) and one
    float64 (n,) array per metric key, e.g. ``ndcg@10``), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez_compressed(fh, users=result.users, **dict(result.per_user))
    tmp.replace(path)


def load_per_user(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(users int64 (n,), {metric key: float64 (n,)})`` from a file written by ``save_per_user``."""
    with np.load(Path(path)) as data:
        if "users" not in data.files:
            raise ValueError(f"{path}: not a per-user results file (no 'users' array)")
        users = data["users"].astype(np.int64)
        values = {key: data[key].astype(np.float64) for key in data.files if key != "users"}
    for key, array in values.items():
        if array.shape != users.shape:
            raise ValueError(f"{path}: {key!r} has shape {array.shape}, expected {users.shape}")
    return users, values
