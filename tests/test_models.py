"""Backbones: scores, propagation against dense references, gradients, regularisation, config errors."""

import numpy as np
import pytest
import torch

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.models import MODELS, make_model
from raysearch.models import base as models_base
from raysearch.models.base import l2_regulariser
from raysearch.models.graph import SparseGraph, mean_normalised_with_self_loops, symmetric_normalised


@pytest.fixture
def graph_train() -> Interactions:
    rng = np.random.default_rng(3)
    users = rng.integers(0, 12, 60)
    items = rng.integers(0, 9, 60)
    return Interactions.from_pairs(users, items, 12, 9)


@pytest.mark.parametrize("name", MODELS.names())
def test_score_full_scores_and_pairwise_agree(name, graph_train):
    torch.manual_seed(0)
    model = make_model(name, 12, 9, graph_train).eval()
    users = torch.tensor([0, 3, 7])
    full = model.full_scores(users)
    assert full.shape == (3, 9)
    items = torch.arange(9).expand(3, 9)
    assert torch.allclose(model.score(users, items), full, atol=1e-5)
    assert torch.allclose(model.score(users, torch.tensor([1, 2, 8])), full[[0, 1, 2], [1, 2, 8]], atol=1e-5)
    scorer = model.frozen_scorer()
    np.testing.assert_allclose(scorer(np.array([[0, 0], [3, 3]]), np.array([[1, 4], [0, 2]])),
                               full[[0, 0, 1, 1], [1, 4, 0, 2]].reshape(2, 2).numpy(), atol=1e-5)


@pytest.mark.parametrize("chunk_pairs", [8192, 3])  # one chunk; chunks of one row (5 x 2 pairs a row)
@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).bilinear])
def test_scorer_broadcasts_users_over_items_with_the_same_floats_as_repeated_ids(
        name, chunk_pairs, graph_train, monkeypatch):
    monkeypatch.setattr(models_base, "SCORER_CHUNK_PAIRS", chunk_pairs)
    torch.manual_seed(1)
    model = make_model(name, 12, 9, graph_train).eval()
    scorer = model.frozen_scorer()
    assert scorer.broadcasts
    users = np.array([0, 3, 7, 11])
    items = np.random.default_rng(0).integers(0, 9, (4, 2, 5))
    repeated = np.broadcast_to(users[:, None, None], items.shape)
    flat = scorer(repeated.ravel(), items.ravel()).reshape(items.shape)
    with torch.no_grad():  # the pair-by-pair formula: the user's row repeated for every item
        reps = model.propagate()
        user_rows = model.query(reps.users)[torch.as_tensor(repeated.copy())]
        by_pair = (user_rows * reps.items[torch.as_tensor(items)]).sum(-1)
    np.testing.assert_array_equal(flat, by_pair.numpy())
    np.testing.assert_array_equal(scorer(users[:, None, None], items), flat)
    # users of the larger shape: one item per user, broadcast the other way
    first = np.broadcast_to(items[:, :1, :1], items.shape)
    np.testing.assert_array_equal(scorer(repeated, items[:, :1, :1]),
                                  scorer(repeated.ravel(), first.ravel()).reshape(items.shape))
    one = scorer(np.int64(3), np.int64(items[1, 0, 0]))  # scalars in, a 0-d array out
    assert one.shape == () and one == flat[1, 0, 0]


@pytest.mark.parametrize("name", MODELS.names())
def test_gradients_reach_the_embeddings(name, graph_train):
    model = make_model(name, 12, 9, graph_train).train()
    loss = model.score(torch.tensor([0, 1]), torch.tensor([2, 3])).sum()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert model.tables.user_weight.grad[:2].abs().sum() > 0


def test_gmf_score_is_h_dot_elementwise_product(graph_train):
    model = make_model("gmf", 12, 9, graph_train, dim=4)
    with torch.no_grad():
        model.tables.user_weight.copy_(torch.arange(48, dtype=torch.float32).view(12, 4) / 10)
        model.tables.item_weight.copy_(torch.ones(9, 4))
        model.h.copy_(torch.tensor([[1.0], [0.0], [2.0], [-1.0]]))
    # user 1: p = [0.4, 0.5, 0.6, 0.7]; h^T (p * 1) = 0.4 + 1.2 - 0.7 = 0.9
    assert model.score(torch.tensor([1]), torch.tensor([5])).item() == pytest.approx(0.9)


