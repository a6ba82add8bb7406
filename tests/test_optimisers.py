"""Row-sparse optimisers (trainer.optimizer=sparse_adam | rowwise_adagrad): each update against a
brute-force or hand computation, untouched rows left alone, repeated ids summed, 2 ranks = 1, exact resume,
and the refusal for models that propagate over every row."""

import json

import numpy as np
import pytest
import torch

from raysearch.config import load_run_config
from raysearch.distributed.process_group import run_in_process_group
from raysearch.errors import ConfigError
from raysearch.models import make_model
from raysearch.models.embeddings import row_sparse_gradient
from raysearch.train.checkpoint import load_checkpoint
from raysearch.train.optimisers import LazyAdam, RowwiseAdagrad, make_optimiser
from raysearch.train.pipeline import run_training
from raysearch.train.rundir import RunDir
from raysearch.train.trainer import InjectedFailure

N_ROWS, DIM = 12, 4
# rows each step touches, repeats included; rows 10 and 11 are never touched
TOUCHED = [[0, 3, 3, 5], [3, 4], [0, 1, 2, 3, 3, 3], [7], [0, 5, 9, 9]]


def _sparse_grads(seed: int = 0) -> list[torch.Tensor]:
    """One uncoalesced sparse (N_ROWS, DIM) gradient per step of TOUCHED (one entry per id, repeats kept)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for ids in TOUCHED:
        idx = torch.tensor(ids)
        out.append(torch.sparse_coo_tensor(idx[None], torch.randn(len(ids), DIM, generator=gen), (N_ROWS, DIM),
                                           check_invariants=False))
    return out


def _run(optimiser_cls, grads, **kwargs):
    weight = torch.nn.Parameter(torch.randn(N_ROWS, DIM, generator=torch.Generator().manual_seed(1)))
    initial = weight.detach().clone()
    opt = optimiser_cls([{"params": [weight], "rows": True}], **kwargs)
    for grad in grads:
        weight.grad = grad
        opt.step()
    return initial, weight.detach(), opt.state[weight]


def test_lazy_adam_moves_each_row_as_adam_on_the_steps_that_touched_it():
    lr, betas, eps = 0.05, (0.8, 0.95), 1e-6
    grads = _sparse_grads()
    initial, weight, state = _run(LazyAdam, grads, lr=lr, betas=betas, eps=eps)
    # brute force: one torch Adam per row, stepped only when the row is touched, with the row's summed gradient
    for r in range(N_ROWS):
        row = torch.nn.Parameter(initial[r].clone())
        adam = torch.optim.Adam([row], lr=lr, betas=betas, eps=eps)
        touches = 0
        for grad in grads:
            dense = grad.to_dense()[r]
            if r in grad.coalesce().indices()[0].tolist():
                row.grad = dense.clone()
                adam.step()
                touches += 1
        torch.testing.assert_close(weight[r], row.detach(), rtol=1e-6, atol=1e-7)
        assert state["row_step"][r].item() == touches
        if touches:
            torch.testing.assert_close(state["exp_avg"][r], adam.state[row]["exp_avg"], rtol=1e-6, atol=1e-8)
            torch.testing.assert_close(state["exp_avg_sq"][r], adam.state[row]["exp_avg_sq"], rtol=1e-6, atol=1e-10)
    # never touched: weights, moments and step count exactly as they started
    assert torch.equal(weight[10:], initial[10:])
    assert not state["exp_avg"][10:].any() and not state["exp_avg_sq"][10:].any() and not state["row_step"][10:].any()
    # the repeated id 3 of step 0 moved row 3 by its summed gradient (0.05 x sign: Adam's first step)
    assert state["row_step"][3].item() == 3


def test_lazy_adam_equals_torch_sparse_adam_while_every_touched_row_is_touched_every_step():
    rows = [1, 4, 4, 8]
    gen = torch.Generator().manual_seed(3)
    grads = [torch.sparse_coo_tensor(torch.tensor([rows]), torch.randn(4, DIM, generator=gen), (N_ROWS, DIM),
                                     check_invariants=False)
             for _ in range(4)]
    _, ours, _ = _run(LazyAdam, grads, lr=0.01)
    weight = torch.nn.Parameter(torch.randn(N_ROWS, DIM, generator=torch.Generator().manual_seed(1)))
    sparse_adam = torch.optim.SparseAdam([weight], lr=0.01)
    for grad in grads:
        weight.grad = grad
        sparse_adam.step()
    torch.testing.assert_close(ours, weight.detach(), rtol=1e-6, atol=1e-7)


def test_rowwise_adagrad_against_a_hand_computation():
    lr, eps = 0.1, 1e-10
    grads = _sparse_grads(seed=5)
    initial, weight, state = _run(RowwiseAdagrad, grads, lr=lr, eps=eps)
    expected = initial.double().numpy().copy()
    row_sum = np.zeros(N_ROWS)
    for grad in grads:
        g = grad.to_dense().double().numpy()  # repeated ids summed
        for r in sorted(set(grad.coalesce().indices()[0].tolist())):
            row_sum[r] += np.mean(g[r] ** 2)  # one accumulator a row: the mean of the squared gradient
            expected[r] -= lr * g[r] / (np.sqrt(row_sum[r]) + eps)
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state["row_sum"].numpy(), row_sum, rtol=1e-5)
    assert state["row_sum"].shape == (N_ROWS,)  # one float a row
    assert torch.equal(weight[10:], initial[10:])


@pytest.mark.parametrize(("ours", "theirs"), [(LazyAdam, torch.optim.Adam), (RowwiseAdagrad, torch.optim.Adagrad)])
def test_parameters_outside_the_tables_get_torchs_dense_update_float_for_float(ours, theirs):
    gen = torch.Generator().manual_seed(7)
    start = torch.randn(5, 3, generator=gen)
    grads = [torch.randn(5, 3, generator=gen) for _ in range(4)]
    results = []
    for cls in (ours, theirs):
        weight = torch.nn.Parameter(start.clone())
        opt = cls([weight], lr=0.03)
        for grad in grads:
            weight.grad = grad.clone()
            opt.step()
        results.append(weight.detach())
    assert torch.equal(results[0], results[1])


def test_repeated_ids_are_summed_into_one_row_of_a_coalesced_gradient():
    grad = torch.arange(12.0).view(4, 3)
    got = row_sparse_gradient(torch.tensor([5, 1, 5, 5]), grad, torch.Size([7, 3]))
    assert got.is_coalesced()
    assert got.indices().tolist() == [[1, 5]]
    assert got.values().tolist() == [[3.0, 4.0, 5.0], [0 + 6 + 9, 1 + 7 + 10, 2 + 8 + 11]]


@pytest.mark.parametrize(("model_name", "params"), [
    ("mf", {"dim": 6}), ("gmf", {"dim": 6}), ("neumf", {"mf_dim": 3, "mlp_dim": 4, "mlp_layers": [5], "dropout": 0.0}),
])
def test_a_models_row_sparse_gradient_is_its_dense_gradient_at_the_steps_rows(model_name, params):
    from raysearch.data.synthetic import synthetic_dataset

    ds = synthetic_dataset(n_users=30, n_items=20)
    users, items = torch.tensor([0, 4, 4, 9]), torch.tensor([[1, 2], [2, 7], [1, 1], [3, 19]])
    grads = []
    for sparse in (False, True):
        torch.manual_seed(0)
        model = make_model(model_name, ds.n_users, ds.n_items, ds.train, **params)
        optimiser = make_optimiser("sparse_adam" if sparse else "adam", model, [], lr=0.1)
        assert model.tables.sparse_grad is sparse
        u, v, u0, v0 = model.batch_rows(users, items)
        (model.interaction(u.unsqueeze(1), v).sum() + u0.pow(2).sum() + v0.pow(2).sum()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
        if sparse:
            weight = model.tables.item_weight
            before = weight.detach().clone()
            optimiser.step()
            moved = (weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
            assert moved == [1, 2, 3, 7, 19]  # the step's item rows and no other
    dense, sparse = grads
    for name, grad in dense.items():
        got = sparse[name]
        assert got.is_sparse == name.startswith("tables.")
        torch.testing.assert_close(got.to_dense() if got.is_sparse else got, grad, rtol=1e-6, atol=1e-7)


SHARDED_CASES = [("mf", {"dim": 8}, "sparse_adam"),
                 ("neumf", {"mf_dim": 3, "mlp_dim": 5, "mlp_layers": [6, 4], "dropout": 0.0}, "rowwise_adagrad")]


def _sparse_step_worker(rank, world):
    """For each of SHARDED_CASES, two steps on rank ``rank``'s share of fixed batches: the tables at global
    positions (zeros at rows other ranks own), the item table's row state and the replicated parameters."""
    from raysearch.data.synthetic import synthetic_dataset
    from raysearch.distributed.context import DistributedContext
    from raysearch.distributed.sharded import ShardedEmbeddings, owned_ids
    from raysearch.losses import bpr_loss
    from raysearch.models.base import l2_regulariser

    ds = synthetic_dataset(n_users=60, n_items=200)  # 128 item lookups a step leave rows untouched
    users, items = ds.train.pairs()
    results = []
    for model_name, params, optimiser in SHARDED_CASES:
        torch.manual_seed(0)
        tables = ShardedEmbeddings(ds.n_users, ds.n_items, 8) if world > 1 else None
        model = make_model(model_name, ds.n_users, ds.n_items, ds.train, tables=tables, **params)
        opt = make_optimiser(optimiser, model, [], lr=0.05)
        rng = np.random.default_rng(0)
        for _ in range(2):
            rows = rng.choice(users.size, 64, replace=False)
            neg = rng.integers(0, ds.n_items, 64)
            mine = np.arange(64)[rank::world]
            u = torch.as_tensor(users[rows[mine]])
            i = torch.as_tensor(np.stack([items[rows[mine]], neg[mine]], axis=1))
            uu, v, u0, v0 = model.batch_rows(u, i)
            scores = model.interaction(uu.unsqueeze(1), v)
            loss = bpr_loss(scores[:, 0], scores[:, 1:]) + 0.1 * l2_regulariser(len(mine), u0, v0)
            opt.zero_grad(set_to_none=True)
            (loss / world).backward()
            assert model.tables.user_weight.grad.is_sparse
            if world > 1:
                DistributedContext(report_to_ray=False).reduce_gradients(model)
            opt.step()
        out = {name: p.detach().clone() for name, p in model.named_parameters()}
        state = opt.state[model.tables.item_weight]
        out["item_state"] = state.get("row_step", state.get("row_sum"))[:, None]
        if world > 1:
            for name, n in (("tables.user_weight", ds.n_users), ("tables.item_weight", ds.n_items),
                            ("item_state", ds.n_items)):
                full = torch.zeros(n, out[name].shape[1])
                full[torch.as_tensor(owned_ids(n, rank, world))] = out[name]
                out[name] = full
        results.append({k: v.numpy() for k, v in out.items()})
    return results


