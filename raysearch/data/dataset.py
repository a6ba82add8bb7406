"""``Dataset``: the train/valid/test splits of one preprocessed dataset, with its id maps and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from raysearch.data.interactions import Interactions


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset, ready for training and evaluation.

    ``train``/``valid``/``test``: ``Interactions`` of shape (n_users, n_items); a user may have no
    validation or test items. ``valid_negatives``/``test_negatives``: int64 (n_users, N) sampled
    negatives for the sampled protocol (``None`` under full ranking); rows of users without held-out
    items are -1. ``user_ids``/``item_ids``: original ids (strings) indexed by internal id.
    ``provenance``: source files with sha256, preprocessing and split parameters (JSON-serialisable).
    ``extras``: named arrays a source may add (the synthetic generator's ground truth).
    """

    name: str
    train: Interactions
    valid: Interactions
    test: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    provenance: dict[str, Any]
    valid_negatives: np.ndarray | None = None
    test_negatives: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.train.shape
        for part in (self.valid, self.test):
            if part.shape != shape:
                raise ValueError(f"split shapes differ: {part.shape} vs {shape}")
        if len(self.user_ids) != shape[0] or len(self.item_ids) != shape[1]:
            raise ValueError("id maps do not match the matrix shape")
        for negs in (self.valid_negatives, self.test_negatives):
            if negs is not None and (negs.ndim != 2 or negs.shape[0] != shape[0]):
                raise ValueError("sampled negatives must have shape (n_users, N)")

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @cached_property
    def item_popularity(self) -> np.ndarray:
        """int64 (n_items,): train-only interaction count of each item."""
        pop = self.train.item_counts()
        pop.flags.writeable = False
        return pop

    @property
    def has_sampled_negatives(self) -> bool:
        return self.test_negatives is not None

    @property
    def fingerprint(self) -> str:
        """Short hash of sources and parameters (the cache key), recorded with every result."""
        return str(self.provenance.get("fingerprint", ""))

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, train={self.train.nnz}, "
            f"valid={self.valid.nnz}, test={self.test.nnz})"
        )
