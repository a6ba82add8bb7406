"""The one-process trainer and pipelines on synthetic data: learning, selection, resume, ICPNS, GDNS."""

import json
import math

import numpy as np
import pytest
import torch

from raysearch.config import load_run_config
from raysearch.evaluation.significance import probability_below
from raysearch.run import train
from raysearch.train.checkpoint import load_checkpoint
from raysearch.train.evaluator import Evaluator
from raysearch.train.pipeline import hold_out_false_negatives, run_training
from raysearch.train.rundir import RunDir
from raysearch.train.trainer import InjectedFailure

SMALL = ["trainer.batch_size=256", "trainer.progress=false", "model.dim=16", "trainer.lr=0.01"]


@pytest.fixture(scope="module")
def small_dataset():
    cfg = load_run_config(SMALL)
    from raysearch.data import load_dataset

    return load_dataset(cfg.dataset, use_cache=False)


def _run(overrides, dataset, out):
    cfg = load_run_config([*SMALL, *overrides])
    return run_training(cfg, dataset, RunDir(out)), cfg


def test_training_beats_the_initial_model_and_records_everything(small_dataset, tmp_path):
    results, cfg = _run(["trainer.epochs=8"], small_dataset, tmp_path / "run")
    untrained, _ = _run(["trainer.epochs=0"], small_dataset, tmp_path / "zero")
    assert results["valid"]["ndcg@10"] > untrained["valid"]["ndcg@10"] + 0.05
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["test"] == pytest.approx(results["test"])
    for key in ("protocol", "dataset", "seed", "raysearch_version", "stages", "selected", "timings"):
        assert key in on_disk
    assert on_disk["protocol"]["protocol"] == "full"
    assert on_disk["protocol"]["masked_at_test"] == ["train", "valid"]
    assert on_disk["dataset"]["fingerprint"] == small_dataset.fingerprint
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all("sampling_share" in json.loads(line) for line in lines)
    assert 0 < on_disk["timings"]["sampling_share"] < 1


def test_test_split_is_evaluated_once_on_the_best_validation_epoch(small_dataset, tmp_path, monkeypatch):
    calls = []
    original = Evaluator.evaluate

    def spy(self, model, split):
        calls.append(split)
        return original(self, model, split)

    monkeypatch.setattr(Evaluator, "evaluate", spy)
    results, _ = _run(["trainer.epochs=6", "trainer.lr=0.05"], small_dataset, tmp_path / "run")
    assert calls.count("test") == 1 and calls[-1] == "test"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: r["valid"]["ndcg@10"])
    assert results["selected"]["epoch"] == best["epoch"]
    assert results["valid"]["ndcg@10"] == pytest.approx(best["valid"]["ndcg@10"])


def test_early_stopping_respects_patience(small_dataset, tmp_path):
    # A learning rate this small cannot improve NDCG much; stop after `patience` flat evaluations.
    results, _ = _run(["trainer.epochs=40", "trainer.patience=2", "trainer.lr=1e-7"], small_dataset, tmp_path / "r")
    stage = results["stages"]["train"]
    assert stage["stopped_early"]
    assert stage["epochs_run"] == stage["best_epoch"] + 1 + 2


@pytest.mark.parametrize("model", ["mf", "lightgcn"])
def test_resumed_run_equals_uninterrupted_run(small_dataset, tmp_path, model):
    overrides = ["trainer.epochs=4", f"model={model}", "model.dim=16"]
    full, _ = _run(overrides, small_dataset, tmp_path / "full")
    with pytest.raises(InjectedFailure):
        _run([*overrides, "trainer.fail_after_epoch=1"], small_dataset, tmp_path / "cut")
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed, _ = _run([*overrides, "trainer.fail_after_epoch=1"], small_dataset, tmp_path / "cut")
    assert resumed["test"] == full["test"]
    assert resumed["valid"] == full["valid"]
    a = load_checkpoint(tmp_path / "full" / "stages" / "train" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "stages" / "train" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # the resumed run's metric log has each epoch once
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]