def test_two_steps_on_two_ranks_equal_two_steps_on_one():
    (single,) = run_in_process_group(_sparse_step_worker, 1)
    ranks = run_in_process_group(_sparse_step_worker, 2)
    for case, (model_name, _, optimiser) in enumerate(SHARDED_CASES):
        for name, expected in single[case].items():
            where = f"{model_name} {optimiser} {name}"
            if name.startswith("tables.") or name == "item_state":
                got = ranks[0][case][name] + ranks[1][case][name]  # each rank holds and updates its own rows
            else:
                got = ranks[0][case][name]
                np.testing.assert_allclose(ranks[1][case][name], got, rtol=1e-6, err_msg=where)  # replicated
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=where)
        # the owners updated only the rows some rank looked up: the others kept zero state
        state = single[case]["item_state"]
        assert 0 < np.count_nonzero(state) < state.size


@pytest.mark.parametrize("model_name", ["lightgcn", "ngcf", "lightgcl", "dmf"])
def test_a_model_that_propagates_refuses_row_sparse_optimisers_in_one_line(model_name):
    from raysearch.data.synthetic import synthetic_dataset

    ds = synthetic_dataset(n_users=30, n_items=20)
    model = make_model(model_name, ds.n_users, ds.n_items, ds.train)
    with pytest.raises(ConfigError) as err:
        make_optimiser("sparse_adam", model, [], lr=0.1)
    assert str(err.value) == (f"trainer.optimizer: sparse_adam updates only the table rows a step looks up, but "
                              f"model {model_name!r} propagates over every row each step (use adagrad, adam, sgd)")
    assert model.tables.sparse_grad is False  # refused before anything is switched


