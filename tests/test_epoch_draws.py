"""``trainer.epoch_draws``: an epoch's negatives drawn ahead in a few large calls, keyed by the global row.

The same negatives per (user, positive) row on 1 and 2 workers (the trainer in a 2-process gloo group), the
samplers' laws kept (chi-square), training and bit-exact resume, the refusal of samplers that cannot draw
ahead, and the bench's quick run.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from scipy import stats

from raysearch.cli import main
from raysearch.config import load_run_config
from raysearch.data.interactions import Interactions
from raysearch.distributed.process_group import run_in_process_group
from raysearch.samplers import SAMPLERS, make_sampler
from raysearch.train import epoch_draws
from raysearch.train.batches import pair_rows
from raysearch.train.checkpoint import load_checkpoint
from raysearch.train.epoch_draws import draw_epoch, drawn_share, plan_draws, user_classes
from raysearch.train.pipeline import run_training, validate_components
from raysearch.train.rundir import RunDir
from raysearch.train.trainer import InjectedFailure

SMALL = ["trainer.batch_size=256", "trainer.progress=false", "model.dim=16", "trainer.lr=0.01", "trainer.threads=1"]
TINY = ["dataset.synthetic.n_users=60", "dataset.synthetic.n_items=40", "dataset.synthetic.mean_exposures=20",
        "model.dim=8", "trainer.batch_size=256", "trainer.progress=false", "trainer.threads=1"]
STATIC = {"rns", "pns", "icpns", "attribute", "social"}


# --------------------------------------------------------------------------- 1 worker = 2 workers
def _trained_rows(rank: int, world: int, out: str, modes: list[tuple[bool, int | None]]) -> str:
    """Per mode (epoch_draws, MIN_CLASS_DRAWS or None for the default): per epoch, the (users, positives,
    negatives) every step of this rank trained on, over 2 epochs of MF with PNS (3 negatives a row); saved
    to a file whose path is returned (the process group's result queue is a pipe: a large result would
    block the worker until the parent reads, which it does once every worker has ended)."""
    torch.set_num_threads(1)
    from raysearch.config import EvalConfig, TrainerConfig
    from raysearch.data.synthetic import synthetic_dataset
    from raysearch.models import make_model
    from raysearch.train.context import LocalContext
    from raysearch.train.evaluator import Evaluator
    from raysearch.train.trainer import StageSpec, Trainer

    class Recording(Trainer):
        """The trainer, remembering each step's batch."""

        seen: list[list[tuple]]

        def _run_epoch(self, spec, epoch, *args):
            self.seen.append([])
            return super()._run_epoch(spec, epoch, *args)

        def _draw(self, sampler, rows_of_step, *args):
            batch = super()._draw(sampler, rows_of_step, *args)
            self.seen[-1].append((batch.users, batch.positives[:, 0], batch.negatives))
            return batch

    default = epoch_draws.MIN_CLASS_DRAWS
    ds = synthetic_dataset(n_users=90, n_items=60)
    if world > 1:
        from raysearch.distributed.context import DistributedContext
        from raysearch.distributed.sharded import ShardedEmbeddings

        context = DistributedContext(report_to_ray=False)
    else:
        context = LocalContext()
    results = []
    for index, (ahead, min_class_draws) in enumerate(modes):
        epoch_draws.MIN_CLASS_DRAWS = default if min_class_draws is None else min_class_draws
        torch.manual_seed(0)
        tables = ShardedEmbeddings(ds.n_users, ds.n_items, 8) if world > 1 else None
        model = make_model("mf", ds.n_users, ds.n_items, ds.train, tables=tables, dim=8)
        cfg = TrainerConfig(epochs=2, batch_size=64, num_negatives=3, epoch_draws=ahead, threads=1, progress=False)
        trainer = Recording(model, ds, cfg, Evaluator(ds, EvalConfig(), cfg.valid_metric, context),
                            RunDir(f"{out}/mode{index}-rank{rank}"), context)
        trainer.seen = []
        trainer.fit(StageSpec("train", make_sampler("pns", ds.train), 2, 0.01))
        results.append([tuple(np.concatenate(part) for part in zip(*steps, strict=True)) for steps in trainer.seen])
    path = f"{out}/rows-rank{rank}.pkl"
    with open(path, "wb") as fh:
        pickle.dump(results, fh)
    return path