def test_lightgcn_equals_dense_layer_mean(graph_train):
    model = make_model("lightgcn", 12, 9, graph_train, dim=5, n_layers=2)
    a = symmetric_normalised(graph_train).toarray()
    e0 = torch.cat([model.tables.user_weight, model.tables.item_weight]).detach().numpy().astype(np.float64)
    expected = (e0 + a @ e0 + a @ a @ e0) / 3
    reps = model.propagate()
    got = torch.cat([reps.users, reps.items]).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_symmetric_normalisation_hand_computed():
    # user 0 - items 0,1 ; user 1 - item 0. Degrees: u0 2, u1 1, i0 2, i1 1.
    train = Interactions.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 0]), 2, 2)
    a = symmetric_normalised(train).toarray()
    assert a[0, 2] == pytest.approx(1 / np.sqrt(2 * 2))  # u0-i0
    assert a[0, 3] == pytest.approx(1 / np.sqrt(2 * 1))  # u0-i1
    assert a[1, 2] == pytest.approx(1 / np.sqrt(1 * 2))  # u1-i0
    np.testing.assert_allclose(a, a.T)


@pytest.mark.parametrize("builder", [symmetric_normalised, mean_normalised_with_self_loops])
def test_sparse_propagation_backward_matches_dense(builder, graph_train):
    matrix = builder(graph_train)
    graph = SparseGraph(matrix)
    x = torch.randn(matrix.shape[0], 3, dtype=torch.float32, requires_grad=True)
    w = torch.randn(matrix.shape[0], 3)
    (graph.propagate(x) * w).sum().backward()
    dense = torch.tensor(matrix.toarray(), dtype=torch.float32)
    x2 = x.detach().clone().requires_grad_(True)
    ((dense @ x2) * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-5)
    assert graph.symmetric == (builder is symmetric_normalised)


def test_node_dropout_drops_the_same_entries_in_a_and_its_transpose(graph_train):
    matrix = mean_normalised_with_self_loops(graph_train)
    dropped = SparseGraph(matrix).with_dropout(0.5, torch.Generator().manual_seed(0))
    a = dropped.adjacency.to_dense()
    at = dropped.transpose.to_dense()
    torch.testing.assert_close(a.T, at)
    kept = (a != 0).sum().item()
    assert 0 < kept < matrix.nnz
    nonzero = a[a != 0]
    original = torch.tensor(matrix.toarray(), dtype=torch.float32)[a != 0]
    torch.testing.assert_close(nonzero, original * 2)


def test_l2_regulariser_is_half_squared_norm_of_layer0_rows_over_batch(graph_train):
    model = make_model("mf", 12, 9, graph_train, dim=2)
    with torch.no_grad():
        model.tables.user_weight.fill_(1.0)
        model.tables.item_weight.fill_(2.0)
    users, items = torch.tensor([0, 1]), torch.tensor([[0, 2], [1, 3]])
    _, _, u0, v0 = model.batch_rows(users, items)
    # (2 users * 2 dims * 1 + 4 items * 2 dims * 4) / 2 / 2 = (4 + 32) / 4 = 9
    assert l2_regulariser(2, u0, v0).item() == pytest.approx(9.0)


@pytest.mark.parametrize("name", ["lightgcn", "ngcf"])
def test_graph_models_regularise_layer0_not_final_rows(name, graph_train):
    model = make_model(name, 12, 9, graph_train).eval()
    reps = model.propagate()
    users, items = torch.tensor([0, 5]), torch.tensor([[1], [2]])
    u, v, u0, v0 = model.batch_rows(users, items, reps)
    torch.testing.assert_close(u0, model.tables.user_weight[users])
    torch.testing.assert_close(v0, model.tables.item_weight[items])
    torch.testing.assert_close(u, reps.users[users])


def test_ngcf_representation_concatenates_layers(graph_train):
    model = make_model("ngcf", 12, 9, graph_train, dim=4, layer_sizes=[3, 2]).eval()
    reps = model.propagate()
    assert reps.users.shape == (12, 4 + 3 + 2)
    # layers after 0 are L2-normalised per row
    norms = reps.items[:, 4:7].norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones_like(norms[norms > 0]), atol=1e-5)


def test_model_dropout_only_in_training(graph_train):
    model = make_model("ngcf", 12, 9, graph_train).eval()
    a = model.propagate().users
    b = model.propagate().users
    torch.testing.assert_close(a, b)


def test_unknown_model_and_parameter_errors(graph_train):
    with pytest.raises(ConfigError, match=r"unknown model 'svd' \(known: dmf, gmf, lightgcl, lightgcn, mf, neumf, ngcf\)"):
        make_model("svd", 12, 9, graph_train)
    with pytest.raises(ConfigError, match=r"unknown key 'model\.layers' \(known: dim, n_layers, init_std, init\)"):
        make_model("lightgcn", 12, 9, graph_train, layers=3)
    with pytest.raises(ConfigError, match=r"model\.dim: must be >= 1"):
        make_model("mf", 12, 9, graph_train, dim=0)
