"""Per-step cost of MF-BPR training by optimiser (``raysearch bench steps``).

MF (dimension 64), BPR with one negative a row, L2 1e-4 on the step's rows, batches of 2048 (user,
positive) rows, learning rate 1e-3, on Gowalla (the LightGCN split, 10% of train carved out for
validation, as ``conf/dataset/gowalla.yaml``) when its files are there, else (and with ``--quick``) the
synthetic dataset. Contenders, all on the same shuffled batches of one epoch:

- ``raysearch <optimiser>``: the trainer's step (``Trainer.train_step``: RNS negatives with the user's
  positives excluded, the model's scores and L2 term, backward, the optimiser's step) with
  ``trainer.optimizer`` = adam (dense, every row every step), sparse_adam and rowwise_adagrad (only the
  rows the step looks up);
- ``torch SparseAdam loop``: what a user would write in plain PyTorch: two ``nn.Embedding(sparse=True)``
  tables, uniform negatives (no exclusion), the same loss, ``torch.optim.SparseAdam``;
- ``implicit BPR`` (when the package is installed): ``implicit``'s Cython BPR (SGD, one thread), one
  ``fit`` of one iteration = one epoch of nnz samples, counted per 2048 samples.

Timing: one thread (torch and BLAS). Contenders take turns in blocks of ``block`` steps, the order
rotating from block to block, so that a slow spell of a shared machine hits them all; a block's mean step
is one sample, and the figures are medians over blocks with ratios of medians taken in the same run.
The machine's load average is printed before and after: timings are only comparable on a quiet machine.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raysearch.bench.samplers import _single_thread, interleaved
from raysearch.config import TrainerConfig
from raysearch.data.dataset import Dataset
from raysearch.losses import LOSSES, LossSettings
from raysearch.models import make_model
from raysearch.rng import make_rng, torch_seed
from raysearch.samplers import make_sampler
from raysearch.train.batches import n_steps_for, pair_batches, pair_rows
from raysearch.train.optimisers import make_optimiser
from raysearch.train.rundir import RunDir
from raysearch.train.trainer import Trainer

DIM, BATCH, LR, REG = 64, 2048, 1e-3, 1e-4
OPTIMISERS = ("adam", "sparse_adam", "rowwise_adagrad")
TARGET_MS = 2.5  # the target for MF-BPR on Gowalla with a row-sparse optimiser
SEED = 2026

Step = Callable[[tuple[np.ndarray, np.ndarray]], None]  # one training step on a (users, positives) batch


def gowalla_or_synthetic(quick: bool, data_dir: str | None) -> Dataset:
    """Gowalla (the LightGCN split, as ``conf/dataset/gowalla.yaml``) when its files are under a data directory
    and not ``quick``; else a small synthetic dataset."""
    from raysearch.data import data_dirs, dataset_config, load_dataset
    from raysearch.data.synthetic import synthetic_dataset

    if not quick:
        config = dataset_config("gowalla")
        if any((root / str(config.path) / "train.txt").is_file() for root in data_dirs(data_dir)):
            return load_dataset(config, data_dir=data_dir)
    return synthetic_dataset(n_users=3000, n_items=2000)


def trainer_step(dataset: Dataset, optimiser: str, workdir: str, stream: str = "bench-steps",
                 model_name: str = "mf") -> Step:
    """The trainer's BPR step (``model_name`` of dimension ``DIM``, RNS negatives, ``trainer.optimizer=optimiser``)
    on a fresh model, its randomness from ``stream``; ``bench steps``, ``grow`` and ``propagation`` time it."""
    cfg = TrainerConfig(optimizer=optimiser, batch_size=BATCH, lr=LR, reg=REG, threads=1, progress=False)
    torch.manual_seed(SEED)
    model = make_model(model_name, dataset.n_users, dataset.n_items, dataset.train, dim=DIM)
    sampler = make_sampler("rns", dataset.train)
    sampler.prepare(model, torch_seed(SEED, stream, "sampler"))
    rng = make_rng(SEED, stream, optimiser)
    sampler.start_epoch(0, rng)
    trainer = Trainer(model, dataset, cfg, None, RunDir(os.path.join(workdir, f"{model_name}-{optimiser}")))
    optimizer = make_optimiser(optimiser, model, sampler.parameters(), LR)
    loss, settings = LOSSES.get("bpr"), LossSettings(margin=cfg.margin, temperature=cfg.temperature)
    model.train()
    return lambda rows: trainer.train_step(sampler, rows, optimizer, loss, settings, rng)


def _torch_sparse_adam_step(dataset: Dataset) -> Step:
    """A plain PyTorch MF-BPR step: sparse embeddings, uniform negatives, ``torch.optim.SparseAdam``."""
    torch.manual_seed(SEED)
    users, items = nn.Embedding(dataset.n_users, DIM, sparse=True), nn.Embedding(dataset.n_items, DIM, sparse=True)
    nn.init.xavier_normal_(users.weight)
    nn.init.xavier_normal_(items.weight)
    optimizer = torch.optim.SparseAdam([users.weight, items.weight], lr=LR)
    rng = make_rng(SEED, "bench-steps", "torch")

    def step(rows: tuple[np.ndarray, np.ndarray]) -> None:
        u_ids, p_ids = rows
        u = users(torch.as_tensor(u_ids))
        p = items(torch.as_tensor(p_ids))
        n = items(torch.as_tensor(rng.integers(0, dataset.n_items, u_ids.size)))
        loss = F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean()
        loss = loss + REG * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2 / u_ids.size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _implicit_epoch(dataset: Dataset) -> tuple[Callable[[], Any], float] | None:
    """(one epoch of ``implicit``'s BPR on one thread, its number of 2048-sample steps); None when the
    package is not installed."""
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        return None
    user_items = dataset.train.to_scipy()
    model = BayesianPersonalizedRanking(factors=DIM, learning_rate=0.01, regularization=REG, iterations=1,
                                        num_threads=1, random_state=SEED)
    return (lambda: model.fit(user_items, show_progress=False)), user_items.nnz / BATCH


def run(report: Callable[[str], Any] = print, quick: bool = False, data_dir: str | None = None,
        steps: int | None = None, block: int | None = None) -> dict[str, Any]:
    """Time every contender over ``steps`` steps each (default: one Gowalla epoch's 360; quick: 60) in
    blocks of ``block`` (default 20; quick 10); report and return the medians (ms a step) and ratios."""
    steps = steps or (60 if quick else 360)
    block = block or (10 if quick else 20)
    blocks = max(1, steps // block)
    dataset = gowalla_or_synthetic(quick, data_dir)
    users_all, items_all = pair_rows(dataset.train)
    rng = make_rng(SEED, "bench-steps", "batches")
    batches = list(pair_batches(users_all, items_all, n_steps_for(users_all.size, BATCH), rng))
    load_before = os.getloadavg()

    def in_blocks(step: Step) -> Callable[[int], None]:
        """Block ``rep`` of ``step``: the next ``block`` batches of the epoch (every contender sees the same)."""
        def run_block(rep: int) -> None:
            for b in range(rep * block, (rep + 1) * block):
                step(batches[b % len(batches)])
        return run_block

    with _single_thread(), tempfile.TemporaryDirectory() as workdir:
        contenders: dict[str, Step] = {f"raysearch {name}": trainer_step(dataset, name, workdir) for name in OPTIMISERS}
        contenders["torch SparseAdam loop"] = _torch_sparse_adam_step(dataset)
        for fn in contenders.values():  # warm-up: the first torch calls of a process are slow
            for b in range(3):
                fn(batches[b % len(batches)])
        fns = {name: in_blocks(step) for name, step in contenders.items()}
        steps_per_call = dict.fromkeys(fns, block)
        implicit = _implicit_epoch(dataset)
        if implicit is not None:
            epoch, steps_per_epoch = implicit
            epoch()  # warm-up
            fns["implicit BPR"] = lambda rep: epoch()
            steps_per_call["implicit BPR"] = steps_per_epoch
        seconds = interleaved(fns, blocks)
    load_after = os.getloadavg()
    ms = {name: 1e3 * float(np.median(seconds[name])) / steps_per_call[name] for name in fns}
    dense, plain = ms["raysearch adam"], ms["torch SparseAdam loop"]
    source = "gowalla" if dataset.name == "gowalla" else dataset.name
    report(f"steps: MF-BPR dim {DIM}, batch {BATCH}, {source} ({dataset.n_users} users x {dataset.n_items} items, "
           f"{users_all.size} train rows); one thread; {platform.machine()}, torch {torch.__version__}")
    report(f"  {blocks} blocks of {block} steps a contender, medians of block means; "
           f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
    report(f"  {'contender':<28} {'ms/step':>8} {'vs adam':>8} {'vs torch loop':>14}")
    for name, value in ms.items():
        report(f"  {name:<28} {value:8.2f} {dense / value:7.2f}x {plain / value:13.2f}x")
    if implicit is None:
        report("  (implicit is not installed: its BPR is not in the comparison)")
    if source == "gowalla":
        verdict = "met" if ms["raysearch sparse_adam"] <= TARGET_MS else "not met"
        report(f"  target: raysearch sparse_adam <= {TARGET_MS} ms a step on a quiet machine: {verdict} here")
    return {"dataset": source, "dim": DIM, "batch": BATCH, "steps_per_contender": blocks * block,
            "block": block, "load_average": [load_before[0], load_after[0]], "ms_per_step": ms,
            "speedup_vs_adam": {k: dense / v for k, v in ms.items()},
            "speedup_vs_torch_loop": {k: plain / v for k, v in ms.items()}}
