"""One training step's rows, as the sampler produced them and the model and loss consume them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raysearch.errors import SamplingError


@dataclass(frozen=True)
class Batch:
    """The rows of one step.

    ``users`` int64 (B,). ``positives`` int64 (B, P): P = 1 for (user, positive) rows, the group size for a
    sampler that builds positive groups (GDNS). ``negatives`` int64 (B, K) item ids, or None when the
    negatives are synthesised. ``negative_vectors``: a tensor (B, K, d') of synthesised negatives' final
    representations (MixGCF-style samplers), scored by the model's ``interaction``; None for item ids.
    ``log_q`` float64 (B, K): log q(j | u) of each drawn negative, where the sampler knows it in closed form
    and the loss asked for it (logQ correction); else None. ``negative_rows0`` (B, K, d): the layer-0 part
    of synthesised negatives (MixGCF's L2 includes it). ``groups``: the positives and negatives are groups
    whose N x K (positive, negative) pairs the loss crosses (GDNS's group-wise loss), which the L2 term
    weighs per pair (``raysearch.models.base.group_l2_regulariser``).
    """

    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray | None = None
    negative_vectors: Any = None
    log_q: np.ndarray | None = None
    negative_rows0: Any = None  # (B, K, d): synthesised negatives' layer-0 part, for the L2 term
    sampler_terms: Any = None  # a synthesising sampler's own loss terms by name (DENS's gating loss)
    groups: bool = False  # positive and negative groups crossed in N x K pairs (GDNS), not (B, 1 + K) rows

    def __post_init__(self) -> None:
        b = self.users.shape[0]
        if self.users.ndim != 1 or self.positives.ndim != 2 or self.positives.shape[0] != b:
            raise SamplingError(f"batch: users must be (B,) and positives (B, P), got {self.users.shape} "
                                f"and {self.positives.shape}")
        if (self.negatives is None) == (self.negative_vectors is None):
            raise SamplingError("batch: give negatives either as item ids or as vectors, not both or neither")
        k = self.n_negatives
        if self.negatives is not None and self.negatives.shape != (b, k):
            raise SamplingError(f"batch: negatives must be (B, K) = ({b}, K), got {self.negatives.shape}")
        if self.negative_vectors is not None and (self.negative_vectors.dim() != 3
                                                  or self.negative_vectors.shape[0] != b):
            raise SamplingError(f"batch: negative_vectors must be (B, K, d), got {tuple(self.negative_vectors.shape)}")
        if self.log_q is not None and self.log_q.shape != (b, k):
            raise SamplingError(f"batch: log_q must be (B, K) = ({b}, {k}), got {self.log_q.shape}")

    @classmethod
    def of(cls, users: Any, positives: Any, negatives: Any = None, **kwargs: Any) -> Batch:
        """A batch from array-likes: ``positives`` (B,) or (B, P), ``negatives`` (B,) or (B, K)."""
        users = np.asarray(users, dtype=np.int64)
        positives = np.asarray(positives, dtype=np.int64).reshape(users.size, -1)
        if negatives is not None:
            negatives = np.asarray(negatives, dtype=np.int64).reshape(users.size, -1)
        return cls(users, positives, negatives, **kwargs)

    @property
    def size(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_positives(self) -> int:
        return int(self.positives.shape[1])

    @property
    def n_negatives(self) -> int:
        if self.negatives is not None:
            return int(self.negatives.shape[1])
        return int(self.negative_vectors.shape[1])

    def item_ids(self) -> np.ndarray:
        """int64 (B, P + K): positives then negatives (P when the negatives are vectors)."""
        if self.negatives is None:
            return self.positives
        return np.concatenate([self.positives, self.negatives], axis=1)
