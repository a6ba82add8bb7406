"""Does GDNS's gain steer? Per-epoch measurements of its selections: the share of each negative group that
is a never-visited entry, and the pool percentile of the selected negatives under the current score."""

import json

import numpy as np
import pytest

from raysearch.data.interactions import Interactions
from raysearch.samplers import make_sampler

STATS = {"fresh_share", "pool_fresh_share", "selected_percentile", "selected_fresh_percentile",
         "selected_visited_percentile"}


def item_id_scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.broadcast_to(items, np.broadcast_shapes(np.shape(users), np.shape(items))).astype(np.float32)


def test_measurements_on_a_hand_built_pool():
    """Two users, pools of 5, groups of 2 chosen by hand-set gains; scores with ties for user 1."""
    train = Interactions.from_pairs([0, 1], [0, 1], 2, 20)
    gdns = make_sampler("gdns", train, group_size=2, num_candidates=5, refresh=0.0)
    state = gdns.state_dict()
    state["items"][:] = [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    state["gain"][:] = [[0.1, 0.8, 0.2, 0.9, 0.3], [0.9, 0.1, 0.2, 0.3, 0.8]]  # picks slots {3, 1} and {0, 4}
    state["seen"][:] = [[True, False, True, True, False], [False] * 5]
    state["filled"][:] = True
    gdns.load_state_dict(state)
    scores = {0: 0.0, 1: 0.0, 10: 0.1, 11: 0.5, 12: 0.3, 13: 0.9, 14: 0.7, 15: 1.0, 16: 1.0, 17: 1.0, 18: 0.0, 19: 2.0}
    scorer = lambda u, i: np.vectorize(lambda j: scores[int(j)])(i).astype(np.float32)  # noqa: E731
    gdns.start_epoch(0, 0)
    _, neg = gdns.sample_groups(np.array([0, 1]), np.random.default_rng(0), scorer)
    assert sorted(neg[0]) == [11, 13] and sorted(neg[1]) == [15, 19]
    # user 0: item 13 (visited) tops its pool: 100; item 11 (fresh) beats 2 of 4: 50
    # user 1: item 15 (fresh) beats 1 and ties 2 of 4: (1 + 2/2) / 4 = 50; item 19 (fresh): 100
    assert gdns.epoch_stats() == {
        "fresh_share": (3.0, 4.0), "pool_fresh_share": (7.0, 10.0), "selected_percentile": (300.0, 4.0),
        "selected_fresh_percentile": (200.0, 3.0), "selected_visited_percentile": (100.0, 1.0)}
    gdns.start_epoch(1, 0)
    assert all(v == (0.0, 0.0) for v in gdns.epoch_stats().values())


def gdns_train(n_users: int, n_items: int = 300, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 10)
    return Interactions.from_pairs(users, rng.integers(0, n_items, users.size), n_users, n_items)


def expected_stats(items: np.ndarray, seen: np.ndarray, neg: np.ndarray) -> dict[str, tuple[float, float]]:
    """The measurements recomputed pick by pick (score = item id, pools of distinct items)."""
    m = items.shape[1]
    out = {name: [0.0, 0.0] for name in STATS}
    for row_items, row_seen, picks in zip(items, seen, neg, strict=True):
        out["pool_fresh_share"][0] += (~row_seen).sum()
        out["pool_fresh_share"][1] += m
        for item in picks:
            slot = int(np.flatnonzero(row_items == item)[0])
            fresh = not row_seen[slot]
            pct = 100.0 * np.sum(row_items < item) / (m - 1)
            for name, on in (("fresh_share", True), ("selected_percentile", True),
                             ("selected_fresh_percentile", fresh), ("selected_visited_percentile", not fresh)):
                if on:
                    out[name][0] += fresh if name == "fresh_share" else pct
                    out[name][1] += 1
    return {k: tuple(v) for k, v in out.items()}


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_measurements_match_a_pick_by_pick_count(alpha):
    train = gdns_train(40)
    gdns = make_sampler("gdns", train, group_size=4, num_candidates=16, alpha=alpha)
    rng = np.random.default_rng(3)
    users = np.arange(40)
    gdns.sample_groups(users, rng, item_id_scorer)  # fills and visits every pool once
    before = gdns.state_dict()
    gdns.start_epoch(1, rng)
    _, neg = gdns.sample_groups(users, rng, item_id_scorer)
    got = gdns.epoch_stats()
    want = expected_stats(before["items"], before["seen"], neg)
    assert set(got) == STATS
    for name in STATS:
        assert got[name] == pytest.approx(want[name]), name


def scaled_scorer(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores in [0, 1): no H so small that a visited entry's float32 G rounds up to G0 = 1."""
    return item_id_scorer(users, items) / np.float32(300)


def test_the_paper_initialisation_picks_every_fresh_entry_first_and_alpha_1_picks_uniformly():
    """G0 = 1 puts never-visited entries above every visited one (G < 1): each group takes all the fresh
    entries there are, up to N. With alpha = 1 G stays at G0 for every entry: the group is a uniform pick
    of the pool, its fresh share that of the pool and its percentile about 50."""
    n_users, n, m = 400, 4, 16
    shares = {}
    for alpha in (0.2, 1.0):
        gdns = make_sampler("gdns", gdns_train(n_users), group_size=n, num_candidates=m, alpha=alpha)
        rng = np.random.default_rng(0)
        users = np.arange(n_users)
        gdns.sample_groups(users, rng, scaled_scorer)
        gdns.start_epoch(1, rng)
        gdns.sample_groups(users, rng, scaled_scorer)
        stats = {k: t / c for k, (t, c) in gdns.epoch_stats().items()}
        shares[alpha] = stats
        fresh_in_pool = round(0.25 * (m - n))  # refresh: a quarter of the unselected slots after a visit
        assert stats["pool_fresh_share"] == pytest.approx(fresh_in_pool / m)
        if alpha == 0.2:
            assert stats["fresh_share"] == pytest.approx(min(n, fresh_in_pool) / n)
        else:
            assert np.all(gdns.state_dict()["gain"] == 1.0)
            assert stats["fresh_share"] == pytest.approx(stats["pool_fresh_share"], abs=0.04)
            assert stats["selected_percentile"] == pytest.approx(50.0, abs=3.0)
    assert shares[0.2]["fresh_share"] > shares[1.0]["fresh_share"] + 0.4


def test_the_trainer_records_them_every_epoch_and_false_negatives_json_too(tmp_path):
    from raysearch.config import load_run_config
    from raysearch.data import load_dataset
    from raysearch.train.pipeline import run_training
    from raysearch.train.rundir import RunDir

    base = ["dataset.synthetic.n_users=60", "dataset.synthetic.n_items=40", "dataset.synthetic.mean_exposures=20",
            "model=gmf", "model.dim=8", "trainer.epochs=2", "trainer.progress=false", "trainer.threads=1",
            "trainer.batch_size=16"]
    dataset = load_dataset(load_run_config(base).dataset, use_cache=False)
    for alpha in (0.2, 1.0):
        out = tmp_path / f"gdns-{alpha}"
        cfg = load_run_config([*base, "sampler=gdns", "sampler.group_size=4", f"sampler.alpha={alpha}",
                               "sampler.false_negative_analysis=true"])
        run_training(cfg, dataset, RunDir(out))
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(records) == 2
        for record in records:
            stats = record["sampler_stats"]
            assert set(stats) == STATS
            assert 0 <= stats["fresh_share"] <= 1 and 0 <= stats["pool_fresh_share"] <= 1
            assert 0 <= stats["selected_percentile"] <= 100
        assert records[0]["sampler_stats"]["selected_visited_percentile"] is None  # every pool fresh at first
        analysis = json.loads((out / "false_negatives.json").read_text())
        assert [e["steering"] for e in analysis["per_epoch"]] == [r["sampler_stats"] for r in records]
    run_training(load_run_config([*base, "sampler=rns"]), dataset, RunDir(tmp_path / "rns"))
    assert all("sampler_stats" not in json.loads(line)
               for line in (tmp_path / "rns" / "metrics.jsonl").read_text().splitlines())


def test_mlflow_logs_them_under_sampler():
    from raysearch.tracking import TrainingRunLogger

    logged = {}

    class Client:
        def log_metric(self, run_id, key, value, step):
            logged[key] = value

    logger = object.__new__(TrainingRunLogger)
    logger.client, logger.run_id = Client(), "r"
    logger.log_epoch({"loss": 1.0, "sampler_stats": {"fresh_share": 0.75, "selected_visited_percentile": None}}, 0)
    assert logged == {"loss": 1.0, "sampler/fresh_share": 0.75}
