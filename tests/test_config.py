"""Configuration: YAML groups, overrides, typed validation with errors that name the key."""

import dataclasses

import pytest

from raysearch.config import (
    DatasetConfig,
    EvalConfig,
    RunConfig,
    TrainerConfig,
    build_run_config,
    group_options,
    load_run_config,
    parse_override,
    resolve,
    to_plain,
)
from raysearch.errors import ConfigError


def test_defaults_load_and_are_frozen():
    cfg = load_run_config([])
    assert isinstance(cfg, RunConfig)
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.name == "mf" and cfg.sampler.name == "rns"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trainer.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("trainer.lr=1e-3", ("trainer.lr", 0.001)),
        ("trainer.lr=0.05", ("trainer.lr", 0.05)),
        ("trainer.epochs=7", ("trainer.epochs", 7)),
        ("eval.ks=[1,3]", ("eval.ks", [1, 3])),
        ("tracking.uri=null", ("tracking.uri", None)),
        ("trainer.valid_metric=ndcg@10", ("trainer.valid_metric", "ndcg@10")),
        ("dataset=ml-100k", ("dataset", "ml-100k")),
    ],
)
def test_parse_override_values(text, expected):
    assert parse_override(text) == expected


def test_overrides_reach_typed_fields():
    cfg = load_run_config(["trainer.lr=0.01", "trainer.epochs=3", "eval.ks=[5]", "trainer.optimizer=adagrad"])
    assert cfg.trainer.lr == 0.01 and cfg.trainer.epochs == 3
    assert cfg.eval.ks == (5,)
    assert cfg.trainer.optimizer == "adagrad"


def test_int_given_as_float_is_accepted_only_when_integral():
    assert load_run_config(["trainer.epochs=1e1"]).trainer.epochs == 10
    with pytest.raises(ConfigError, match=r"trainer\.epochs: expected an integer, got 2\.5"):
        load_run_config(["trainer.epochs=2.5"])


def test_unknown_key_names_it_and_lists_known():
    with pytest.raises(ConfigError, match=r"unknown key 'trainer\.lrr' \(known: epochs, batch_size, lr,"):
        load_run_config(["trainer.lrr=0.1"])


def test_unknown_group_and_bad_choice():
    with pytest.raises(ConfigError, match=r"unknown key 'nope\.x'"):
        load_run_config(["nope.x=1"])
    with pytest.raises(ConfigError, match=r"unknown trainer 'fast' \(known: default"):
        load_run_config(["trainer=fast"])


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"trainer\.lr: must be > 0"):
        load_run_config(["trainer.lr=0"])
    with pytest.raises(ConfigError, match=r"trainer\.optimizer: 'lbfgs' is not one of 'adam', 'adagrad', 'sgd'"):
        load_run_config(["trainer.optimizer=lbfgs"])
    with pytest.raises(ConfigError, match=r"dataset\.ratios: must be three non-negative shares summing to 1"):
        load_run_config(["dataset.ratios=[0.5,0.1,0.1]"])
    with pytest.raises(ConfigError, match=r"trainer\.device: 'tpu' is not one of"):
        load_run_config(["trainer.device=tpu"])
    with pytest.raises(ConfigError, match=r"eval\.ks\[1\]: expected an integer"):
        load_run_config(["eval.ks=[1,x]"])


def test_nested_synthetic_override_and_validation():
    cfg = load_run_config(["dataset.synthetic.n_users=50", "dataset.synthetic.n_communities=5"])
    assert cfg.dataset.synthetic.n_users == 50 and cfg.dataset.synthetic.n_communities == 5
    with pytest.raises(ConfigError, match=r"synthetic\.n_communities: must be in \[1, n_users\]"):
        load_run_config(["dataset.synthetic.n_users=3", "dataset.synthetic.n_communities=5"])
    with pytest.raises(ConfigError, match=r"unknown key 'dataset\.synthetic\.users'"):
        load_run_config(["dataset.synthetic.users=5"])


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match=r"trainer\.lr\.x: 'lr' is a value, not a group"):
        load_run_config(["trainer.lr.x=1"])


def test_dataset_by_path_starts_from_bare_defaults():
    tree = resolve(["dataset.path=/some/dir", "dataset.format=lightgcn"])
    cfg = build_run_config(tree).dataset
    assert cfg.path == "/some/dir" and cfg.format == "lightgcn"
    assert cfg.split == DatasetConfig().split  # not the synthetic preset's split
    assert cfg.synthetic == DatasetConfig().synthetic


def test_component_params_are_carried_for_their_registry():
    cfg = load_run_config(["model.dim=32", "sampler.beta=0.5"])
    assert cfg.model.params["dim"] == 32
    assert cfg.sampler.params["beta"] == 0.5


def test_to_plain_round_trips():
    cfg = load_run_config(["trainer.lr=0.02"])
    plain = to_plain(cfg)
    assert plain["trainer"]["lr"] == 0.02
    assert plain["eval"]["ks"] == list(EvalConfig().ks)
    again = build_run_config({**plain, "model": {"name": plain["model"]["name"], **plain["model"]["params"]},
                              "sampler": {"name": plain["sampler"]["name"], **plain["sampler"]["params"]}})
    assert again == cfg


def test_every_shipped_yaml_is_valid():
    from raysearch.train.pipeline import validate_components

    for group in ("dataset", "model", "sampler", "trainer", "eval", "tracking"):
        for choice in group_options(group):
            validate_components(load_run_config([f"{group}={choice}"]))


def test_trainer_defaults_match_yaml():
    assert load_run_config([]).trainer == TrainerConfig()


def test_experiment_expands_before_the_command_line_and_per_sampler():
    cfg = load_run_config(["experiment=srns-protocol", "sampler=dns", "trainer.epochs=3"])
    assert cfg.dataset.name == "ml-1m-loo" and cfg.model.name == "gmf"
    assert cfg.trainer.epochs == 3  # the command line wins
    assert cfg.trainer.optimizer == "adam"  # gdns-only overrides not applied to dns
    gdns = load_run_config(["experiment=gdns-paper"])  # nested experiment + gdns-only overrides
    assert gdns.sampler.name == "gdns"
    assert gdns.trainer.optimizer == "adagrad" and gdns.trainer.lr == 0.09 and gdns.trainer.batch_size == 1024
    # the ICPNS protocol on ML-1M: nested twice; GDNS's users a step make the protocol's 4096 rows a step
    ml1m = load_run_config(["experiment=icpns-protocol-ml-1m", "sampler=gdns"])
    assert ml1m.dataset.name == "ml-1m-icpns" and ml1m.dataset.pool and ml1m.trainer.patience == 100
    assert ml1m.trainer.batch_size * ml1m.sampler.params["group_size"] == 4096
    assert load_run_config(["experiment=icpns-protocol-ml-1m", "sampler=rns"]).trainer.batch_size == 4096
    fn = load_run_config(["experiment=gdns-false-negatives", "dataset=ml-100k-loo"])
    assert fn.sampler.params["false_negative_analysis"] is True and fn.dataset.name == "ml-100k-loo"


def test_unknown_experiment_is_named():
    with pytest.raises(ConfigError, match=r"unknown experiments 'nope' \(known: .*gdns-paper"):
        load_run_config(["experiment=nope"])


def test_every_experiment_file_resolves():
    from raysearch.train.pipeline import validate_components

    for name in group_options("experiments"):
        validate_components(load_run_config([f"experiment={name}"]))
