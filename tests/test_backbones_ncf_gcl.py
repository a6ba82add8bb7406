"""NeuMF, DMF and LightGCL against hand-computed values on tiny fixed weights, LightGCL's SVD view against
numpy's SVD of the same matrix, their configuration errors."""

import numpy as np
import pytest
import torch

from raysearch.batch import Batch
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.models import make_model
from raysearch.models.graph import symmetric_normalised


@pytest.fixture
def tiny() -> Interactions:
    """user 0: items 0, 2; user 1: item 1."""
    return Interactions.from_pairs(np.array([0, 0, 1]), np.array([0, 2, 1]), 2, 3)


def test_neumf_is_the_linear_layer_over_the_gmf_product_and_the_mlp(tiny):
    model = make_model("neumf", 2, 3, tiny, mf_dim=1, mlp_dim=1, mlp_layers=[1], dropout=0.0).eval()
    with torch.no_grad():
        model.tables.user_weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 0.0]]))  # [p_mf, p_mlp]
        model.tables.item_weight.copy_(torch.tensor([[3.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
        linear = model.mlp[1]
        linear.weight.copy_(torch.tensor([[1.0, -2.0]]))
        linear.bias.fill_(0.5)
        model.predict.weight.copy_(torch.tensor([[0.5, 2.0]]))
        model.predict.bias.fill_(-1.0)
    # gmf = 2 * 3 = 6; mlp = relu(1 * 1 - 2 * (-1) + 0.5) = 3.5; out = 0.5 * 6 + 2 * 3.5 - 1 = 9
    assert model.score(torch.tensor([0]), torch.tensor([0])).item() == pytest.approx(9.0)
    # user 0, item 1: gmf 2; mlp relu(1 - 2 + 0.5) = 0; out = 1 + 0 - 1 = 0
    assert model.full_scores(torch.tensor([0]))[0, 1].item() == pytest.approx(0.0)


def test_neumf_dropout_acts_only_while_training(tiny):
    torch.manual_seed(0)
    model = make_model("neumf", 2, 3, tiny, dropout=0.5)
    users, items = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2])
    model.eval()
    torch.testing.assert_close(model.score(users, items), model.score(users, items))
    model.train()
    assert not torch.equal(model.score(users, items), model.score(users, items))


@pytest.mark.parametrize("similarity,expected", [("dot", (16.0, 2.0)), ("cosine", (1.0, 1.0))])
def test_dmf_towers_read_the_training_rows_and_columns(tiny, similarity, expected):
    model = make_model("dmf", 2, 3, tiny, dim=1, user_layers=[1], item_layers=[1], similarity=similarity).eval()
    with torch.no_grad():
        model.tables.item_weight.copy_(torch.tensor([[1.0], [2.0], [3.0]]))  # W_u: one row per item
        model.tables.user_weight.copy_(torch.tensor([[0.5], [-1.0]]))  # W_i: one row per user
        model.user_mlp[1].weight.fill_(2.0)
        model.user_mlp[1].bias.fill_(0.0)
        model.item_mlp[1].weight.fill_(-1.0)
        model.item_mlp[1].bias.fill_(1.0)
    # users: R W_u = [1 + 3, 2] -> relu(2x) = [8, 4]; items: R^T W_i = [0.5, -1, 0.5] -> relu(1 - x) = [.5, 2, .5]
    reps = model.propagate()
    torch.testing.assert_close(reps.items[:, 0], torch.tensor([0.5, 2.0, 0.5]) if similarity == "dot"
                               else torch.ones(3))
    scores = model.score(torch.tensor([0, 1]), torch.tensor([1, 0]))
    torch.testing.assert_close(scores, torch.tensor(expected))


def test_dmf_never_sees_validation_or_test_items(tiny):
    model = make_model("dmf", 2, 3, tiny)
    dense = model.graph.adjacency.to_dense()
    assert dense.sum().item() == 2 * tiny.nnz  # the training pairs, both directions, nothing else


def lightgcl_model(train: Interactions, **params):
    torch.manual_seed(0)
    return make_model("lightgcl", train.n_users, train.n_items, train, **params).eval()


@pytest.fixture
def small() -> Interactions:
    rng = np.random.default_rng(4)
    return Interactions.from_pairs(rng.integers(0, 9, 40), rng.integers(0, 7, 40), 9, 7)


def test_lightgcl_svd_view_is_numpys_truncated_svd(small):
    model = lightgcl_model(small, svd_rank=3, n_layers=1)
    a_hat = symmetric_normalised(small).toarray()[:9, 9:]
    u, s, vt = np.linalg.svd(a_hat)
    low_rank = (u[:, :3] * s[:3]) @ vt[:3]
    got = (model.u_mul_s @ model.vt).double().numpy()  # sign-free: the reconstructed matrix
    np.testing.assert_allclose(got, low_rank, atol=1e-6)
    e_u0, e_i0 = model.tables.user_weight.detach().double().numpy(), model.tables.item_weight.detach().double().numpy()
    reps = model.propagate()
    np.testing.assert_allclose(reps.views["G_u"].detach().numpy(), e_u0 + low_rank @ e_i0, atol=1e-5)
    np.testing.assert_allclose(reps.views["G_i"].detach().numpy(), e_i0 + low_rank.T @ e_u0, atol=1e-5)


def test_lightgcl_main_view_sums_the_layers(small):
    model = lightgcl_model(small, n_layers=2)
    a_hat = symmetric_normalised(small).toarray()
    e0 = torch.cat([model.tables.user_weight, model.tables.item_weight]).detach().double().numpy()
    expected = e0 + a_hat @ e0 + a_hat @ a_hat @ e0  # a sum, not LightGCN's mean
    reps = model.propagate()
    np.testing.assert_allclose(torch.cat([reps.users, reps.items]).detach().numpy(), expected, atol=1e-5)


def test_lightgcl_contrastive_term_is_the_official_formula(small):
    model = lightgcl_model(small, temperature=0.5, cl_weight=0.3)
    reps = model.propagate()
    batch = Batch.of([0, 3, 3], [1, 2, 5], [4, 0, 6])
    terms = model.loss_terms(batch, reps, None, None, reg=0.01)
    g_u, g_i, e_u, e_i = (t.detach().double().numpy() for t in (reps.views["G_u"], reps.views["G_i"], reps.users,
                                                                   reps.items))

    def official(g, e, ids):  # HKUDS/LightGCL model.py, as written there
        neg = np.log(np.exp(g[ids] @ e.T / 0.5).sum(1) + 1e-8).mean()
        pos = np.clip((g[ids] * e[ids]).sum(1) / 0.5, -5.0, 5.0).mean()
        return neg - pos

    expected = 0.3 * (official(g_u, e_u, [0, 3, 3]) + official(g_i, e_i, [1, 2, 5, 4, 0, 6]))
    assert terms["contrastive"].item() == pytest.approx(expected, rel=1e-5)
    l2 = sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())
    assert terms["l2"].item() == pytest.approx(0.01 * l2, rel=1e-5)


def test_lightgcl_edge_dropout_keeps_the_transpose_of_what_it_dropped(small):
    model = lightgcl_model(small, edge_dropout=0.5)
    dropped = model.graph.with_dropout(0.5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(dropped.adjacency.to_dense().T, dropped.transpose.to_dense())
    assert not torch.equal(dropped.adjacency.to_dense(), dropped.adjacency.to_dense().T)  # dropped independently


@pytest.mark.parametrize("name,params,message", [
    ("neumf", {"mlp_layers": []}, r"model\.mlp_layers: must be one or more positive sizes, got \[\]"),
    ("neumf", {"mlp_layers": [64, 0]}, r"model\.mlp_layers: must be one or more positive sizes"),
    ("neumf", {"dropout": 1.0}, r"model\.dropout: must be in \[0, 1\), got 1\.0"),
    ("dmf", {"item_layers": [32]}, r"model\.item_layers: must end with the user MLP's size 64, got 32"),
    ("dmf", {"similarity": "euclid"}, r"model\.similarity: must be one of dot, cosine, got 'euclid'"),
    ("lightgcl", {"svd_rank": 0}, r"model\.svd_rank: must be >= 1, got 0"),
    ("lightgcl", {"temperature": 0}, r"model\.temperature: must be > 0, got 0\.0"),
    ("lightgcl", {"edge_dropout": -0.1}, r"model\.edge_dropout: must be in \[0, 1\)"),
    ("lightgcl", {"svd_rank": 8}, r"model\.svd_rank: must be <= the training matrix's smaller side \(7 = min\(9 users, "
                                  r"7 items\)\), got 8"),
])
def test_bad_model_keys_name_the_key(name, params, message, small):
    with pytest.raises(ConfigError, match=message):
        make_model(name, 9, 7, small, **params)
