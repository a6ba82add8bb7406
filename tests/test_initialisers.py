"""``model.init``: one registry of initialisers for every backbone. Each backbone's default draws exactly
what its code drew before the key existed; the ICPNS protocol starts each backbone as the official code
(RecBole-GNN on RecBole) does; the ICPNS code's released BPR settings are one experiment away."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from raysearch import config as config_module
from raysearch.config import load_run_config
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError
from raysearch.models import MODELS, make_model
from raysearch.models.initialisers import INITIALISERS
from raysearch.models.layers import mlp_layers

N_USERS, N_ITEMS = 300, 200
BACKBONES = ["dmf", "gmf", "lightgcl", "lightgcn", "mf", "neumf", "ngcf"]


@pytest.fixture(scope="module")
def train() -> Interactions:
    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(N_USERS), 6)
    return Interactions.from_pairs(users, rng.integers(0, N_ITEMS, users.size), N_USERS, N_ITEMS)


def build(name: str, train: Interactions, seed: int = 0, **params):
    torch.manual_seed(seed)
    return make_model(name, N_USERS, N_ITEMS, train, **params)


def tables(model) -> tuple[torch.Tensor, torch.Tensor]:
    return model.tables.user_table().detach(), model.tables.item_table().detach()


def drawn(*inits, shapes=((N_USERS, 64), (N_ITEMS, 64)), seed: int = 0) -> list[torch.Tensor]:
    """Fresh tensors of ``shapes`` drawn in order by ``inits`` (one a shape) from ``seed``."""
    torch.manual_seed(seed)
    out = []
    for init, shape in zip(inits, shapes, strict=True):
        t = torch.empty(shape)
        init(t)
        out.append(t)
    return out


# --------------------------------------------------------------------------- defaults as before
def test_default_initialisation_draws_what_each_backbone_drew_before_the_key(train):
    """The code of every backbone before ``model.init``, replayed from the same seed: equal bit for bit."""
    normal = lambda std: (lambda w: nn.init.normal_(w, std=std))  # noqa: E731
    for name, inits, shape in [
        ("mf", [nn.init.xavier_normal_] * 2, 64),
        ("lightgcn", [normal(0.1)] * 2, 64),
        ("lightgcl", [nn.init.xavier_uniform_] * 2, 64),
    ]:
        u, i = tables(build(name, train))
        ref = drawn(*inits, shapes=((N_USERS, shape), (N_ITEMS, shape)))
        assert torch.equal(u, ref[0]) and torch.equal(i, ref[1]), name

    # GMF: SRNS's truncated normal, then h Glorot-uniform
    gmf = build("gmf", train)
    torch.manual_seed(0)
    ref = [torch.empty(n, 32) for n in (N_USERS, N_ITEMS)]
    for t in ref:
        nn.init.trunc_normal_(t, std=0.01, a=-0.02, b=0.02)
    h = nn.init.xavier_uniform_(torch.empty(32, 1))
    assert torch.equal(tables(gmf)[0], ref[0]) and torch.equal(tables(gmf)[1], ref[1])
    assert torch.equal(gmf.h.detach(), h)

    # NGCF: Xavier-uniform tables, torch's Linear construction, then Xavier-uniform W and b (NGCF-PyTorch)
    ngcf = build("ngcf", train)
    torch.manual_seed(0)
    ref = [nn.init.xavier_uniform_(torch.empty(n, 64)) for n in (N_USERS, N_ITEMS)]
    gc = [nn.Linear(64, 64) for _ in range(3)]
    bi = [nn.Linear(64, 64) for _ in range(3)]
    with torch.no_grad():
        for layer in (*gc, *bi):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.xavier_uniform_(layer.bias.view(1, -1))
    assert torch.equal(tables(ngcf)[0], ref[0]) and torch.equal(tables(ngcf)[1], ref[1])
    for mine, theirs in zip((*ngcf.gc, *ngcf.bi), (*gc, *bi), strict=True):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)

    # DMF: the MLPs built first, then normal(0, 0.01) tables and weights, biases 0 (RecBole's _init_weights)
    dmf = build("dmf", train)
    torch.manual_seed(0)
    user_mlp, item_mlp = mlp_layers((64, 64, 64)), mlp_layers((64, 64, 64))
    ref = [nn.init.normal_(torch.empty(n, 64), 0.0, 0.01) for n in (N_USERS, N_ITEMS)]
    with torch.no_grad():
        linears = [m for m in (*user_mlp, *item_mlp) if isinstance(m, nn.Linear)]
        for layer in linears:
            nn.init.normal_(layer.weight, 0.0, 0.01)
            layer.bias.zero_()
    assert torch.equal(tables(dmf)[0], ref[0]) and torch.equal(tables(dmf)[1], ref[1])
    mine = [m for m in (*dmf.user_mlp, *dmf.item_mlp) if isinstance(m, nn.Linear)]
    for a, b in zip(mine, linears, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)

    # NeuMF: normal(0, 0.01) on the [GMF ; MLP] rows, then torch's Linear construction (RecBole's)
    neumf = build("neumf", train)
    torch.manual_seed(0)
    ref = [nn.init.normal_(torch.empty(n, 128), mean=0.0, std=0.01) for n in (N_USERS, N_ITEMS)]
    mlp = mlp_layers((128, 128, 64), 0.1)
    predict = nn.Linear(128, 1)
    assert torch.equal(tables(neumf)[0], ref[0]) and torch.equal(tables(neumf)[1], ref[1])
    assert torch.equal(neumf.mlp[1].weight, mlp[1].weight) and torch.equal(neumf.predict.weight, predict.weight)


# --------------------------------------------------------------------------- every initialiser, every table
def spread_ok(w: torch.Tensor, init: str, std: float) -> None:
    n, d = w.shape
    bound = math.sqrt(6.0 / (n + d))  # fan_in d, fan_out n, as an nn.Embedding's weight
    if init in ("xavier_uniform", "xavier_uniform_bias"):
        assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound
        assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    elif init == "xavier_normal":
        assert float(w.std()) == pytest.approx(math.sqrt(2.0 / (n + d)), rel=0.05)
    elif init == "normal":
        assert float(w.std()) == pytest.approx(std, rel=0.05) and w.abs().max() > 3 * std
    elif init == "trunc_normal":
        assert w.abs().max() <= 2 * std and float(w.std()) == pytest.approx(0.8796 * std, rel=0.05)
    else:
        raise AssertionError(init)
    assert abs(float(w.mean())) < 0.05 * float(w.std())


@pytest.mark.parametrize("init", INITIALISERS.names())
@pytest.mark.parametrize("name", BACKBONES)
def test_every_initialiser_draws_every_backbones_tables(name, init, train):
    model = build(name, train, init=init, init_std=0.05)
    assert model.params.init == init
    for w in tables(model):
        spread_ok(w, init, 0.05)


def test_linear_layers_follow_model_init_where_recbole_does(train):
    # NGCF as RecBole(-GNN): xavier_normal weights, biases 0; the default draws biases Xavier-uniform too
    recbole = build("ngcf", train, init="xavier_normal")
    for layer in (*recbole.gc, *recbole.bi):
        assert torch.count_nonzero(layer.bias) == 0
        assert float(layer.weight.detach().std()) == pytest.approx(math.sqrt(2.0 / 128), rel=0.1)
    official = build("ngcf", train)
    for layer in (*official.gc, *official.bi):
        assert torch.count_nonzero(layer.bias) == 64 and layer.bias.abs().max() <= math.sqrt(6.0 / 65)
    # DMF: the MLPs' weights follow model.init, biases 0
    dmf = build("dmf", train, init="xavier_uniform")
    for layer in (m for m in (*dmf.user_mlp, *dmf.item_mlp) if isinstance(m, nn.Linear)):
        assert layer.weight.abs().max() <= math.sqrt(6.0 / 128) and layer.weight.abs().max() > 0.15
        assert torch.count_nonzero(layer.bias) == 0
    # NeuMF: RecBole re-initialises its embeddings only; the linear layers keep torch's default
    neumf = build("neumf", train, init="xavier_uniform")
    assert torch.count_nonzero(neumf.predict.bias) == 1 and torch.count_nonzero(neumf.mlp[1].bias) == 128


@pytest.mark.parametrize("name", BACKBONES)
def test_bad_init_names_the_key(name, train):
    known = ", ".join(INITIALISERS.names())
    with pytest.raises(ConfigError, match=rf"^model\.init: unknown initialiser 'glorot' \(known: {known}\)$"):
        make_model(name, N_USERS, N_ITEMS, train, init="glorot")
    with pytest.raises(ConfigError, match=r"^model\.init_std: must be > 0$"):
        make_model(name, N_USERS, N_ITEMS, train, init_std=0)


# --------------------------------------------------------------------------- experiments
def test_icpns_protocol_initialises_as_the_official_code():
    def init(*overrides):
        return load_run_config(["experiment=icpns-protocol", *overrides]).model.params["init"]

    assert init() == "xavier_uniform"  # LightGCN, RecBole-GNN's
    assert init("model=ngcf") == "xavier_normal"  # RecBole-GNN's NGCF
    assert init("model=mf") == "xavier_normal"  # RecBole's BPR
    assert init("model=gmf") == "trunc_normal"  # no RecBole GMF: SRNS's stays
    assert init("model=lightgcn", "model.init=normal") == "normal"  # the command line wins
    assert init("model=neumf") == "normal" and init("model=dmf") == "normal"  # RecBole's, the defaults
    assert load_run_config(["experiment=icpns-protocol-lightgcl"]).model.params["init"] == "xavier_uniform"
    ml1m = load_run_config(["experiment=icpns-protocol-ml-1m", "model=lightgcn", "sampler=icpns"])
    assert ml1m.model.params["init"] == "xavier_uniform"
    # elsewhere the backbone's own default: LightGCN-PyTorch's normal(0, 0.1), NGCF-PyTorch's
    assert load_run_config(["model=lightgcn"]).model.params["init"] == "normal"
    assert load_run_config(["model=ngcf"]).model.params["init"] == "xavier_uniform_bias"
    assert load_run_config(["experiment=gdns-paper"]).model.params["init"] == "trunc_normal"


def test_icpns_protocol_released_gives_the_official_bpr_config():
    rns = load_run_config(["experiment=icpns-protocol-released"])
    assert rns.model.name == "mf" and rns.dataset.name == "ml-100k" and rns.model.params["init"] == "xavier_normal"
    assert (rns.trainer.batch_size, rns.trainer.reg, rns.trainer.patience, rns.trainer.lr,
            rns.trainer.epochs) == (40960, 0.0, 20, 0.001, 1000)
    icpns = load_run_config(["experiment=icpns-protocol-released", "sampler=icpns"])
    p = icpns.sampler.params
    assert (p["n_communities"], p["alpha"], p["finetune_epochs"], p["finetune_patience"]) == (64, 0.1, 500, 20)
    assert icpns.trainer.batch_size == 40960 and icpns.trainer.reg == 0
    gdns = load_run_config(["experiment=icpns-protocol-released", "sampler=gdns"])
    assert gdns.trainer.batch_size * gdns.sampler.params["group_size"] == 40960
    assert load_run_config(["experiment=icpns-protocol-released", "dataset=ml-1m-icpns"]).dataset.name == "ml-1m-icpns"
    # the protocol itself keeps its common trainer for MF (the published 1a-1d rows' commands)
    mf = load_run_config(["experiment=icpns-protocol", "model=mf", "sampler=icpns"])
    assert (mf.trainer.batch_size, mf.trainer.reg, mf.sampler.params["finetune_epochs"]) == (4096, 1e-4, 200)


def test_model_overrides_follow_the_final_model_and_yield_to_sampler_overrides(monkeypatch):
    fakes = {
        "fake": {"overrides": ["trainer.epochs=7"],
                 "model_overrides": {"mf": ["trainer.batch_size=11", "trainer.lr=0.5"],
                                     "gmf": ["trainer.batch_size=22"]},
                 "sampler_overrides": {"gdns": ["trainer.batch_size=33"]}},
        "nested": {"overrides": ["experiment=fake", "model=gmf"]},
        "bad": {"overrides": [], "model_overrides": {"mf": "trainer.lr=1"}},
    }
    real = config_module.load_group
    monkeypatch.setattr(config_module, "load_group", lambda group, choice: dict(fakes[choice])
                        if group == "experiments" and choice in fakes else real(group, choice))

    def trainer(*overrides):
        return load_run_config(list(overrides)).trainer

    assert trainer("experiment=fake").batch_size == 11  # the default model (mf)
    assert trainer("experiment=fake", "model=gmf").batch_size == 22  # the model chosen after the experiment
    assert trainer("experiment=nested").batch_size == 22  # ... or by an including experiment
    assert trainer("experiment=fake", "model=lightgcn").batch_size == 2048  # none for it
    gdns = trainer("experiment=fake", "sampler=gdns")
    assert gdns.batch_size == 33 and gdns.lr == 0.5  # the sampler's setting wins, the model's others stay
    assert trainer("experiment=fake", "trainer.batch_size=44").batch_size == 44  # the command line wins
    with pytest.raises(ConfigError, match=r"experiment 'bad': overrides must be lists of key=value strings"):
        trainer("experiment=bad")


# --------------------------------------------------------------------------- pretrained sources
def test_a_pretrained_source_from_before_model_init_still_matches(tmp_path):
    from raysearch.models.lightgcn import LightGCNParams
    from raysearch.train.pipeline import check_pretraining_source

    dataset = SimpleNamespace(fingerprint="abc")
    source = tmp_path / "rns"
    source.mkdir()
    (source / "results.json").write_text(json.dumps({
        "sampler": {"name": "rns"}, "dataset": {"fingerprint": "abc"},
        "model": {"name": "lightgcn", "params": {"dim": 64, "n_layers": 3, "init_std": 0.1}}}))
    check_pretraining_source(source, dataset, LightGCNParams(), "lightgcn")  # it ran with the default init
    with pytest.raises(ConfigError, match=r"ran with model parameters .*'init': 'normal'.*this run has .*"
                                          r"'init': 'xavier_uniform'"):
        check_pretraining_source(source, dataset, LightGCNParams(init="xavier_uniform"), "lightgcn")
    with pytest.raises(ConfigError, match="ran with model parameters"):
        check_pretraining_source(source, dataset, LightGCNParams(dim=32), "lightgcn")


def test_every_backbone_has_the_keys():
    for name in BACKBONES:
        fields = MODELS.get(name).Params.__dataclass_fields__
        assert "init" in fields and "init_std" in fields, name
