"""The backbone contract (after RecBole's ``calculate_loss`` / ``predict`` / ``full_sort_predict``).

Every backbone here is *bilinear*: a user representation u (d,) and an item representation v (d,) give
the score ``<query(u), v>``, where ``query`` is the identity for dot-product models (MF, LightGCN, NGCF)
and ``u * h`` for GMF. That single shape lets one code path serve training, samplers' scoring functions,
full ranking and clustering.

Layer-0 parameters live in an ``EmbeddingTables`` module (``raysearch.models.embeddings``) so that the
distributed path can swap in row-sharded tables without touching the models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from raysearch.config import from_mapping
from raysearch.data.interactions import Interactions
from raysearch.models.embeddings import DenseEmbeddings, EmbeddingTables
from raysearch.registry import Registry

MODELS: Registry[type[Recommender]] = Registry("model")


@dataclass(frozen=True)
class Representations:
    """Final representations users (n_users, d'), items (n_items, d') and the layer-0 tables they were
    computed from, users0 (n_users, d), items0 (n_items, d) (the rows the L2 term applies to)."""

    users: Tensor
    items: Tensor
    users0: Tensor | None = None
    items0: Tensor | None = None


class Recommender(nn.Module, ABC):
    """A backbone. Subclasses declare ``name``, a frozen ``Params`` dataclass and ``propagate``."""

    name: ClassVar[str]
    Params: ClassVar[type]
    propagates: ClassVar[bool] = True  # representations need a pass over the whole graph (graph models)

    def __init__(self, n_users: int, n_items: int, params: Any, train: Interactions,
                 tables: EmbeddingTables | None = None):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.params = params
        self.tables = tables if tables is not None else DenseEmbeddings(n_users, n_items, params.dim)
        self.reset_parameters()

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def reset_parameters(self) -> None:
        """Initialise every parameter as the backbone's paper/official code does."""

    @abstractmethod
    def propagate(self) -> Representations:
        """Final user and item representations, differentiable w.r.t. the parameters."""

    def query(self, user_reps: Tensor) -> Tensor:
        """Map user representations (..., d) to the vectors that are dotted with item representations."""
        return user_reps

    # ------------------------------------------------------------------ derived
    def batch_rows(self, users: Tensor, items: Tensor, reps: Representations | None = None
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rows of one step: final user (B, d') and item (..., d') representations, and the layer-0 rows
        of the same ids (for the L2 term). ``items`` holds every item id of the step (positives and
        negatives, any shape). Graph models index ``reps`` (one propagation, computed by the caller and
        shared with the sampler's scorer); MF-like models look the rows up directly.
        """
        reps = reps if reps is not None else self.propagate()
        return reps.users[users], reps.items[items], reps.users0[users], reps.items0[items]

    def interaction(self, user_reps: Tensor, item_reps: Tensor) -> Tensor:
        """Scores from representations: user_reps (..., d) broadcast against item_reps (..., d)."""
        return (self.query(user_reps) * item_reps).sum(-1)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores of (user, item) pairs, shape of ``items`` (``users`` broadcast: (B,) vs (B, k) is fine)."""
        u, v, _, _ = self.batch_rows(users, items)
        if v.dim() > u.dim():
            u = u.unsqueeze(-2)
        return self.interaction(u, v)

    @torch.no_grad()
    def full_scores(self, users: Tensor, reps: Representations | None = None) -> Tensor:
        """Scores of ``users`` (b,) against every item: (b, n_items)."""
        reps = reps if reps is not None else self.propagate()
        return self.query(reps.users[users]) @ reps.items.T

    @torch.no_grad()
    def user_representations(self) -> np.ndarray:
        """float32 (n_users, d): what communities are clustered on (the final user representations)."""
        return self.propagate().users.detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def frozen_scorer(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A scoring function frozen at the current parameters: numpy (users, items) -> numpy float32."""
        reps = self.propagate()
        return make_scorer(self, reps)


def l2_regulariser(batch_size: int, *rows: Tensor) -> Tensor:
    """(sum of squared entries of ``rows``) / 2 / batch_size: LightGCN's L2 term on the batch's layer-0 rows."""
    return sum(r.pow(2).sum() for r in rows) / 2 / batch_size


def make_scorer(model: Recommender, reps: Representations) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fn(users, items) -> scores`` over fixed representations (no gradients), for samplers.

    ``users`` and ``items`` are equal-shape int arrays (numpy or torch); scores come back as numpy
    float32 of that shape.
    """
    user_q = model.query(reps.users).detach()
    items = reps.items.detach()
    device = user_q.device

    def score_fn(users, items_ids) -> np.ndarray:
        u = torch.as_tensor(np.asarray(users), dtype=torch.long, device=device)
        i = torch.as_tensor(np.asarray(items_ids), dtype=torch.long, device=device)
        with torch.no_grad():
            return (user_q[u] * items[i]).sum(-1).float().cpu().numpy()

    return score_fn


def make_model(name: str, n_users: int, n_items: int, train: Interactions,
               tables: EmbeddingTables | None = None, **params: Any) -> Recommender:
    """Build the registered backbone ``name``; unknown or bad parameters raise ``ConfigError``."""
    cls = MODELS.get(name)
    return cls(n_users, n_items, from_mapping(cls.Params, params, "model"), train, tables=tables)
