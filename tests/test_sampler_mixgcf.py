"""MixGCF against a brute-force reference (positive mixing, hop mixing, pooling), its reduction to DNS
without positive mixing on a 0-hop model, and training through the trainer."""

import numpy as np
import pytest
import torch

from raysearch.data.interactions import Interactions
from raysearch.models import make_model
from raysearch.samplers import make_sampler


@pytest.fixture
def train() -> Interactions:
    rng = np.random.default_rng(2)
    return Interactions.from_pairs(rng.integers(0, 10, 50), rng.integers(0, 12, 50), 10, 12)


def layers_of(model):
    model.keep_layers = True
    return model.layer_representations(model.propagate())


@pytest.mark.parametrize("name,params", [("mf", {}), ("gmf", {}), ("lightgcn", {"n_layers": 2}),
                                         ("ngcf", {"dim": 8, "layer_sizes": [8, 8], "node_dropout": 0.0,
                                                   "message_dropout": 0.0})])
def test_mixgcf_matches_a_brute_force_reference(name, params, train):
    torch.manual_seed(0)
    model = make_model(name, 10, 12, train, **params).eval()
    sampler = make_sampler("mixgcf", train, n_negs=5)
    user_layers, item_layers = layers_of(model)
    users, pos = np.array([0, 3, 3, 9]), np.array([1, 2, 7, 0])
    made = sampler.synthesise(users, pos, 2, np.random.default_rng(4), user_layers, item_layers,
                              model.layer_pool, model.query)
    vectors, rows0 = made.vectors, made.rows0
    assert dict(made.terms) == {}
    # the same candidates and mixing weights, from the same generator in the same order
    g = np.random.default_rng(4)
    cand = sampler.complement.uniform(np.repeat(users, 2 * 5), g).reshape(4, 2, 5)
    alpha = g.random((4, 2, 1, item_layers.shape[1], 1))[:, :, 0, :, 0]  # (B, k, L+1)
    ul, il = user_layers.detach().double().numpy(), item_layers.detach().double().numpy()
    n_layers = il.shape[1]
    h = model.h.detach().double().numpy()[:, 0] if name == "gmf" else 1.0
    for b in range(4):
        anchor = ul[users[b]].mean(0) if model.layer_pool == "mean" else None
        for s in range(2):
            picked = []
            for layer in range(n_layers):
                mixes = [alpha[b, s, layer] * il[pos[b], layer] + (1 - alpha[b, s, layer]) * il[j, layer]
                         for j in cand[b, s]]
                a = anchor if anchor is not None else ul[users[b], layer]
                picked.append(mixes[int(np.argmax([np.dot(a * h, m) for m in mixes]))])
            expected = np.mean(picked, 0) if model.layer_pool == "mean" else np.concatenate(picked)
            np.testing.assert_allclose(vectors[b, s].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(rows0[b, s].detach().numpy(), picked[0][: rows0.shape[-1]], rtol=1e-5,
                                       atol=1e-6)


def test_mixgcf_without_positive_mixing_on_mf_is_dns_over_the_same_candidates(train):
    torch.manual_seed(1)
    model = make_model("mf", 10, 12, train).eval()
    mixgcf = make_sampler("mixgcf", train, n_negs=6, mix_positive=False)
    dns = make_sampler("dns", train, num_candidates=6)
    users, pos = np.repeat(np.arange(10), 3), np.zeros(30, dtype=np.int64)
    user_layers, item_layers = layers_of(model)
    vectors = mixgcf.synthesise(users, pos, 2, np.random.default_rng(9), user_layers, item_layers, "mean",
                                model.query).vectors
    chosen = dns.sample(users, pos, 2, rng=np.random.default_rng(9), score_fn=model.frozen_scorer())
    torch.testing.assert_close(vectors, model.tables.item_weight[torch.as_tensor(chosen)].detach())
    # and the item-id view of MixGCF is that DNS choice too
    ids = mixgcf.sample(users, pos, 2, rng=np.random.default_rng(9), score_fn=model.frozen_scorer())
    np.testing.assert_array_equal(ids, chosen)


def test_mixgcf_gradient_reaches_the_positive_and_the_chosen_candidates(train):
    torch.manual_seed(0)
    model = make_model("mf", 10, 12, train)
    sampler = make_sampler("mixgcf", train, n_negs=3)
    user_layers, item_layers = layers_of(model)
    vectors = sampler.synthesise(np.array([2]), np.array([5]), 1, np.random.default_rng(0), user_layers,
                                 item_layers, "mean", model.query).vectors
    vectors.sum().backward()
    touched = np.flatnonzero(model.tables.item_weight.grad.abs().sum(1).numpy())
    assert 5 in touched and 1 <= touched.size <= 2  # the positive and the one candidate hop mixing kept


def _mix_all_candidates(sampler, users, pos, k, rng, user_layers, item_layers, pool, query):
    """The earlier synthesis: every candidate mixed under autograd, the chosen one gathered (a reference)."""
    cand = sampler.candidates(users, k, rng)
    n_layers = item_layers.shape[1]
    alpha = torch.as_tensor(rng.random((users.size, k, 1, n_layers, 1)), dtype=item_layers.dtype)
    positive = item_layers[torch.as_tensor(pos)]
    mixed = alpha * positive[:, None, None] + (1 - alpha) * item_layers[torch.as_tensor(cand)]
    user_rows = user_layers[torch.as_tensor(users)]
    anchor = user_rows.mean(dim=1, keepdim=True) if pool == "mean" else user_rows
    best = (query(anchor)[:, None, None] * mixed).sum(-1).argmax(dim=2).detach()
    chosen = mixed.gather(2, best[:, :, None, :, None].expand(-1, -1, 1, -1, mixed.shape[-1]))[:, :, 0]
    return chosen.mean(dim=2) if pool == "mean" else chosen.flatten(2), chosen[:, :, 0]


@pytest.mark.parametrize("name,k", [("lightgcn", 1), ("lightgcn", 3), ("ngcf", 1), ("mf", 2)])
def test_mixgcf_mixing_only_the_chosen_candidates_gives_the_same_floats_and_gradients(name, k, train):
    params = {"ngcf": {"dim": 8, "layer_sizes": [8, 8], "node_dropout": 0.0, "message_dropout": 0.0},
              "lightgcn": {"n_layers": 2}}.get(name, {})
    torch.manual_seed(3)
    model = make_model(name, 10, 12, train, **params)
    sampler = make_sampler("mixgcf", train, n_negs=7)
    users, pos = np.array([0, 3, 3, 9, 5, 5]), np.array([1, 2, 7, 0, 4, 4])
    out = []
    for synthesise in (sampler.synthesise, lambda *a: _mix_all_candidates(sampler, *a)):
        model.zero_grad()
        user_layers, item_layers = layers_of(model)
        made = synthesise(users, pos, k, np.random.default_rng(5), user_layers, item_layers, model.layer_pool,
                          model.query)
        vectors, rows0 = (made.vectors, made.rows0) if hasattr(made, "vectors") else made
        weights = torch.linspace(-1, 1, vectors.numel()).reshape(vectors.shape)
        ((vectors * weights).sum() + rows0.square().sum()).backward()
        out.append((vectors.detach().clone(), rows0.detach().clone(),
                    [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (v_new, r_new, g_new), (v_old, r_old, g_old) = out
    assert torch.equal(v_new, v_old) and torch.equal(r_new, r_old)
    assert len(g_new) == len(g_old) > 0
    for new, old in zip(g_new, g_old, strict=True):
        torch.testing.assert_close(new, old, rtol=0, atol=0)
