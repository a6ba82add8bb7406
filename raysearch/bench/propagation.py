"""LightGCN's propagation against the machine's memory bandwidth (``raysearch bench propagation``).

On Gowalla (as ``bench steps``; ``--quick``: a small synthetic dataset), one thread, dimension 64, 3 layers:

- **Bandwidth**: numpy copies of one array into another (``copy_mib`` MiB each; read + write counted, as
  STREAM's copy), the median of ``reps``.
- **Bytes a product A @ X moves** (A the (n, n) normalised adjacency, X (n, d) float32), two counts:
  ``compulsory``: every array once: indices and values (4 + 4 B a stored entry), the n + 1 row offsets,
  X read and the result written (4 d B a row each); ``gathered``: what the kernel reads when no row of X
  stays in a cache between the stored entries that name it: 4 + 4 + 4 d B a stored entry, the offsets, the
  result. A training step makes 2L products (L forward, L backward: A is symmetric, so A^T = A) and one
  dense Adam step over the (n, d) table (parameter, gradient and two moments read, parameter and moments
  written: 7 passes). The **floor** of an epoch is steps x (2L x bytes of a product + Adam's bytes) /
  bandwidth; the elementwise work of a step (layer sums, the mean, the loss) is left out of it, so that it
  is a floor.
- **Kernels**: one product A @ X by ``torch`` CSR @ dense (the kernel the propagation used before) and by
  ``csr_matmul`` (a weighted ``embedding_bag``, what it uses now), interleaved, median ms.
- **Training step**: ``Trainer.train_step`` of LightGCN-BPR (RNS, dense Adam, batch 2048) with each
  kernel, interleaved in blocks; an epoch = steps x the median step. The step's share spent in the
  propagation (forward, and forward + backward) is timed apart.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from raysearch.bench.samplers import _single_thread, interleaved
from raysearch.bench.steps import BATCH, DIM, SEED, gowalla_or_synthetic, trainer_step
from raysearch.models import graph, make_model
from raysearch.models.graph import SparseGraph, symmetric_normalised
from raysearch.rng import make_rng
from raysearch.train.batches import n_steps_for, pair_batches, pair_rows

LAYERS = 3
ADAM_PASSES = 7  # dense Adam: read parameter, gradient, two moments; write parameter, two moments
NOW = "embedding_bag (now)"
KERNELS = {"torch CSR @ dense (before)": lambda csr, x: csr @ x, NOW: graph.csr_matmul}


def product_bytes(n_rows: int, n_cols: int, nnz: int, dim: int) -> dict[str, int]:
    """Bytes one CSR (n_rows, n_cols) @ dense (n_cols, dim) float32 product moves, int32 indices."""
    offsets, result = 4 * (n_rows + 1), 4 * dim * n_rows
    return {"compulsory": 8 * nnz + offsets + 4 * dim * n_cols + result,
            "gathered": (8 + 4 * dim) * nnz + offsets + result}


def copy_bandwidth(mib: int, reps: int) -> float:
    """Bytes/s of numpy copying a ``mib`` MiB float32 array into another (read + write), median of ``reps``."""
    source = np.ones(mib * 2**20 // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the pages
    times = interleaved({"copy": lambda rep: np.copyto(target, source)}, reps)["copy"]
    return 2 * source.nbytes / float(np.median(times))


@contextlib.contextmanager
def kernel(product: Callable) -> Iterator[None]:
    """Propagate through ``product(csr, x)`` inside the block (the module's kernel restored after)."""
    saved = graph.csr_matmul
    graph.csr_matmul = product
    try:
        yield
    finally:
        graph.csr_matmul = saved


def run(report: Callable[[str], Any] = print, quick: bool = False, data_dir: str | None = None,
        blocks: int | None = None, block: int | None = None) -> dict[str, Any]:
    """Measure and report bandwidth, bytes, kernels and the LightGCN step; return the figures."""
    blocks, block = blocks or (3 if quick else 6), block or (3 if quick else 5)
    dataset = gowalla_or_synthetic(quick, data_dir)
    load_before = os.getloadavg()
    adjacency = SparseGraph(symmetric_normalised(dataset.train)).adjacency
    n, nnz = adjacency.shape[0], adjacency.values().numel()
    users_all, items_all = pair_rows(dataset.train)
    steps_per_epoch = n_steps_for(users_all.size, BATCH)
    batches = list(pair_batches(users_all, items_all, steps_per_epoch, make_rng(SEED, "bench-propagation")))
    with _single_thread(), tempfile.TemporaryDirectory() as workdir:
        bandwidth = copy_bandwidth(64 if quick else 512, 5 if quick else 9)
        x = torch.randn(n, DIM)
        kernel_ms = {name: 1e3 * float(np.median(t)) for name, t in interleaved(
            {name: (lambda rep, f=f: f(adjacency, x)) for name, f in KERNELS.items()}, 5 if quick else 15).items()}

        steps = {}
        for name, product in KERNELS.items():
            with kernel(product):
                step = trainer_step(dataset, "adam", workdir, "bench-propagation", model_name="lightgcn")
                step(batches[0])  # warm-up

            def run_block(rep: int, step=step, product=product) -> None:
                with kernel(product):
                    for b in range(rep * block, (rep + 1) * block):
                        step(batches[b % len(batches)])
            steps[name] = run_block
        step_ms = {name: 1e3 * float(np.median(t)) / block for name, t in interleaved(steps, blocks).items()}

        model = make_model("lightgcn", dataset.n_users, dataset.n_items, dataset.train, dim=DIM, n_layers=LAYERS)

        def forward(rep: int) -> None:
            model.propagate()

        def forward_backward(rep: int) -> None:
            reps = model.propagate()
            (reps.users.sum() + reps.items.sum()).backward()
        phase_ms = {name: 1e3 * float(np.median(t)) for name, t in
                    interleaved({"forward": forward, "forward + backward": forward_backward}, 5 if quick else 9).items()}
    load_after = os.getloadavg()

    per_product = product_bytes(n, n, nnz, DIM)
    adam_bytes = ADAM_PASSES * 4 * DIM * n
    step_bytes = {k: 2 * LAYERS * v + adam_bytes for k, v in per_product.items()}
    floor_s = {k: steps_per_epoch * v / bandwidth for k, v in step_bytes.items()}
    epoch_s = {name: steps_per_epoch * ms / 1e3 for name, ms in step_ms.items()}

    source = dataset.name
    report(f"propagation: LightGCN dim {DIM}, {LAYERS} layers, batch {BATCH}, {source} ({dataset.n_users} users, "
           f"{dataset.n_items} items; adjacency {n} x {n}, {nnz} stored entries; {steps_per_epoch} steps an epoch); "
           f"one thread; {platform.machine()}, torch {torch.__version__}")
    report(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
    report(f"  memory bandwidth (numpy copy, read + write): {bandwidth / 1e9:.1f} GB/s")
    report(f"  bytes a product A @ X: compulsory {per_product['compulsory'] / 1e6:.1f} MB, "
           f"gathered {per_product['gathered'] / 1e6:.1f} MB; dense Adam a step {adam_bytes / 1e6:.1f} MB")
    report(f"  a step ({2 * LAYERS} products + Adam): compulsory {step_bytes['compulsory'] / 1e6:.0f} MB, "
           f"gathered {step_bytes['gathered'] / 1e6:.0f} MB")
    report(f"  floor of an epoch: {floor_s['compulsory']:.1f} s (compulsory bytes), "
           f"{floor_s['gathered']:.1f} s (gathered bytes)")
    report(f"  {'kernel':<28} {'ms a product':>12} {'ms a step':>10} {'s an epoch':>11} {'/ gathered floor':>17}")
    for name in KERNELS:
        report(f"  {name:<28} {kernel_ms[name]:12.1f} {step_ms[name]:10.1f} {epoch_s[name]:11.1f} "
               f"{epoch_s[name] / floor_s['gathered']:16.2f}x")
    report(f"  step with {NOW}: propagation forward {phase_ms['forward']:.1f} ms, "
           f"forward + backward {phase_ms['forward + backward']:.1f} ms")
    return {"dataset": source, "dim": DIM, "layers": LAYERS, "nodes": n, "nnz": nnz,
            "steps_per_epoch": steps_per_epoch, "load_average": [load_before[0], load_after[0]],
            "bandwidth_bytes_per_s": bandwidth, "product_bytes": per_product, "adam_bytes": adam_bytes,
            "step_bytes": step_bytes, "floor_epoch_seconds": floor_s, "kernel_ms": kernel_ms,
            "step_ms": step_ms, "epoch_seconds": epoch_s, "propagation_ms": phase_ms,
            "epoch_over_gathered_floor": {k: v / floor_s["gathered"] for k, v in epoch_s.items()}}
