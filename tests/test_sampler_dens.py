"""DENS against a brute-force reference of its gated selection and the official auxiliary loss, and its
gates trained, checkpointed and resumed through the trainer."""

import numpy as np
import pytest
import torch

from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.models import make_model
from raysearch.samplers import make_sampler


@pytest.fixture
def train() -> Interactions:
    rng = np.random.default_rng(5)
    return Interactions.from_pairs(rng.integers(0, 10, 50), rng.integers(0, 12, 50), 10, 12)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("name,epoch", [("mf", 0), ("lightgcn", 30), ("lightgcn", 500)])
def test_dens_selection_and_gate_loss_match_the_official_formulas(name, epoch, train):
    torch.manual_seed(0)
    model = make_model(name, 10, 12, train, dim=4, **({"n_layers": 2} if name == "lightgcn" else {})).eval()
    sampler = make_sampler("dens", train, n_negs=4, warmup=100.0, gamma=0.5)
    sampler.prepare(model, seed=3)
    sampler.start_epoch(epoch, None)
    model.keep_layers = True
    user_layers, item_layers = model.layer_representations(model.propagate())
    users, pos = np.array([0, 4, 4]), np.array([3, 1, 9])
    made = sampler.synthesise(users, pos, 2, np.random.default_rng(8), user_layers, item_layers, "mean", model.query)
    cand = sampler.complement.uniform(np.repeat(users, 2 * 4), np.random.default_rng(8)).reshape(3, 2, 4)
    W = {k: (m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for k, m in sampler.gates.items()}

    def lin(name, x):
        return x @ W[name][0].T + W[name][1]

    ul, il = user_layers.detach().double().numpy(), item_layers.detach().double().numpy()
    share = 1 - min(1, epoch / 100)
    chosen = np.zeros((3, 2, il.shape[1], 4))
    for b in range(3):
        u, p = ul[users[b]], il[pos[b]]  # (L+1, d)
        gated_p = p * sigmoid(lin("item_gate", p) + lin("user_gate", u))
        for s in range(2):
            for layer in range(il.shape[1]):
                scores = []
                for j in cand[b, s]:
                    n = il[j, layer]
                    gated_n = n * sigmoid(lin("neg_gate", n) + lin("pos_gate", gated_p[layer]))
                    scores.append(float(np.dot(u[layer], share * n - gated_n)))
                best = int(np.argmax(scores))  # the first of ties
                chosen[b, s, layer] = il[cand[b, s, best], layer]
    np.testing.assert_allclose(made.vectors.detach().numpy(), chosen.mean(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(made.rows0.detach().numpy(), chosen[:, :, 0], rtol=1e-5, atol=1e-6)

    # the auxiliary loss, as create_bpr_loss writes it (K = 2 slots)
    u_e = ul[users].mean(1)
    pos_e = il[pos]
    pos_r = pos_e * sigmoid(lin("item_gate", pos_e) + lin("user_gate", ul[users]))
    pos_ir = pos_e - pos_r
    neg_r = chosen * sigmoid(lin("neg_gate", chosen) + lin("pos_gate", pos_r)[:, None])
    neg_ir = chosen - neg_r
    sp_r, sp_ir = (u_e * pos_r.mean(1)).sum(-1), (u_e * pos_ir.mean(1)).sum(-1)
    sn_r, sn_ir = (u_e[:, None] * neg_r.mean(2)).sum(-1), (u_e[:, None] * neg_ir.mean(2)).sum(-1)
    expected = (np.mean(np.log(1 + np.exp(sp_ir - sp_r))) + np.mean(np.log(1 + np.exp(sn_r - sn_ir).sum(1)))
                + np.mean(np.log(1 + np.exp(sn_r - sp_r[:, None]).sum(1)))
                + np.mean(np.log(1 + np.exp(sp_ir[:, None] - sn_ir).sum(1)))) / 4
    assert made.terms["dens_gates"].item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_dens_gates_learn_and_resume_exactly(tmp_path):
    from test_trainer import SMALL

    from raysearch.config import load_run_config
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import run_training
    from raysearch.train.rundir import RunDir
    from raysearch.train.trainer import InjectedFailure

    overrides = [*SMALL, "sampler=dens", "trainer.epochs=3", "model=lightgcn", "model.n_layers=1"]
    cfg = load_run_config(overrides)
    dataset = load_dataset(cfg.dataset, use_cache=False)
    full = run_training(cfg, dataset, RunDir(tmp_path / "full"))
    assert full["stages"]["train"]["epochs_run"] == 3
    cut = load_run_config([*overrides, "trainer.fail_after_epoch=1"])
    with pytest.raises(InjectedFailure):
        run_training(cut, dataset, RunDir(tmp_path / "cut"))
    resumed = run_training(cut, dataset, RunDir(tmp_path / "cut"))
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    import json

    record = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["loss_terms"]["dens_gates"] > 0


@pytest.mark.parametrize("params,message", [
    ({"n_negs": 0}, "n_negs: must be >= 1, got 0"),
    ({"warmup": 0}, "warmup: must be > 0, got 0.0"),
    ({"gamma": -0.1}, "gamma: must be >= 0, got -0.1"),
])
def test_dens_bad_parameters_name_the_key(params, message, train):
    with pytest.raises(ConfigError, match=rf"sampler 'dens': {message}"):
        make_sampler("dens", train, **params)
