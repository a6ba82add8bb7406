"""The backbone contract (after RecBole's ``calculate_loss`` / ``predict`` / ``full_sort_predict``).

Every backbone here is *bilinear*: a user representation u (d,) and an item representation v (d,) give
the score ``<query(u), v>``, where ``query`` is the identity for dot-product models (MF, LightGCN, NGCF)
and ``u * h`` for GMF. That single shape lets one code path serve training, samplers' scoring functions,
full ranking and clustering.

Layer-0 parameters live in an ``EmbeddingTables`` module (``raysearch.models.embeddings``) so that the
distributed path can swap in row-sharded tables without touching the models.
"""

from __future__ import annotations

import math
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
from raysearch.samplers.base import broadcasting

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


SCORER_CHUNK_PAIRS = 8192  # (user, item) pairs a chunk of a CPU scorer's call: gathered rows stay in cache


def make_scorer(model: Recommender, reps: Representations) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fn(users, items) -> scores`` over fixed representations (no gradients), for samplers.

    ``users`` and ``items`` are int arrays (numpy or torch) of broadcastable shapes, e.g. (B, 1) and
    (B, k); scores come back as numpy float32 of the broadcast shape. Each user's row is gathered once
    and broadcast over its items, the product is taken in place in the gathered item rows, and on a CPU
    the work goes in chunks of about ``SCORER_CHUNK_PAIRS`` pairs along the first axis, so that the
    gathered rows stay in cache instead of filling fresh (B, k, d) buffers. The floats are the same as
    scoring repeated user ids pair by pair (same products, same sum over d); ``raysearch bench scoring``
    measures the difference, which is most of SRNS's and DNS's sampling time.
    """
    user_q = model.query(reps.users).detach()
    items = reps.items.detach()
    device = user_q.device
    # A GPU wants one large call; a CPU wants cache-sized chunks.
    chunk_pairs = SCORER_CHUNK_PAIRS if device.type == "cpu" else None

    def rows(table: Tensor, ids: np.ndarray) -> Tensor:
        """table's rows at int ``ids`` of any shape: ids.shape + (d,), a new tensor."""
        idx = torch.as_tensor(np.array(ids, dtype=np.int64), device=device)  # a writable copy
        return table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[-1])

    @broadcasting
    def score_fn(users, items_ids) -> np.ndarray:
        u_ids, i_ids = np.asarray(users, dtype=np.int64), np.asarray(items_ids, dtype=np.int64)
        shape = np.broadcast_shapes(u_ids.shape, i_ids.shape)
        if not shape:
            return score_fn(u_ids.reshape(1), i_ids.reshape(1)).reshape(())
        # same number of axes, so that a chunk of the first axis is a slice (or the whole of a size-1 axis)
        u_ids = u_ids.reshape((1,) * (len(shape) - u_ids.ndim) + u_ids.shape)
        i_ids = i_ids.reshape((1,) * (len(shape) - i_ids.ndim) + i_ids.shape)
        per_row = math.prod(shape[1:])
        step = shape[0] if chunk_pairs is None else max(1, chunk_pairs // max(1, per_row))
        out = torch.empty(shape, dtype=user_q.dtype, device=device)
        with torch.no_grad():
            for lo in range(0, shape[0], step):  # a loop over chunks of rows, not over pairs
                u = rows(user_q, u_ids[lo : lo + step] if u_ids.shape[0] > 1 else u_ids)
                v = rows(items, i_ids[lo : lo + step] if i_ids.shape[0] > 1 else i_ids)
                product = v.mul_(u) if torch.broadcast_shapes(u.shape, v.shape) == v.shape else u * v
                torch.sum(product, -1, out=out[lo : lo + step])
        return out.float().cpu().numpy()

    return score_fn


def make_model(name: str, n_users: int, n_items: int, train: Interactions,
               tables: EmbeddingTables | None = None, **params: Any) -> Recommender:
    """Build the registered backbone ``name``; unknown or bad parameters raise ``ConfigError``."""
    cls = MODELS.get(name)
    return cls(n_users, n_items, from_mapping(cls.Params, params, "model"), train, tables=tables)