def test_icpns_two_stages_fresh_optimiser_and_frozen_communities(small_dataset, tmp_path):
    results, _ = _run(["sampler=icpns", "sampler.n_communities=3", "trainer.epochs=3", "sampler.finetune_epochs=2"],
                      small_dataset, tmp_path / "run")
    assert list(results["stages"]) == ["pretrain", "finetune"]
    assert results["selected"]["stage"] == "finetune"
    communities = np.load(tmp_path / "run" / "communities.npy")
    assert communities.shape == (small_dataset.n_users,) and set(np.unique(communities)) == {0, 1, 2}
    summary = json.loads((tmp_path / "run" / "communities.json").read_text())
    assert sum(summary["sizes"]) == small_dataset.n_users
    # fresh optimiser: stage 2's Adam has taken only stage-2 steps
    ft = load_checkpoint(tmp_path / "run" / "stages" / "finetune" / "last.pt")
    steps = [s["step"] for s in ft["optimizer"]["state"].values()]
    pre = load_checkpoint(tmp_path / "run" / "stages" / "pretrain" / "last.pt")
    pre_steps = [s["step"] for s in pre["optimizer"]["state"].values()]
    assert float(steps[0]) * 3 == pytest.approx(float(pre_steps[0]) * 2)


def test_icpns_without_pretraining_is_one_stage(small_dataset, tmp_path):
    results, _ = _run(["sampler=icpns", "sampler.pretrain=false", "trainer.epochs=2"], small_dataset, tmp_path / "r")
    assert list(results["stages"]) == ["finetune"]


def test_icpns_fine_tunes_from_a_finished_rns_run_of_the_same_model_and_split_only(small_dataset, tmp_path):
    from raysearch.errors import ConfigError

    _run(["sampler=rns", "trainer.epochs=2"], small_dataset, tmp_path / "rns")
    icpns = ["sampler=icpns", "sampler.n_communities=3", "sampler.finetune_epochs=1",
             f"sampler.pretrained_from={tmp_path / 'rns'}"]
    results, _ = _run(icpns, small_dataset, tmp_path / "ok")
    assert list(results["stages"]) == ["finetune"]
    assert results["pretrained_from"] == str((tmp_path / "rns").resolve())

    def refused(overrides, dataset=small_dataset):
        with pytest.raises(ConfigError) as err:
            _run([*icpns, *overrides], dataset, tmp_path / "refused")
        return str(err.value)

    assert "ran with model 'mf', this run has 'gmf'" in refused(["model=gmf"])
    assert "ran with model parameters {'dim': 16" in refused(["model.dim=8"])
    from raysearch.data import load_dataset

    other_split = load_dataset(load_run_config([*SMALL, "dataset.split_seed=7"]).dataset, use_cache=False)
    assert f"ran with dataset fingerprint '{small_dataset.fingerprint}'" in refused([], other_split)
    _run(["sampler=dns", "trainer.epochs=1"], small_dataset, tmp_path / "dns")
    assert "ran with sampler 'dns', this run has 'rns'" in refused([f"sampler.pretrained_from={tmp_path / 'dns'}"])
    (tmp_path / "rns" / "results.json").unlink()
    assert "has no results.json (not a finished run)" in refused([])


def test_gdns_group_wise_training_and_false_negative_analysis(small_dataset, tmp_path):
    results, _ = _run(["sampler=gdns", "model=gmf", "trainer.optimizer=adagrad", "trainer.lr=0.09",
                       "sampler.group_size=8", "trainer.epochs=3", "sampler.false_negative_analysis=true"],
                      small_dataset, tmp_path / "run")
    analysis = results["false_negative_analysis"]
    assert analysis["n_false_negatives"] > 0
    assert len(analysis["per_epoch"]) == 3
    final = analysis["final"]
    assert final["G_false_negatives"]["n"] > 0 and final["G_true_negatives"]["n"] > 0
    assert sum(final["H_true_negatives"]["histogram"]["counts"]) == final["H_true_negatives"]["n"]
    assert set(final["separation"]) == {"P(H_fn > H_tn)", "P(G_fn < G_tn)"}
    assert all(0 <= v <= 1 for v in final["separation"].values())


