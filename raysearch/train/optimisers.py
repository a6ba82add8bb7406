"""Optimisers by name (``trainer.optimizer``), with row-sparse updates of the embedding tables.

``adam``, ``adagrad`` and ``sgd`` are torch's, over every parameter: each step updates every row of the
user and item tables (with Adam: reads and writes the whole tables and both moments).

``sparse_adam`` and ``rowwise_adagrad`` update a table only at the rows the step looked up. The tables
give row-sparse gradients (``EmbeddingTables.sparse_grad``: a coalesced sparse COO tensor of the
looked-up rows, repeated ids summed), and the optimiser gathers those rows of the table and of its state,
updates them and scatters them back: O(rows a step touches), not O(rows of the table). (The lookup is an
autograd function whose backward builds that sparse gradient, rather than gathered rows made leaf tensors
by the trainer: the gradient stays in ``param.grad``, so ``state_dict``, checkpoints, gradient reduction
and torch's own sparse optimisers work unchanged, and the sharded tables produce the same form.) The other
parameters (GMF's output weights, NeuMF's MLP, a sampler's own) get dense gradients and the dense update
of the same family (Adam's, Adagrad's), with torch's formulas.

- ``sparse_adam`` (``LazyAdam``): Adam's moments of a row move only on the steps that touch the row (as
  torch's ``SparseAdam`` and TensorFlow's LazyAdam), and each row keeps its *own* step count for the bias
  correction, so that a row's sequence of updates is exactly Adam's on the subsequence of steps that
  touched it. (``SparseAdam`` and LazyAdam correct with the table's step count instead: a row first
  touched at step t >> 1 / (1 - beta2) then moves by about (1 - beta1) / sqrt(1 - beta2) = 3.2 learning rates instead
  of Adam's 1; the two agree while every touched row has been touched on every step.)
- ``rowwise_adagrad`` (``RowwiseAdagrad``): FBGEMM/torchrec's row-wise Adagrad: one accumulator per row,
  summing the mean over the row's d entries of the squared gradient; the row moves by
  lr * g / (sqrt(accumulator) + eps). State: one float a row instead of d.

Both accept a dense gradient for a table too (all rows count as touched), so a run whose step reads a
whole table stays correct, just not faster; the trainer refuses them for models that propagate over
every row (``check_row_sparse``), where that is every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from raysearch.errors import ConfigError
from raysearch.registry import Registry


def touched_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """(rows (m,) int64 distinct, their gradient (m, d)) of a table's gradient: the rows of a sparse COO
    gradient (coalesced here if it is not), or every row of a dense one."""
    if grad.is_sparse:
        if grad.sparse_dim() != 1:
            raise ValueError(f"a row-sparse gradient has one sparse dimension (the row), not {grad.sparse_dim()}")
        rows = grad._indices()[0]
        # Autograd drops the coalesced flag when it stores a sparse gradient; rows strictly increasing
        # are coalesced already, and checking that is much cheaper than coalescing (a sort) again.
        if not (grad.is_coalesced() or bool((rows[1:] > rows[:-1]).all())):
            grad = grad.coalesce()
            rows = grad._indices()[0]
        return rows, grad._values()
    return torch.arange(grad.shape[0], device=grad.device), grad


class RowSparseOptimiser(torch.optim.Optimizer):
    """Updates the parameters of groups with ``rows=True`` (the embedding tables) at the rows of their
    gradient only (``update_rows``) and every other parameter densely (``update_dense``)."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        super().__init__(params, {**defaults, "rows": False})

    def update_rows(self, param: Tensor, state: dict[str, Any], rows: Tensor, grad: Tensor,
                    group: dict[str, Any]) -> None:
        """Update ``param``'s ``rows`` (m,) (distinct) given their gradient (m, d)."""
        raise NotImplementedError

    def update_dense(self, param: Tensor, state: dict[str, Any], grad: Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if group["rows"]:
                    rows, grad = touched_rows(param.grad)
                    self.update_rows(param, self.state[param], rows, grad, group)
                elif param.grad.is_sparse:
                    raise RuntimeError("a sparse gradient for a parameter outside the row groups (not a table)")
                else:
                    self.update_dense(param, self.state[param], param.grad, group)
        return loss


def _bias_corrections(steps: Tensor, beta1: float, beta2: float) -> tuple[Tensor, Tensor]:
    """Per row, float64 (m,): 1 - beta1^t and sqrt(1 - beta2^t) at each row's step count t (beta^t as
    exp(t ln beta): several times faster than a tensor power)."""
    t = steps.double()
    first = 1 - torch.exp(t * math.log(beta1)) if beta1 > 0 else torch.ones_like(t)
    second = 1 - torch.exp(t * math.log(beta2)) if beta2 > 0 else torch.ones_like(t)
    return first, second.sqrt_()


class LazyAdam(RowSparseOptimiser):
    """``sparse_adam``: lazy Adam on the tables' touched rows with per-row step counts; Adam elsewhere.

    Table state: ``exp_avg`` and ``exp_avg_sq`` (n, d) and ``row_step`` (n,) float32 (the number of steps
    that touched each row; exact up to 2^24). Other parameters: torch Adam's ``step``, ``exp_avg``,
    ``exp_avg_sq`` and its single-tensor update, float for float.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def update_rows(self, param, state, rows, grad, group) -> None:  # noqa: D102
        if not state:
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["row_step"] = torch.zeros(param.shape[0], dtype=torch.float32, device=param.device)
        beta1, beta2 = group["betas"]
        steps = state["row_step"].index_select(0, rows).add_(1)
        state["row_step"].index_copy_(0, rows, steps)
        exp_avg = state["exp_avg"].index_select(0, rows)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
        # Each moment moves by a delta added at the rows, on the table's state and on the gathered copy
        # alike (the same float addition: they stay equal): index_add_ is several times faster than
        # index_copy_ on a CPU. The deltas are Adam's: (1 - beta1)(g - m) and (1 - beta2)(g^2 - v).
        delta = grad.sub(exp_avg).mul_(1 - beta1)
        state["exp_avg"].index_add_(0, rows, delta)
        exp_avg.add_(delta)
        delta = grad.square().sub_(exp_avg_sq).mul_(1 - beta2)
        state["exp_avg_sq"].index_add_(0, rows, delta)
        exp_avg_sq.add_(delta)
        correction1, correction2_sqrt = _bias_corrections(steps, beta1, beta2)
        # Adam's step -lr / c1 * m / (sqrt(v) / c2 + eps), its per-row factors gathered on (m, 1) columns:
        # m * (-lr c2 / c1) / (sqrt(v) + eps c2), one pass over the rows fewer. (In place: the gathered
        # moments are copies.)
        scale = (correction2_sqrt / correction1 * -group["lr"]).to(param.dtype).unsqueeze(1)
        eps = (correction2_sqrt * group["eps"]).to(param.dtype).unsqueeze(1)
        update = exp_avg.mul_(scale).div_(exp_avg_sq.sqrt_().add_(eps))
        param.index_add_(0, rows, update)  # rows are distinct (index_add_ with alpha takes a slow path)

    def update_dense(self, param, state, grad, group) -> None:  # noqa: D102
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = state["step"].item()
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = group["lr"] / (1 - beta1**step)
        denom = (state["exp_avg_sq"].sqrt() / (1 - beta2**step) ** 0.5).add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denom, value=-step_size)


class RowwiseAdagrad(RowSparseOptimiser):
    """``rowwise_adagrad``: row-wise Adagrad on the tables' touched rows; torch's Adagrad elsewhere.

    Table state: ``row_sum`` (n,), per row the sum over its steps of mean_j g_j^2. Other parameters:
    torch Adagrad's ``step`` and ``sum`` (n, d) and its update (no learning-rate decay, accumulators from 0).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "eps": eps})

    def update_rows(self, param, state, rows, grad, group) -> None:  # noqa: D102
        if not state:
            state["row_sum"] = torch.zeros(param.shape[0], dtype=param.dtype, device=param.device)
        sums = state["row_sum"].index_select(0, rows).add_(grad.square().mean(dim=1))
        state["row_sum"].index_copy_(0, rows, sums)
        scale = sums.sqrt_().add_(group["eps"]).reciprocal_().mul_(-group["lr"]).unsqueeze(1)
        param.index_add_(0, rows, grad * scale)  # rows are distinct; (index_add_ with alpha is slow)

    def update_dense(self, param, state, grad, group) -> None:  # noqa: D102
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["sum"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        state["sum"].addcmul_(grad, grad, value=1)
        std = state["sum"].sqrt().add_(group["eps"])
        param.addcdiv_(grad, std, value=-group["lr"])


@dataclass(frozen=True)
class OptimiserKind:
    """How ``trainer.optimizer=<name>`` is built: ``build(params or param groups, lr=...)``; ``row_sparse``:
    the tables get their own group (``rows=True``) and row-sparse gradients."""

    build: Callable[..., torch.optim.Optimizer]
    row_sparse: bool = False


OPTIMISERS: Registry[OptimiserKind] = Registry("optimiser")
OPTIMISERS.register("adam")(OptimiserKind(torch.optim.Adam))
OPTIMISERS.register("adagrad")(OptimiserKind(torch.optim.Adagrad))
OPTIMISERS.register("sgd")(OptimiserKind(torch.optim.SGD))
OPTIMISERS.register("sparse_adam")(OptimiserKind(LazyAdam, row_sparse=True))
OPTIMISERS.register("rowwise_adagrad")(OptimiserKind(RowwiseAdagrad, row_sparse=True))


def check_row_sparse(optimiser: str, model_cls: type) -> None:
    """A row-sparse ``optimiser`` needs a model whose step reads only the step's rows of its tables: one
    that propagates (graph models, DMF) reads them all, so each step would update every row anyway."""
    if OPTIMISERS.get(optimiser).row_sparse and getattr(model_cls, "propagates", False):
        dense = ", ".join(n for n in OPTIMISERS.names() if not OPTIMISERS.get(n).row_sparse)
        raise ConfigError(f"trainer.optimizer: {optimiser} updates only the table rows a step looks up, but model "
                          f"{getattr(model_cls, 'name', '?')!r} propagates over every row each step (use {dense})")


def make_optimiser(name: str, model: torch.nn.Module, extra: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``model``'s parameters then ``extra`` (a sampler's), at learning rate ``lr``.

    A row-sparse one puts ``model.tables``' parameters in a ``rows=True`` group (first) and switches the
    tables to row-sparse gradients; a dense one gets the parameters as one list, as torch's optimisers do
    (and switches the tables back to dense gradients).
    """
    kind = OPTIMISERS.get(name)
    check_row_sparse(name, type(model))
    params = [*model.parameters(), *extra]
    model.tables.sparse_grad = kind.row_sparse
    if not kind.row_sparse:
        return kind.build(params, lr=lr)
    tables = list(model.tables.parameters())
    in_tables = {id(p) for p in tables}
    dense = [p for p in params if id(p) not in in_tables]
    groups = [{"params": tables, "rows": True}, *([{"params": dense}] if dense else [])]
    return kind.build(groups, lr=lr)