def test_an_unknown_optimiser_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer: .*'lazy_adam'.*sparse_adam"):
        load_run_config(["trainer.optimizer=lazy_adam"])


SMALL = ["trainer.batch_size=256", "trainer.progress=false", "trainer.lr=0.01", "trainer.threads=1"]


@pytest.mark.parametrize(("optimiser", "model"), [("sparse_adam", ["model=mf", "model.dim=16"]),
                                                  ("rowwise_adagrad", ["model=gmf", "model.dim=16"])])
def test_row_sparse_training_learns_and_resumes_exactly(optimiser, model, tmp_path):
    from raysearch.data.synthetic import synthetic_dataset

    dataset = synthetic_dataset()

    def run(extra, out):
        cfg = load_run_config([*SMALL, *model, f"trainer.optimizer={optimiser}", "trainer.epochs=4", *extra])
        return run_training(cfg, dataset, RunDir(out))

    full = run([], tmp_path / "full")
    untrained = run(["trainer.epochs=0"], tmp_path / "zero")
    assert full["valid"]["ndcg@10"] > untrained["valid"]["ndcg@10"] + 0.02
    with pytest.raises(InjectedFailure):
        run(["trainer.fail_after_epoch=1"], tmp_path / "cut")
    resumed = run(["trainer.fail_after_epoch=1"], tmp_path / "cut")
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    a = load_checkpoint(tmp_path / "full" / "stages" / "train" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "stages" / "train" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    table_state = a["optimizer"]["state"][0]  # the first group: the user table
    assert set(table_state) == ({"exp_avg", "exp_avg_sq", "row_step"} if optimiser == "sparse_adam" else {"row_sum"})
    for param, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][param][key]), (param, key)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]


def test_steps_benchmark_smoke_run_times_every_optimiser_and_the_torch_loop():
    from raysearch.bench.steps import run

    lines = []
    result = run(report=lines.append, quick=True, steps=4, block=2)
    names = {"raysearch adam", "raysearch sparse_adam", "raysearch rowwise_adagrad", "torch SparseAdam loop"}
    assert names <= set(result["ms_per_step"])
    assert all(v > 0 for v in result["ms_per_step"].values())
    assert result["speedup_vs_adam"]["raysearch adam"] == 1.0
    assert any("load average" in line for line in lines)


def test_the_config_accepts_exactly_the_registered_optimisers():
    import dataclasses
    import typing

    from raysearch.config import TrainerConfig
    from raysearch.train.optimisers import OPTIMISERS

    field = next(f for f in dataclasses.fields(TrainerConfig) if f.name == "optimizer")
    hints = typing.get_type_hints(TrainerConfig)
    assert field.name in hints and set(typing.get_args(hints["optimizer"])) == set(OPTIMISERS.names())
