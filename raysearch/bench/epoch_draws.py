"""Sampling inside the trainer: per-batch draws against an epoch's draws ahead (``raysearch bench epoch-draws``).

The trainer's own epoch loop (``Trainer._run_epoch``: shuffling, drawing, MF-BPR steps) runs on the same
split with ``trainer.epoch_draws`` off (one ``sample()`` call a step of ``batch`` rows) and on (the epoch's
negatives drawn ahead in a few large calls, raysearch/train/epoch_draws.py), for the static samplers RNS,
PNS (beta 1) and ICPNS (8 random communities, alpha 0.8). The figures are the epoch records' own
``sampling_seconds`` and draws per second (what ``metrics.jsonl`` and MLflow show), next to the reference:
numpy's ``Generator.choice(n_items, batch * num_negatives, p=p)`` (no exclusion, the CDF rebuilt every
call) called once per step of the same epoch, p being the split's item popularity.

Data: ``bench samplers``' synthetic split (Zipf popularity, exponent 1), 10^5 items (the catalogue size
of the issue's target: epoch draws at least 8x ``choice(p)``), 20k users x 20 positives (400k rows);
``--quick``: 5k users (100k rows), 3 epochs a contender. Model: MF dimension 16 with ``rowwise_adagrad``
(steps touch only their rows, so that the steps do not drown the sampling), one thread.

Timing: every repetition runs one epoch of each contender in turn, the order rotating (``interleaved``),
so a slow spell of a shared machine hits them all; figures are medians over repetitions, ratios of
medians from the same run. The load average is printed before and after.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from raysearch.bench.samplers import COMMUNITIES, TARGET_ITEMS, _single_thread, interleaved, zipf_train
from raysearch.config import TrainerConfig
from raysearch.data.dataset import Dataset
from raysearch.data.interactions import Interactions
from raysearch.models import make_model
from raysearch.rng import make_rng, torch_seed
from raysearch.samplers import make_sampler
from raysearch.train.epoch_draws import user_classes
from raysearch.train.optimisers import make_optimiser
from raysearch.train.rundir import RunDir
from raysearch.train.trainer import StageSpec, Trainer

DIM, LR, BATCH, SEED = 16, 0.05, 4096, 2026
TARGET_SPEEDUP = 8.0  # the target: epoch draws at least 8x choice(p) at 1e5 items
SAMPLERS = ("rns", "pns", "icpns")


def split(n_users: int, n_items: int, seed: int) -> tuple[Dataset, np.ndarray]:
    """(a train-only ``Dataset`` of ~20 Zipf-drawn positives a user, the item popularity p float64)."""
    train, _ = zipf_train(n_items, make_rng(seed, "bench-epoch-draws", n_items), n_users=n_users)
    empty = Interactions.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), n_users, n_items)
    dataset = Dataset("zipf", train, empty, empty, np.arange(n_users).astype(str), np.arange(n_items).astype(str),
                      {"generator": "raysearch.bench.samplers.zipf_train"})
    counts = train.item_counts().astype(np.float64)
    return dataset, counts / counts.sum()


def _sampler(name: str, dataset: Dataset, seed: int) -> Any:
    if name == "icpns":
        communities = make_rng(seed, "bench-epoch-draws", "communities").integers(0, COMMUNITIES, dataset.n_users)
        return make_sampler("icpns", dataset.train, communities=communities, alpha=0.8)
    return make_sampler(name, dataset.train, **({"beta": 1.0} if name == "pns" else {}))


def run(report: Callable[[str], Any] = print, quick: bool = False, n_users: int | None = None,
        n_items: int = TARGET_ITEMS, epochs: int | None = None, batch: int = BATCH, num_negatives: int = 1,
        samplers: tuple[str, ...] = SAMPLERS, seed: int = SEED) -> dict[str, Any]:
    """Time ``epochs`` epochs (default 5; quick 3) of each contender, interleaved; report a table and
    return the medians (seconds of sampling an epoch, draws per second) and the ratios."""
    n_users = n_users or (5000 if quick else 20_000)
    epochs = epochs or (3 if quick else 5)
    dataset, p = split(n_users, n_items, seed)
    rows = dataset.train.nnz
    n_steps = -(-rows // batch)
    load_before = os.getloadavg()
    records: dict[str, list[dict[str, Any]]] = {}
    with _single_thread(), tempfile.TemporaryDirectory() as workdir:
        torch.manual_seed(seed)
        model = make_model("mf", dataset.n_users, dataset.n_items, dataset.train, dim=DIM)
        optimizer = make_optimiser("rowwise_adagrad", model, [], LR)
        fns: dict[str, Callable[[int], Any]] = {}
        for name in samplers:
            sampler = _sampler(name, dataset, seed)
            sampler.prepare(model, torch_seed(seed, "bench-epoch-draws", name))
            for ahead in (False, True):
                key = f"{name} {'epoch_draws' if ahead else 'per-batch'}"
                cfg = TrainerConfig(batch_size=batch, lr=LR, optimizer="rowwise_adagrad", num_negatives=num_negatives,
                                    epoch_draws=ahead, seed=seed, threads=1, progress=False)
                # The epoch loop only: no evaluation (the split has no validation items), so no evaluator.
                trainer = Trainer(model, dataset, cfg, None, RunDir(os.path.join(workdir, key.replace(" ", "-"))))
                spec = StageSpec(key.replace(" ", "-"), sampler, epochs, LR)
                state: dict[str, Any] = {"epoch_seconds": [], "sampling_seconds": [], "step_seconds": [], "draws": 0}
                records[key] = []

                def one(rep: int, trainer=trainer, spec=spec, state=state, key=key) -> None:
                    records[key].append(trainer._run_epoch(spec, rep, optimizer, "bpr", state))

                fns[key] = one
        g = make_rng(seed, "bench-epoch-draws", "choice")
        sizes = [s.size * num_negatives for s in np.array_split(np.arange(rows), n_steps)]
        choice_seconds: list[float] = []

        def choice_epoch(rep: int) -> None:
            for size in sizes:
                g.choice(n_items, size=size, p=p)

        fns["choice(p)"] = choice_epoch
        seconds = interleaved(fns, epochs)
        choice_seconds = seconds.pop("choice(p)").tolist()
    load_after = os.getloadavg()

    draws = rows * num_negatives
    choice_s = float(np.median(choice_seconds))
    results: dict[str, Any] = {
        "n_users": dataset.n_users, "n_items": n_items, "train_rows": rows, "batch": batch, "steps": n_steps,
        "num_negatives": num_negatives, "epochs_per_contender": epochs, "user_classes": user_classes(rows, num_negatives),
        "load_average": [load_before[0], load_after[0]],
        "choice": {"sampling_s": choice_s, "draws_per_s": draws / choice_s},
        "samplers": {},
    }
    report(f"epoch draws inside the trainer: MF dim {DIM} (rowwise_adagrad), batch {batch}, {num_negatives} "
           f"negative(s) a row; Zipf split {dataset.n_users} users x {n_items} items, {rows} train rows "
           f"({n_steps} steps; epoch draws in {user_classes(rows, num_negatives)} user class(es)); one thread; "
           f"{platform.machine()}, torch {torch.__version__}")
    report(f"  {epochs} epochs a contender, interleaved, medians; load average before {load_before[0]:.2f}, "
           f"after {load_after[0]:.2f} ({os.cpu_count()} CPUs)")
    report(f"  reference choice(p), one call per step of {batch * num_negatives} draws: "
           f"{choice_s:.3f} s an epoch, {draws / choice_s / 1e6:.2f}M draws/s")
    report(f"  {'sampler':<8} {'per-batch s':>11} {'M draws/s':>10} {'vs choice':>10} {'epoch_draws s':>14} "
           f"{'M draws/s':>10} {'vs choice':>10} {'speedup':>8}")
    for name in samplers:
        entry: dict[str, Any] = {}
        for mode in ("per-batch", "epoch_draws"):
            recs = records[f"{name} {mode}"]
            sampling = float(np.median([r["sampling_seconds"] for r in recs]))
            rate = float(np.median([r["draws_per_second"] for r in recs]))
            entry[mode] = {"sampling_s": sampling, "draws_per_s": rate, "vs_choice": choice_s / sampling,
                           "epoch_s": float(np.median([r["epoch_seconds"] for r in recs]))}
        entry["speedup"] = entry["per-batch"]["sampling_s"] / entry["epoch_draws"]["sampling_s"]
        results["samplers"][name] = entry
        per, ahead = entry["per-batch"], entry["epoch_draws"]
        report(f"  {name:<8} {per['sampling_s']:11.3f} {per['draws_per_s'] / 1e6:10.2f} {per['vs_choice']:9.1f}x "
               f"{ahead['sampling_s']:14.3f} {ahead['draws_per_s'] / 1e6:10.2f} {ahead['vs_choice']:9.1f}x "
               f"{entry['speedup']:7.1f}x")
    if n_items == TARGET_ITEMS:
        met = {n: e["epoch_draws"]["vs_choice"] >= TARGET_SPEEDUP for n, e in results["samplers"].items()}
        results["target_met"] = met
        report(f"  target: epoch draws >= {TARGET_SPEEDUP:g}x choice(p) at {n_items} items: "
               + ", ".join(f"{n} {'met' if ok else 'not met'}" for n, ok in met.items())
               + ("" if not quick else " (quick: a smaller split; the full run is the measurement)"))
    return results