def _load(paths: list[str]) -> list:
    out = []
    for path in paths:
        with open(path, "rb") as fh:
            out.append(pickle.load(fh))
    return out


def _by_row(parts: list[tuple], n_items: int) -> dict[int, tuple]:
    """{user * n_items + positive: negatives} over the ranks' steps (each row exactly once)."""
    out: dict[int, tuple] = {}
    for users, pos, neg in parts:
        for key, row in zip((users * n_items + pos).tolist(), neg.tolist(), strict=True):
            assert key not in out, "a row trained twice in an epoch"
            out[key] = tuple(row)
    return out


def test_two_workers_train_each_row_with_the_same_negatives_as_one(tmp_path):
    from raysearch.data.synthetic import synthetic_dataset

    n_items = synthetic_dataset(n_users=90, n_items=60).n_items
    # per-batch draws; epoch draws with M = 1 (every rank draws every row); with M = 12 (no row drawn twice)
    modes = [(False, None), (True, None), (True, 1)]
    (one,) = _load(run_in_process_group(_trained_rows, 1, str(tmp_path / "one"), modes))
    two = _load(run_in_process_group(_trained_rows, 2, str(tmp_path / "two"), modes))
    for mode, (ahead, _) in enumerate(modes):
        for epoch in range(2):
            single = _by_row([one[mode][epoch]], n_items)
            pair = _by_row([two[0][mode][epoch], two[1][mode][epoch]], n_items)
            assert set(single) == set(pair)  # the same rows, each once
            same = sum(single[key] == pair[key] for key in single)
            if ahead:
                assert same == len(single), (mode, epoch)
            else:  # per-batch draws follow each rank's stream: a seed's negatives depend on the workers
                assert same < 0.2 * len(single)
    # the epoch's draws are the epoch's: epoch 1 draws anew
    first, second = _by_row([one[1][0]], n_items), _by_row([one[1][1]], n_items)
    assert sum(first[k] == second[k] for k in first) < 0.2 * len(first)
    # the user classes (M = 12) give each row other negatives than M = 1 (other chunks, other streams)
    classes = _by_row([one[2][0]], n_items)
    assert sum(first[k] == classes[k] for k in first) < 0.2 * len(first)


def _zipf_train(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=int(rng.integers(2, 8)), replace=False, p=p / p.sum())
        users += [u] * chosen.size
        items += chosen.tolist()
    return Interactions.from_pairs(np.array(users), np.array(items), n_users, n_items)


