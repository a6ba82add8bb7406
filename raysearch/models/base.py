"""The backbone contract (after RecBole's ``calculate_loss`` / ``predict`` / ``full_sort_predict``).

A backbone maps its parameters to final representations (``propagate``: users (n_users, d'), items
(n_items, d')) and scores a user representation against an item representation with ``interaction``.
That is the one scoring path: training (``batch_scores``), every sampler's scorer (``frozen_scorer``),
full ranking (``full_scores``), the sampled protocol (``score``), clustering (``user_representations``)
and the benchmarks all go through it. The model also owns its loss terms (``loss_terms``: the L2 on
the step's layer-0 rows by default; a contrastive term, say, for a model that has one), which the trainer
adds to the ranking loss.

A *bilinear* model (``bilinear = True``: MF, GMF, DMF, LightGCN, NGCF, LightGCL) scores ``<query(u), v>``, where
``query`` is the identity for dot-product models and ``u * h`` for GMF; it gets the fast paths (one
matmul for full ranking, a broadcast in-place scorer for samplers). A model whose ``interaction`` is not
bilinear (an MLP: NeuMF) sets ``bilinear = False`` and is served by the same methods, chunked over
(user, item) pairs so that full ranking of a Gowalla-sized catalogue fits in memory.

Layer-0 parameters live in an ``EmbeddingTables`` module (``raysearch.models.embeddings``) so that the
distributed path can swap in row-sharded tables without touching the models.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from raysearch.batch import Batch
from raysearch.config import from_mapping
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.models.embeddings import DenseEmbeddings, EmbeddingTables
from raysearch.registry import Registry
from raysearch.scorer import ScoreFn, broadcasting

MODELS: Registry[type[Recommender]] = Registry("model")


@dataclass(frozen=True)
class Representations:
    """Final representations users (n_users, d'), items (n_items, d') and the layer-0 tables they were
    computed from, users0 (n_users, d), items0 (n_items, d) (the rows the L2 term applies to); ``views``:
    whatever else one propagation computed that the model's loss terms need."""

    users: Tensor
    items: Tensor
    users0: Tensor | None = None
    items0: Tensor | None = None
    views: Mapping[str, Tensor] = field(default_factory=dict)  # a model's extra views (LightGCL's SVD view)


@dataclass(frozen=True)
class StepScores:
    """What the model gives the trainer for one step: scores of the positives (B, P) and of the
    negatives (B, K), and its own loss terms by name (scalars, weights applied), e.g. ``{"l2": ...}``."""

    positive: Tensor
    negative: Tensor
    terms: dict[str, Tensor]


