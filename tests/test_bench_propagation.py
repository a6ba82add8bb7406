"""The propagation kernel (a weighted ``embedding_bag`` per CSR row), the node split, and
``raysearch bench propagation``'s byte counts and floor."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from raysearch.bench import propagation
from raysearch.data.synthetic import synthetic_dataset
from raysearch.models import graph, make_model
from raysearch.models.graph import SparseGraph, csr_matmul, split_nodes, to_torch_csr


def _random_csr(n_rows: int, n_cols: int, seed: int) -> sp.csr_matrix:
    matrix = sp.random(n_rows, n_cols, density=0.2, format="csr", random_state=seed, dtype=np.float64)
    matrix = matrix.tolil()
    matrix[3, :] = 0  # an empty row: its bag is empty, its result row zero
    return matrix.tocsr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_csr_matmul_equals_the_dense_product(dtype):
    matrix = _random_csr(13, 9, seed=0)
    x = torch.randn(9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = csr_matmul(to_torch_csr(matrix), x)  # float32 values, cast to x's dtype
    expected = torch.from_numpy(matrix.toarray().astype(np.float32)).to(dtype) @ x
    assert out.dtype == dtype and out.shape == (13, 5)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(out[3], torch.zeros(5, dtype=dtype))


def test_csr_matmul_matches_torch_csr_kernel_on_a_rectangular_row_block():
    # a distributed rank's rows of the adjacency: rectangular, with its own transpose
    square = _random_csr(20, 20, seed=2)
    block = square[5:12]
    g = SparseGraph(block)
    x = torch.randn(20, 4, requires_grad=True)
    w = torch.randn(7, 4)
    (g.propagate(x) * w).sum().backward()
    csr = to_torch_csr(block)
    torch.testing.assert_close(g.propagate(x.detach()), csr @ x.detach())
    torch.testing.assert_close(x.grad, torch.from_numpy(block.T.toarray().astype(np.float32)) @ w)


def test_to_torch_csr_uses_int32_indices():
    csr = to_torch_csr(_random_csr(6, 6, seed=3))
    assert csr.crow_indices().dtype == torch.int32 and csr.col_indices().dtype == torch.int32


def test_split_nodes_gives_the_gradients_of_two_slices_bit_for_bit():
    table = torch.randn(10, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(4))
    w_u, w_i = torch.randn(4, 3), torch.randn(6, 3)
    a = table.clone().requires_grad_(True)
    users, items = split_nodes(a, 4)
    assert users.shape == (4, 3) and items.shape == (6, 3)
    ((users * w_u).sum() + (items[[0, 5, 5]] * w_i[:3]).sum()).backward()
    b = table.clone().requires_grad_(True)
    ((b[:4] * w_u).sum() + (b[4:][[0, 5, 5]] * w_i[:3]).sum()).backward()
    assert torch.equal(a.grad, b.grad)


def test_product_bytes_hand_computed():
    # 3 x 5 matrix, 4 stored entries, dim 2: indices + values 8 B an entry, offsets 4 B x 4, rows 8 B
    out = propagation.product_bytes(n_rows=3, n_cols=5, nnz=4, dim=2)
    assert out["compulsory"] == 8 * 4 + 4 * 4 + 8 * 5 + 8 * 3
    assert out["gathered"] == (8 + 8) * 4 + 4 * 4 + 8 * 3


def test_kernel_swaps_the_propagation_product_and_restores_it():
    calls = []

    def counting(csr, x):
        calls.append(x.shape)
        return csr @ x

    data = synthetic_dataset(n_users=40, n_items=30, seed=5)
    model = make_model("lightgcn", data.n_users, data.n_items, data.train, dim=4, n_layers=2)
    with propagation.kernel(counting):
        before = model.propagate()
    assert len(calls) == 2 and graph.csr_matmul is not counting
    after = model.propagate()
    torch.testing.assert_close(before.users, after.users, rtol=1e-5, atol=1e-6)


def test_quick_bench_floor_is_steps_times_bytes_over_bandwidth():
    lines: list[str] = []
    out = propagation.run(report=lines.append, quick=True, blocks=1, block=1)
    step = out["step_bytes"]["gathered"]
    assert step == 2 * propagation.LAYERS * out["product_bytes"]["gathered"] + out["adam_bytes"]
    assert out["floor_epoch_seconds"]["gathered"] == pytest.approx(
        out["steps_per_epoch"] * step / out["bandwidth_bytes_per_s"])
    assert out["adam_bytes"] == 7 * 4 * out["dim"] * out["nodes"]
    assert set(out["step_ms"]) == set(propagation.KERNELS) and all(v > 0 for v in out["step_ms"].values())
    assert any("floor of an epoch" in line for line in lines)