def test_probability_below_counts_pairs_and_half_ties():
    # pairs (a, b): 1<2, 1<3, 2=2 (half), 2<3, 4>2, 4>3 -> (1 + 1 + 0.5 + 1) / 6
    assert probability_below(np.array([1.0, 2.0, 4.0]), np.array([2.0, 3.0])) == pytest.approx(3.5 / 6)
    assert probability_below(np.zeros(3), np.zeros(4)) == 0.5
    assert probability_below(np.array([9.0]), np.array([1.0, 2.0])) == 0.0
    assert math.isnan(probability_below(np.zeros(0), np.ones(2)))


def test_hold_out_false_negatives_takes_one_positive_per_eligible_user(small_dataset):
    users, items, reduced = hold_out_false_negatives(small_dataset.train, np.random.default_rng(0))
    counts = small_dataset.train.user_counts()
    assert np.array_equal(np.sort(users), np.flatnonzero(counts >= 2))
    assert small_dataset.train.contains(users, items).all()
    assert not reduced.contains(users, items).any()
    assert reduced.nnz == small_dataset.train.nnz - users.size


def test_train_entry_point_refuses_to_overwrite_and_resumes(tmp_path):
    from raysearch.errors import ConfigError

    out = tmp_path / "run"
    results = train([*SMALL, "trainer.epochs=1"], out=out)
    assert (out / "results.json").exists() and results["run_dir"] == str(out)
    with pytest.raises(ConfigError, match="holds a finished run"):
        train([*SMALL, "trainer.epochs=1"], out=out)
    with pytest.raises(ConfigError, match="has finished already"):
        train(resume=out)
    with pytest.raises(ConfigError, match=r"unknown key 'model\.depth'"):
        train([*SMALL, "model.depth=3"], out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("overrides,message", [
    (["trainer.loss=listwise"], "trainer.loss: unknown loss 'listwise' (known: auto, bce, bpr, group_hinge, "
                                "hinge, softmax)"),
    (["trainer.loss=softmax", "trainer.temperature=0"], "trainer.temperature: must be > 0, got 0.0"),
    (["trainer.num_negatives=0"], "trainer.num_negatives: must be >= 1"),
    (["trainer.loss=softmax", "trainer.logq_correction=true", "sampler=dns"],
     "trainer.logq_correction: sampler 'dns' has no closed-form proposal q(j | u) (samplers with one: icpns, "
     "inbatch, mixed, pns, rns)"),
    (["trainer.logq_correction=true"], "trainer.logq_correction: applies to trainer.loss=softmax, not bpr"),
    (["trainer.loss=group_hinge", "sampler=rns"],
     "trainer.loss: group_hinge needs a sampler that builds negative groups (gdns), not 'rns'"),
])
def test_bad_loss_settings_stop_with_one_line_and_write_nothing(overrides, message, tmp_path, capsys):
    from raysearch.cli import main

    out = tmp_path / "run"
    assert main(["train", *SMALL, *overrides, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"raysearch: error: {message}"]
    assert not out.exists()


def test_the_models_loss_terms_are_added_to_the_ranking_loss_and_logged_apart(small_dataset, tmp_path, monkeypatch):
    import raysearch.train.pipeline as pipeline
    from raysearch.config import from_mapping
    from raysearch.models import MODELS

    mf = MODELS.get("mf")

    class MFWithAux(mf):
        def loss_terms(self, batch, reps, users0, items0, reg):
            return {**super().loss_terms(batch, reps, users0, items0, reg), "aux": 0.25 * users0.pow(2).mean()}

    def make_aux(name, n_users, n_items, train, tables=None, **params):
        return MFWithAux(n_users, n_items, from_mapping(mf.Params, params, "model"), train, tables=tables)

    monkeypatch.setattr(pipeline, "make_model", make_aux)
    cfg = load_run_config([*SMALL, "trainer.epochs=2", "trainer.reg=0.01"])
    run_training(cfg, small_dataset, RunDir(tmp_path / "run"))
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        terms = record["loss_terms"]
        assert set(terms) == {"ranking", "l2", "aux"} and terms["aux"] > 0 and terms["l2"] > 0
        assert sum(terms.values()) == pytest.approx(record["loss"], rel=1e-6)  # float32 steps, float64 sums


@pytest.mark.parametrize("sampler", ["rns", "pns", "inbatch"])
def test_softmax_with_logq_correction_trains_and_differs_from_the_uncorrected_loss(sampler, small_dataset, tmp_path):
    base = ["trainer.epochs=3", "trainer.loss=softmax", "trainer.num_negatives=8", f"sampler={sampler}"]
    corrected, _ = _run([*base, "trainer.logq_correction=true"], small_dataset, tmp_path / "logq")
    plain, _ = _run(base, small_dataset, tmp_path / "plain")
    untrained, _ = _run(["trainer.epochs=0"], small_dataset, tmp_path / "zero")
    assert corrected["valid"]["ndcg@10"] > untrained["valid"]["ndcg@10"] + 0.02
    assert corrected["trainer"]["logq_correction"] and corrected["trainer"]["loss"] == "softmax"
    assert corrected["valid"] != plain["valid"]  # the correction changes the gradient


NEURAL_BACKBONES = {
    "neumf": ["model.mf_dim=8", "model.mlp_dim=8", "model.mlp_layers=[16,8]"],  # dropout 0.1: torch's RNG
    "dmf": ["model.dim=16", "model.user_layers=[16]", "model.item_layers=[16]"],
    "lightgcl": ["model.dim=16", "trainer.reg=1e-7", "model.cl_weight=0.01"],  # 0.2 holds it back early
}


@pytest.mark.parametrize("model", NEURAL_BACKBONES)
def test_neural_backbones_learn_resume_exactly_and_serve_every_sampler_kind(model, small_dataset, tmp_path):
    def _run(overrides, dataset, out):  # SMALL without model.dim, which not every backbone has
        cfg = load_run_config([*(o for o in SMALL if not o.startswith("model.")), *overrides])
        return run_training(cfg, dataset, RunDir(out)), cfg

    base = [f"model={model}", *NEURAL_BACKBONES[model], "trainer.epochs=4"]
    full, _ = _run(base, small_dataset, tmp_path / "full")
    untrained, _ = _run([*base, "trainer.epochs=0"], small_dataset, tmp_path / "zero")
    assert full["valid"]["ndcg@10"] > untrained["valid"]["ndcg@10"] + 0.02
    with pytest.raises(InjectedFailure):
        _run([*base, "trainer.fail_after_epoch=1"], small_dataset, tmp_path / "cut")
    resumed, _ = _run([*base, "trainer.fail_after_epoch=1"], small_dataset, tmp_path / "cut")
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    # a dynamic sampler scores with the model; ICPNS clusters its user representations
    dns, _ = _run([*base, "trainer.epochs=2", "sampler=dns"], small_dataset, tmp_path / "dns")
    icpns, _ = _run([*base, "trainer.epochs=2", "sampler=icpns", "sampler.n_communities=3",
                     "sampler.finetune_epochs=1"], small_dataset, tmp_path / "icpns")
    for results in (dns, icpns):
        assert all(math.isfinite(v) for v in results["test"].values())
    assert len(np.unique(np.load(tmp_path / "icpns" / "communities.npy"))) == 3
