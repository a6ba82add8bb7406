"""``InteractionTable``: the raw rows of one part of a dataset, as read from a file (or generated).

A table is what readers produce and what preprocessing filters: parallel arrays of user and item ids
(the source's original ids, or internal ids once encoded), with optional ratings and timestamps, the
1-based source line of each row (so that an error found late still names the file and line), and the
part it belongs to (``all``, ``train``, ``valid`` or ``test``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

PARTS = ("all", "train", "valid", "test")


def as_id_array(values: np.ndarray) -> np.ndarray:
    """Ids as int64 when they are integers, else as a numpy unicode array (never ``object``)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "b":
        raise TypeError("ids cannot be booleans")
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8")
    return values.astype(str, copy=False)


@dataclass(frozen=True, eq=False)
class InteractionTable:
    """Rows of (user, item[, rating][, timestamp]) of one part.

    ``users``/``items``: (n,) int64 or unicode ids; ``ratings``: float64 (n,) or None; ``timestamps``:
    int64 or float64 (n,) (seconds, or any order-preserving number) or None; ``lines``: int64 (n,)
    1-based line (row, for binary files) of each row in ``source``, or None once rows of several files are
    pooled; ``part``: one of ``PARTS``; ``source``: the file the rows came from ('' when generated).
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    lines: np.ndarray | None = None
    part: str = "all"
    source: str = ""

    def __post_init__(self) -> None:
        users = as_id_array(self.users)
        items = as_id_array(self.items)
        n = users.shape[0]
        if users.ndim != 1 or items.shape != (n,):
            raise ValueError(
                f"users and items must be 1-d of equal length, got {users.shape} and {items.shape}"
            )
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "items", items)
        if self.ratings is not None:
            ratings = np.asarray(self.ratings, dtype=np.float64)
            if ratings.shape != (n,):
                raise ValueError(f"ratings have shape {ratings.shape}, expected ({n},)")
            object.__setattr__(self, "ratings", ratings)
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps)
            ts = (
                ts.astype(np.int64, copy=False)
                if ts.dtype.kind in "iu"
                else ts.astype(np.float64, copy=False)
            )
            if ts.shape != (n,):
                raise ValueError(f"timestamps have shape {ts.shape}, expected ({n},)")
            object.__setattr__(self, "timestamps", ts)
        if self.lines is not None:
            lines = np.asarray(self.lines, dtype=np.int64)
            if lines.shape != (n,):
                raise ValueError(f"lines have shape {lines.shape}, expected ({n},)")
            object.__setattr__(self, "lines", lines)
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {self.part!r}")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def has_ratings(self) -> bool:
        return self.ratings is not None

    @property
    def has_timestamps(self) -> bool:
        return self.timestamps is not None

    def take(self, index: np.ndarray) -> InteractionTable:
        """The rows selected by a boolean mask or an integer index array, in that order."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return replace(
            self,
            users=self.users[index],
            items=self.items[index],
            ratings=pick(self.ratings),
            timestamps=pick(self.timestamps),
            lines=pick(self.lines),
        )

    def with_ids(self, users: np.ndarray, items: np.ndarray) -> InteractionTable:
        """The same rows with their ids replaced (e.g. by internal ids)."""
        return replace(self, users=users, items=items)

    def where(self, row: int) -> str:
        """``source:line`` of row ``row`` (``source`` alone when lines are unknown), for error messages."""
        if self.lines is None:
            return self.source
        return f"{self.source}:{int(self.lines[row])}"

    @staticmethod
    def concat(tables: Sequence[InteractionTable], part: str = "all") -> InteractionTable:
        """Rows of several tables, in order, as one part. Ratings/timestamps survive only if all have them.

        Integer and string ids do not mix: if any table has string ids, all ids become strings.
        """
        if not tables:
            raise ValueError("nothing to concatenate")
        if len(tables) == 1:
            only = tables[0]
            return replace(only, part=part)

        def ids(arrays: list[np.ndarray]) -> np.ndarray:
            if all(a.dtype.kind == "i" for a in arrays):
                return np.concatenate(arrays)
            return np.concatenate([a.astype(str) for a in arrays])

        def optional(arrays: list[np.ndarray | None]) -> np.ndarray | None:
            if any(a is None for a in arrays):
                return None
            if all(a.dtype.kind == "i" for a in arrays):  # type: ignore[union-attr]
                return np.concatenate(arrays)  # type: ignore[arg-type]
            return np.concatenate([a.astype(np.float64) for a in arrays])  # type: ignore[union-attr]

        return InteractionTable(
            users=ids([t.users for t in tables]),
            items=ids([t.items for t in tables]),
            ratings=optional([t.ratings for t in tables]),
            timestamps=optional([t.timestamps for t in tables]),
            lines=None,  # rows now come from several files
            part=part,
            source="+".join(t.source for t in tables),
        )

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}"
            for name, a in (("ratings", self.ratings), ("timestamps", self.timestamps))
            if a is not None
        )
        return f"InteractionTable(part={self.part!r}, rows={len(self)}{extra}, source={self.source!r})"
