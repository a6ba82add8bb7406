"""Benchmark of full-ranking evaluation at Gowalla's size (``raysearch bench eval``).

Random ``dim``-dimensional user and item embeddings score every item for every user (``U[u] @ V.T``);
``evaluate_full`` masks the train items and computes all metrics at K = 20 and 10, with the
popularity-band breakdown, end to end. The held-out sets are the real Gowalla split (LightGCN's
``train.txt``/``test.txt``, loaded with ``raysearch.data``, validation share 0) when the default size
is asked for and the files are there; otherwise a synthetic split of the same shape: per user ~27 train and
~7 test items (Gowalla's 810,128 / 217,242 pairs over 29,858 users), items drawn with a power-law
popularity, train and test disjoint.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from raysearch.data.interactions import Interactions
from raysearch.evaluation import DEFAULT_METRICS, evaluate_full, popularity_bands
from raysearch.rng import make_rng

GOWALLA_USERS, GOWALLA_ITEMS = 29_858, 40_981
GOWALLA_TRAIN, GOWALLA_TEST = 810_128, 217_242
KS = (20, 10)
SEED = 2026


def run(
    report: Callable[[str], None] = print,
    users: int = GOWALLA_USERS,
    items: int = GOWALLA_ITEMS,
    dim: int = 64,
    threads: int | None = None,
    data_dir: str | None = None,
    quick: bool = False,
    batch_users: int = 2048,
) -> dict[str, Any]:
    """Time ``evaluate_full`` once, end to end; report and return the figures (JSON-able).

    ``threads``: torch intra-op threads (default: the CPUs this process may use); restored afterwards.
    ``quick``: a tenth of the users and items (synthetic data).
    """
    if quick:
        users, items = max(users // 10, 2), max(items // 10, 2)
    threads = threads or len(os.sched_getaffinity(0))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        split = None
        if (users, items) == (GOWALLA_USERS, GOWALLA_ITEMS):
            split = _gowalla_split(data_dir)
        source = "gowalla (LightGCN split)" if split else "synthetic"
        train, test = split or _synthetic_split(users, items, make_rng(SEED, "bench", "evaluation", "split"))
        rng = make_rng(SEED, "bench", "evaluation", "embeddings")
        scale = np.float32(1 / np.sqrt(dim))  # float32 throughout: a float64 factor would double the cost
        user_emb = torch.from_numpy(rng.standard_normal((train.n_users, dim), dtype=np.float32) * scale)
        item_emb = torch.from_numpy(rng.standard_normal((train.n_items, dim), dtype=np.float32) * scale)
        bands = popularity_bands(train.item_counts())
        report(f"evaluation bench: {source} data, {train.n_users} users x {train.n_items} items, "
               f"{train.nnz} train / {test.nnz} test pairs, dim {dim}, {threads} threads")

        start = time.perf_counter()
        result = evaluate_full(
            lambda u: user_emb[u] @ item_emb.T, test, {"train": train}, ks=KS, metrics=DEFAULT_METRICS,
            batch_users=batch_users, item_bands=bands,
        )
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)

    figures = {
        "benchmark": "evaluation",
        "data": source,
        "users": train.n_users,
        "evaluated_users": result.n_users,
        "items": train.n_items,
        "train_pairs": train.nnz,
        "test_pairs": test.nnz,
        "dim": dim,
        "ks": list(KS),
        "metrics": list(DEFAULT_METRICS),
        "batch_users": batch_users,
        "seconds": round(seconds, 3),
        "users_per_s": round(result.n_users / seconds, 1),
        "threads": threads,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "means": result.means,
        "bands": result.band_means,
    }
    report(f"evaluate_full (K={', '.join(map(str, KS))}; {', '.join(DEFAULT_METRICS)}; bands): "
           f"{seconds:.2f} s, {figures['users_per_s']:.0f} users/s")
    report(f"recall@20 {result.means['recall@20']:.5f} (random model: about 20 / n_items = "
           f"{20 / train.n_items:.5f}), ndcg@20 {result.means['ndcg@20']:.5f}")
    report(f"machine: {figures['machine']['platform']}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    return figures


def _gowalla_split(data_dir: str | None) -> tuple[Interactions, Interactions] | None:
    """Gowalla's LightGCN train/test split through ``raysearch.data``, or None when its files are absent."""
    from raysearch.data import data_dirs, dataset_config, load_dataset

    # valid_share=0: keep the published train split whole, as the LightGCN papers evaluate it
    config = dataclasses.replace(dataset_config("gowalla"), valid_share=0.0)
    if not any((root / str(config.path) / "train.txt").is_file() for root in data_dirs(data_dir)):
        return None
    dataset = load_dataset(config, data_dir=data_dir)
    return dataset.train, dataset.test


def _synthetic_split(users: int, items: int, rng: np.random.Generator) -> tuple[Interactions, Interactions]:
    """Disjoint train/test ``Interactions`` with Gowalla's pairs per user and a power-law popularity."""
    n_train = max(round(GOWALLA_TRAIN * users / GOWALLA_USERS), users)
    n_test = max(round(GOWALLA_TEST * users / GOWALLA_USERS), users)
    train_per_user = _spread(n_train, users, rng)
    wanted = train_per_user + _spread(n_test, users, rng)
    # item popularity ~ (popularity rank)^-0.7, ranks assigned to item ids at random
    weights = (np.arange(items) + 1.0) ** -0.7
    popularity = weights[rng.permutation(items)] / weights.sum()
    # draw 1.5x what each user needs with replacement, keep the first `wanted` distinct items per user in
    # a random order; the first train_per_user of them are train, the rest test (so disjoint)
    draws = np.ceil(wanted * 1.5).astype(np.int64) + 2
    pair_user = np.repeat(np.arange(users, dtype=np.int64), draws)
    pair_item = rng.choice(items, size=pair_user.size, p=popularity)
    keys, first = np.unique(pair_user * items + pair_item, return_index=True)
    keys = keys[np.argsort(rng.random(keys.size) + keys // items, kind="stable")]  # per user, random order
    user = keys // items
    rank = np.arange(keys.size) - np.searchsorted(user, user)  # 0-based within the user
    is_train = rank < train_per_user[user]
    is_test = ~is_train & (rank < wanted[user])
    train = Interactions.from_pairs(user[is_train], keys[is_train] % items, users, items)
    test = Interactions.from_pairs(user[is_test], keys[is_test] % items, users, items)
    return train, test


def _spread(total: int, users: int, rng: np.random.Generator) -> np.ndarray:
    """int64 (users,): ``total`` split as evenly as possible, the remainder to random users."""
    counts = np.full(users, total // users, dtype=np.int64)
    counts[rng.choice(users, size=total % users, replace=False)] += 1
    return counts