@pytest.mark.parametrize("m", [1, 4, 6, 12])
def test_every_worker_count_gets_the_same_draws_and_w_dividing_m_draws_each_row_once(monkeypatch, m):
    train = _zipf_train(n_users=60)
    sampler = make_sampler("pns", train)
    users, items = pair_rows(train)
    k = 2
    monkeypatch.setattr(epoch_draws, "MIN_CLASS_DRAWS", users.size * k // m)
    assert user_classes(users.size, k) == m
    reference, drawn_one = draw_epoch(sampler, plan_draws(train, np.arange(train.n_users), k), 7, "train", 3,
                                      chunk_draws=50)
    assert reference.shape == (users.size, k) and drawn_one == users.size * k
    for world in (2, 3, 4, 5, 8):
        drawn_total = 0
        for rank in range(world):
            mine = np.arange(rank, train.n_users, world)
            negatives, drawn = draw_epoch(sampler, plan_draws(train, mine, k), 7, "train", 3, chunk_draws=50)
            rows = np.flatnonzero(np.isin(users, mine))  # this rank's rows, in pair_rows(train, mine)'s order
            np.testing.assert_array_equal(negatives, reference[rows], err_msg=f"rank {rank} of {world}")
            drawn_total += drawn
        waste = drawn_total / (users.size * k)
        assert waste <= drawn_share(users.size, k, world) + 1e-9
        if m % world == 0:
            assert waste == 1.0, (world, m)


# --------------------------------------------------------------------------- the samplers' laws
def _draws_by_user(name: str, train: Interactions, k: int, **params) -> tuple[object, np.ndarray]:
    """(sampler, counts int (n_users, n_items)): each user's epoch draws over 3 epochs."""
    sampler = make_sampler(name, train, **params)
    plan = plan_draws(train, np.arange(train.n_users), k)
    counts = np.zeros(train.shape, dtype=np.int64)
    users, _ = pair_rows(train)
    for epoch in range(3):
        negatives, _ = draw_epoch(sampler, plan, 11, "train", epoch, chunk_draws=4096)
        np.add.at(counts, (np.repeat(users, k), negatives.ravel().astype(np.int64)), 1)
    return sampler, counts


def _chi_square(counts: np.ndarray, expected_p: np.ndarray) -> float:
    """p-value of the summed per-user Pearson statistics (cells of zero expected probability left out)."""
    stat, dof = 0.0, 0
    for observed, p in zip(counts, expected_p, strict=True):
        cells = p > 0
        expected = observed.sum() * p[cells] / p[cells].sum()
        stat += float(((observed[cells] - expected) ** 2 / expected).sum())
        dof += int(cells.sum()) - 1
    return float(stats.chi2.sf(stat, dof))


@pytest.mark.parametrize("min_class_draws", [1 << 18, 1])
def test_rns_epoch_draws_are_uniform_over_each_users_non_positives(monkeypatch, min_class_draws):
    monkeypatch.setattr(epoch_draws, "MIN_CLASS_DRAWS", min_class_draws)
    train = _zipf_train()
    _, counts = _draws_by_user("rns", train, 200)
    positives = train.to_scipy().toarray() > 0
    assert counts[positives].sum() == 0  # never a training positive
    assert _chi_square(counts, (~positives).astype(float)) > 1e-3


def test_pns_epoch_draws_follow_popularity_without_the_users_positives(monkeypatch):
    monkeypatch.setattr(epoch_draws, "MIN_CLASS_DRAWS", 1)  # 12 user classes
    train = _zipf_train()
    sampler, counts = _draws_by_user("pns", train, 200, beta=1.0)
    positives = train.to_scipy().toarray() > 0
    assert counts[positives].sum() == 0
    popularity = train.item_counts().astype(float)
    assert counts[:, popularity == 0].sum() == 0  # items never seen in training are never drawn
    expected = np.where(positives, 0.0, popularity[None, :])
    np.testing.assert_allclose(sampler.probabilities, popularity / popularity.sum())
    assert _chi_square(counts, expected) > 1e-3
    # and not uniform: the test tells the two laws apart
    assert _chi_square(counts, (~positives & (popularity > 0)[None, :]).astype(float)) < 1e-6


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def small_dataset():
    from raysearch.data import load_dataset

    return load_dataset(load_run_config(SMALL).dataset, use_cache=False)


def _run(overrides, dataset, out):
    cfg = load_run_config([*SMALL, *overrides])
    return run_training(cfg, dataset, RunDir(out))


def test_mf_trains_with_epoch_draws_and_resumes_bit_exactly(small_dataset, tmp_path, monkeypatch):
    overrides = ["trainer.epochs=4", "trainer.epoch_draws=true", "trainer.num_negatives=2", "sampler=pns"]
    calls = []
    monkeypatch.setattr("raysearch.train.trainer.draw_epoch",
                        lambda *a, **kw: calls.append(a[3:5]) or draw_epoch(*a, **kw))
    full = _run(overrides, small_dataset, tmp_path / "full")
    assert calls == [("train", e) for e in range(4)]  # one drawing ahead an epoch
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert losses[-1] < losses[0] - 0.05
    rows = small_dataset.train.nnz
    for r in records:
        assert r["draws"] == 2 * rows and r["sampling_seconds"] > 0
        assert r["draws_per_second"] == pytest.approx(r["draws"] / r["sampling_seconds"])
    assert full["stages"]["train"]["draws"] == 4 * 2 * rows
    with pytest.raises(InjectedFailure):
        _run([*overrides, "trainer.fail_after_epoch=1"], small_dataset, tmp_path / "cut")
    resumed = _run([*overrides, "trainer.fail_after_epoch=1"], small_dataset, tmp_path / "cut")
    assert resumed["test"] == full["test"] and resumed["valid"] == full["valid"]
    a = load_checkpoint(tmp_path / "full" / "stages" / "train" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "stages" / "train" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # per-batch draws (the default) train on other negatives: another model
    per_batch = _run(overrides[:1] + overrides[2:], small_dataset, tmp_path / "per-batch")
    assert per_batch["valid"] != full["valid"]


def test_icpns_fine_tunes_with_epoch_draws_across_a_reclustering(small_dataset, tmp_path):
    results = _run(["sampler=icpns", "sampler.n_communities=3", "sampler.pretrain_epochs=1",
                    "sampler.finetune_epochs=2", "sampler.recluster_every=1", "trainer.epoch_draws=true"],
                   small_dataset, tmp_path / "run")
    assert list(results["stages"]) == ["pretrain", "finetune"]
    assert results["stages"]["finetune"]["draws"] == 2 * small_dataset.train.nnz
    assert results["valid"]["ndcg@10"] > 0


# --------------------------------------------------------------------------- refusals
def test_the_static_samplers_are_exactly_the_batch_independent_ones():
    marked = {n for n in SAMPLERS.names() if SAMPLERS.get(n).batch_independent}
    assert marked == STATIC
    for name in marked:
        cls = SAMPLERS.get(name)
        assert not cls.dynamic and not cls.synthesises and not hasattr(cls, "sample_groups")
    for name in sorted(STATIC - {"attribute", "social"}):  # (these two need the dataset's side information)
        validate_components(load_run_config([*TINY, f"sampler={name}", "trainer.epoch_draws=true"]))


@pytest.mark.parametrize(("sampler", "why"), [
    ("dns", "its draws depend on the model's current scores (a dynamic sampler)"),
    ("gdns", "its draws depend on the model's current scores (a dynamic sampler)"),
    ("inbatch", "its draws depend on the other rows of the step's batch (in-batch negatives)"),
    ("mixed", "its draws depend on the other rows of the step's batch (in-batch negatives)"),
    ("mixgcf", "it synthesises each step's negatives from the model's current representations"),
])
def test_a_sampler_that_cannot_draw_ahead_is_one_line_exit_2(sampler, why, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    status = main(["train", "--out", str(out), *TINY, f"sampler={sampler}", "trainer.epoch_draws=true"])
    lines = capsys.readouterr().err.splitlines()
    assert status == 2 and len(lines) == 1
    assert lines[0] == (f"raysearch: error: trainer.epoch_draws: sampler {sampler!r} cannot draw an epoch's "
                        f"negatives ahead: {why} (static samplers that can: attribute, icpns, pns, rns, social)")
    assert not out.exists()


# --------------------------------------------------------------------------- the bench
def test_the_bench_quick_run_prints_its_table(tmp_path, capsys):
    assert main(["bench", "epoch-draws", "--quick", "--json", str(tmp_path / "bench.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch draws inside the trainer") and "100000 items" in lines[0]
    assert any("reference choice(p)" in line for line in lines)
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["sampler", "per-batch"])
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == ["rns", "pns", "icpns"]
    assert lines[-1].startswith("  target: epoch draws >= 8x choice(p) at 100000 items:")
    figures = json.loads((tmp_path / "bench.json").read_text())
    choice = figures["choice"]["sampling_s"]
    for entry in figures["samplers"].values():
        per_batch, ahead = entry["per-batch"], entry["epoch_draws"]
        assert per_batch["sampling_s"] > 0 and ahead["sampling_s"] > 0
        assert entry["speedup"] == pytest.approx(per_batch["sampling_s"] / ahead["sampling_s"])
        assert ahead["vs_choice"] == pytest.approx(choice / ahead["sampling_s"])