class Recommender(nn.Module, ABC):
    """A backbone. Subclasses declare ``name``, a frozen ``Params`` dataclass and ``propagate``; a model
    that is not bilinear also overrides ``interaction`` and sets ``bilinear = False``."""

    name: ClassVar[str]
    Params: ClassVar[type]
    propagates: ClassVar[bool] = True  # representations need a pass over the whole graph (graph models)
    bilinear: ClassVar[bool] = True  # interaction(u, v) == <query(u), v>: matmul full ranking, fast scorer
    # Why Ray Train with row-sharded tables cannot run this backbone (None: it can).
    unshardable: ClassVar[str | None] = None
    # How the final representation pools per-layer ones ("mean", "concat"), for samplers that mix layers
    # (MixGCF); None: the backbone has no per-layer item representations to mix.
    layer_pool: ClassVar[str | None] = None

    def __init__(self, n_users: int, n_items: int, params: Any, train: Interactions,
                 tables: EmbeddingTables | None = None):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.params = params
        self.tables = tables if tables is not None else DenseEmbeddings(n_users, n_items, params.dim)
        self.keep_layers = False  # graph models: also return per-layer representations (reps.views)
        self.reset_parameters()

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def reset_parameters(self) -> None:
        """Initialise every parameter as the backbone's paper/official code does."""

    @abstractmethod
    def propagate(self) -> Representations:
        """Final user and item representations, differentiable w.r.t. the parameters."""

    def query(self, user_reps: Tensor) -> Tensor:
        """Bilinear models: map user representations (..., d) to the vectors dotted with item representations."""
        return user_reps

    def interaction(self, user_reps: Tensor, item_reps: Tensor) -> Tensor:
        """Scores from representations: user_reps (..., d') broadcast against item_reps (..., d') -> (...).

        The default is the bilinear ``<query(u), v>``; a model overriding it must accept broadcastable
        leading shapes (e.g. (b, 1, d') against (1, c, d')) and set ``bilinear = False``."""
        return (self.query(user_reps) * item_reps).sum(-1)

    def loss_terms(self, batch: Batch, reps: Representations | None, users0: Tensor, items0: Tensor,
                   reg: float) -> dict[str, Tensor]:
        """The model's own loss terms for one step, by name, weights applied (each logged on its own).

        ``reps``: this step's propagation (None for models that do not propagate). ``users0`` (B, d),
        ``items0`` (B, P + K, d): the layer-0 rows of the step's ids. Default: LightGCN's L2, ``reg`` x
        (sum of squared entries) / 2 / B, named "l2" (none when ``reg`` is 0); for a batch of groups
        (``batch.groups``: GDNS's summed group-wise loss) the L2 of its N x K (u, i, j) pairs
        (``group_l2_regulariser``), so that ``reg`` weighs a pair's L2 against its loss term as it does
        under a mean pairwise loss.
        """
        if reg <= 0:
            return {}
        if batch.groups:
            return {"l2": reg * group_l2_regulariser(batch.size, users0, items0, batch.n_positives)}
        extra = () if batch.negative_rows0 is None else (batch.negative_rows0,)
        return {"l2": reg * l2_regulariser(batch.size, users0, items0, *extra)}

    # ------------------------------------------------------------------ derived
    def layer_representations(self, reps: Representations) -> tuple[Tensor, Tensor]:
        """Per-layer representations users (n_users, L + 1, d), items (n_items, L + 1, d) of one propagation,
        pooled by ``layer_pool`` into ``reps.users`` / ``reps.items``. Graph models keep them in
        ``reps.views`` when ``keep_layers`` is set (a layer-mixing sampler sets it)."""
        if self.layer_pool is None:
            raise ConfigError(f"model {self.name!r} has no per-layer representations to mix")
        if "user_layers" not in reps.views:
            return reps.users.unsqueeze(1), reps.items.unsqueeze(1)  # no propagation: one layer
        return reps.views["user_layers"], reps.views["item_layers"]

    def batch_rows(self, users: Tensor, items: Tensor, reps: Representations | None = None
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rows of one step: final user (B, d') and item (..., d') representations, and the layer-0 rows
        of the same ids (for the L2 term). ``items`` holds every item id of the step (positives and
        negatives, any shape). Graph models index ``reps`` (one propagation, computed by the caller and
        shared with the sampler's scorer); MF-like models look the rows up directly.
        """
        reps = reps if reps is not None else self.propagate()
        return reps.users[users], reps.items[items], reps.users0[users], reps.items0[items]

    def batch_scores(self, batch: Batch, reps: Representations | None = None, reg: float = 0.0) -> StepScores:
        """Differentiable scores of one step and the model's loss terms (``loss_terms``).

        One lookup for positives and negatives: (B, P + K) item ids. Synthesised negatives
        (``batch.negative_vectors``, (B, K, d')) are scored against the users' final rows as they are.
        ``reps``: this step's propagation (graph models), shared with the sampler's scorer.
        """
        device = next(self.parameters()).device
        u_t = torch.as_tensor(batch.users, device=device)
        i_t = torch.as_tensor(batch.item_ids(), device=device)
        u, v, u0, v0 = self.batch_rows(u_t, i_t, reps)
        scores = self.interaction(u.unsqueeze(1), v)  # (B, P + K) or (B, P)
        p = batch.n_positives
        positive, negative = scores[:, :p], scores[:, p:]
        if batch.negative_vectors is not None:
            negative = self.interaction(u.unsqueeze(1), batch.negative_vectors.to(u.device))
        return StepScores(positive, negative, self.loss_terms(batch, reps, u0, v0, reg))

    def score(self, users: Tensor, items: Tensor, reps: Representations | None = None) -> Tensor:
        """Scores of (user, item) pairs, shape of ``items`` (``users`` broadcast: (B,) vs (B, k) is fine).
        Differentiable unless called under ``torch.no_grad``."""
        u, v, _, _ = self.batch_rows(users, items, reps)
        if v.dim() > u.dim():
            u = u.unsqueeze(-2)
        return self.interaction(u, v)

    @torch.no_grad()
    def full_scores(self, users: Tensor, reps: Representations | None = None) -> Tensor:
        """Scores of ``users`` (b,) against every item: (b, n_items). Bilinear: one matmul; otherwise
        ``interaction`` over chunks of at most ``FULL_RANKING_CHUNK_PAIRS`` (user, item) pairs."""
        reps = reps if reps is not None else self.propagate()
        user_rows = reps.users[users.to(reps.users.device)]
        if self.bilinear:
            return self.query(user_rows) @ reps.items.T
        b = user_rows.shape[0]
        out = torch.empty((b, self.n_items), dtype=user_rows.dtype, device=user_rows.device)
        step = max(1, FULL_RANKING_CHUNK_PAIRS // max(1, b))
        for lo in range(0, self.n_items, step):  # a loop over chunks of items, not over pairs
            out[:, lo : lo + step] = self.interaction(user_rows.unsqueeze(1), reps.items[lo : lo + step].unsqueeze(0))
        return out

    @torch.no_grad()
    def user_representations(self) -> np.ndarray:
        """float32 (n_users, d'): what communities are clustered on (the final user representations)."""
        return self.propagate().users.detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def frozen_scorer(self, reps: Representations | None = None) -> ScoreFn:
        """A scoring function frozen at the current parameters (or at ``reps``): numpy (users, items) ->
        numpy float32, for samplers (see ``make_scorer``)."""
        return make_scorer(self, reps if reps is not None else self.propagate())


class TableLookup(Recommender):
    """A backbone without propagation (MF, GMF, NeuMF): its representations are its layer-0 rows."""

    propagates = False

    def propagate(self) -> Representations:
        users, items = self.tables.user_table(), self.tables.item_table()
        return Representations(users, items, users, items)

    def batch_rows(self, users: Tensor, items: Tensor, reps: Representations | None = None):
        # No propagation: rows are looked up directly (cheap, and sharded tables fetch only these rows);
        # the representations are the layer-0 rows themselves.
        u, v = self.tables.users(users), self.tables.items(items)
        return u, v, u, v


def l2_regulariser(batch_size: int, *rows: Tensor) -> Tensor:
    """(sum of squared entries of ``rows``) / 2 / batch_size: LightGCN's L2 term on the batch's layer-0 rows."""
    return sum(r.pow(2).sum() for r in rows) / 2 / batch_size


def group_l2_regulariser(batch_size: int, users0: Tensor, items0: Tensor, n_positives: int) -> Tensor:
    """The L2 term of a batch of groups, one (u, i, j) row's L2 for each of a user's N x K pairs.

    ``users0`` (B, d); ``items0`` (B, N + K, d): the positive group's rows, then the negative group's. GDNS's
    loss sums each user's N x K hinge terms (its eq. 6) where BPR averages one pair a row; under both, ``reg``
    weighs each pair's L2, |p_u|^2 + |q_i|^2 + |q_j|^2 over 2, against that pair's loss term with one
    weight when the group loss's L2 is

        (sum over users of N K |p_u|^2 + K sum_i |q_i|^2 + N sum_j |q_j|^2) / 2 / B,

    which is ``l2_regulariser`` of the B N K rows (u, i, j) times N K (the data term's sum over a user's
    pairs is N K times their mean). A row appearing in several pairs counts once a pair (a positive drawn
    twice: twice K).
    """
    n = n_positives
    k = items0.shape[1] - n
    pos, neg = items0[:, :n], items0[:, n:]
    return (n * k * users0.pow(2).sum() + k * pos.pow(2).sum() + n * neg.pow(2).sum()) / 2 / batch_size


SCORER_CHUNK_PAIRS = 8192  # (user, item) pairs a chunk of a CPU scorer's call: gathered rows stay in cache
FULL_RANKING_CHUNK_PAIRS = 1 << 18  # (user, item) pairs a chunk when a non-bilinear model ranks every item


def make_scorer(model: Recommender, reps: Representations) -> ScoreFn:
    """``fn(users, items) -> scores`` over fixed representations (no gradients), for samplers.

    ``users`` and ``items`` are int arrays (numpy or torch) of broadcastable shapes, e.g. (B, 1) and
    (B, k); scores come back as numpy float32 of the broadcast shape. Each user's row is gathered once
    and broadcast over its items, the product is taken in place in the gathered item rows, and on a CPU
    the work goes in chunks of about ``SCORER_CHUNK_PAIRS`` pairs along the first axis, so that the
    gathered rows stay in cache instead of filling fresh (B, k, d) buffers. The floats are the same as
    scoring repeated user ids pair by pair (same products, same sum over d); ``raysearch bench scoring``
    measures the difference, which is most of SRNS's and DNS's sampling time. A model that is not
    bilinear is scored by its ``interaction`` on the same chunks (the gathered rows, no in-place product).
    """
    bilinear = model.bilinear
    user_q = (model.query(reps.users) if bilinear else reps.users).detach()
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
                if not bilinear:
                    out[lo : lo + step] = model.interaction(u, v)
                    continue
                product = v.mul_(u) if torch.broadcast_shapes(u.shape, v.shape) == v.shape else u * v
                torch.sum(product, -1, out=out[lo : lo + step])
        return out.float().cpu().numpy()

    return score_fn


def make_model(name: str, n_users: int, n_items: int, train: Interactions,
               tables: EmbeddingTables | None = None, **params: Any) -> Recommender:
    """Build the registered backbone ``name``; unknown or bad parameters raise ``ConfigError``."""
    cls = MODELS.get(name)
    return cls(n_users, n_items, from_mapping(cls.Params, params, "model"), train, tables=tables)
