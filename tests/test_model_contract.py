"""The model contract: one scoring path (``score``, ``full_scores``, ``frozen_scorer``, ``batch_scores``)
that agrees for every registered backbone and for a model whose interaction is not bilinear, and the
model's own loss terms."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from raysearch.batch import Batch
from raysearch.data.interactions import Interactions
from raysearch.errors import SamplingError
from raysearch.models import MODELS, make_model
from raysearch.models import base as models_base
from raysearch.models.base import Recommender, Representations


@dataclass(frozen=True)
class MLPParams:
    dim: int = 4


class MLPScorer(Recommender):
    """A non-bilinear test backbone: score = w2 . tanh(W1 [u, v, u * v]), so no fast path applies."""

    name = "mlp-test"
    Params = MLPParams
    propagates = False
    bilinear = False

    def reset_parameters(self) -> None:
        d = self.params.dim
        self.tables.initialise(lambda w: nn.init.normal_(w, std=0.5))
        self.hidden = nn.Linear(3 * d, 5)
        self.out = nn.Linear(5, 1)

    def propagate(self) -> Representations:
        users, items = self.tables.user_table(), self.tables.item_table()
        return Representations(users, items, users, items)

    def interaction(self, user_reps: Tensor, item_reps: Tensor) -> Tensor:
        u, v = torch.broadcast_tensors(user_reps, item_reps)
        return self.out(torch.tanh(self.hidden(torch.cat([u, v, u * v], -1)))).squeeze(-1)


@pytest.fixture
def train() -> Interactions:
    rng = np.random.default_rng(3)
    return Interactions.from_pairs(rng.integers(0, 12, 60), rng.integers(0, 9, 60), 12, 9)


def build(name: str, train: Interactions) -> Recommender:
    torch.manual_seed(0)
    if name == MLPScorer.name:
        return MLPScorer(12, 9, MLPParams(), train).eval()
    return make_model(name, 12, 9, train).eval()


ALL_MODELS = [*MODELS.names(), MLPScorer.name]  # a new backbone is checked by registering it


@pytest.mark.parametrize("chunk_pairs", [1 << 20, 7])  # one chunk; chunks of fewer items than the catalogue
@pytest.mark.parametrize("name", ALL_MODELS)
def test_full_scores_equal_score_against_every_item_and_the_frozen_scorer(name, chunk_pairs, train, monkeypatch):
    monkeypatch.setattr(models_base, "FULL_RANKING_CHUNK_PAIRS", chunk_pairs)
    monkeypatch.setattr(models_base, "SCORER_CHUNK_PAIRS", chunk_pairs)
    model = build(name, train)
    users = torch.tensor([0, 3, 7, 11])
    with torch.no_grad():
        full = model.full_scores(users)
        assert full.shape == (4, 9)
        every = model.score(users, torch.arange(9).expand(4, 9))
    torch.testing.assert_close(full, every, atol=1e-5, rtol=1e-5)
    scorer = model.frozen_scorer()
    np.testing.assert_allclose(scorer(users.numpy()[:, None], np.tile(np.arange(9), (4, 1))), full.numpy(),
                               atol=1e-5, rtol=1e-5)
    # the evaluator's path: one propagation reused for every user batch
    reps = model.propagate()
    torch.testing.assert_close(model.full_scores(users[:2], reps), full[:2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_batch_scores_are_the_models_scores_of_positives_and_negatives(name, train):
    model = build(name, train)
    batch = Batch.of([0, 5, 5], [[1, 2], [3, 4], [0, 8]], [[6], [7], [2]])
    reps = model.propagate()
    step = model.batch_scores(batch, reps if model.propagates else None, reg=0.0)
    with torch.no_grad():
        ids = torch.as_tensor(batch.item_ids())
        expected = model.score(torch.as_tensor(batch.users), ids)
    torch.testing.assert_close(step.positive.detach(), expected[:, :2])
    torch.testing.assert_close(step.negative.detach(), expected[:, 2:])
    assert "l2" not in step.terms  # reg 0: no L2; a model's own terms (LightGCL's contrastive) remain


@pytest.mark.parametrize("name", ALL_MODELS)
def test_synthesised_negatives_score_like_the_items_they_copy(name, train):
    model = build(name, train)
    reps = model.propagate()
    negatives = np.array([[6, 1], [7, 7]])
    by_id = model.batch_scores(Batch.of([2, 4], [0, 3], negatives), reps, reg=0.0)
    vectors = reps.items[torch.as_tensor(negatives)].detach()  # (B, K, d'): representations, not ids
    by_vector = model.batch_scores(Batch.of([2, 4], [0, 3], negative_vectors=vectors), reps, reg=0.0)
    torch.testing.assert_close(by_vector.negative, by_id.negative)
    torch.testing.assert_close(by_vector.positive, by_id.positive)


def test_default_loss_term_is_the_l2_of_the_steps_layer0_rows(train):
    model = make_model("mf", 12, 9, train, dim=2)
    with torch.no_grad():
        model.tables.user_weight.fill_(1.0)
        model.tables.item_weight.fill_(2.0)
    step = model.batch_scores(Batch.of([0, 1], [0, 1], [2, 3]), reg=0.5)
    # (2 users x 2 dims x 1 + 4 items x 2 dims x 4) / 2 / 2 = 9, times reg
    assert set(step.terms) == {"l2"}
    assert step.terms["l2"].item() == pytest.approx(4.5)


def test_batch_rejects_inconsistent_shapes():
    with pytest.raises(SamplingError, match="negatives either as item ids or as vectors"):
        Batch.of([0, 1], [0, 1])
    with pytest.raises(SamplingError, match=r"log_q must be \(B, K\)"):
        Batch.of([0, 1], [0, 1], [[2, 3], [4, 5]], log_q=np.zeros((2, 1)))
