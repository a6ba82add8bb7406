"""Bad input, end to end through ``raysearch.cli.main``: every case stops with exit status 2 and exactly one
line on stderr that names the file (and line) or the key, and leaves nothing behind: no run directory, no
cache entry, an untouched run or study directory, and no code run from a file that asked to be unpickled.

The corpus (``CASES``) covers checkpoints (truncated, foreign objects, not ours), corrupt run and study
state (``config.yaml``, ``metrics.jsonl``, ``done.json``, ``study.json``, a ``pretrained_from`` source),
readers (the same id, column and value checks in every format), splits without validation or test users,
and configuration typos. ``test_a_typo_of_every_key_lists_that_groups_keys`` then misspells every key of
every group, sampler and model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from raysearch.cli import main
from raysearch.config import (
    DatasetConfig,
    SyntheticConfig,
    group_options,
    load_group,
    load_run_config,
)
from raysearch.errors import ConfigError
from raysearch.run import train
from raysearch.train.checkpoint import load_checkpoint, save_checkpoint
from raysearch.train.trainer import InjectedFailure

# A tiny synthetic dataset and model: a run takes well under a second.
TINY = ["dataset.synthetic.n_users=60", "dataset.synthetic.n_items=40", "dataset.synthetic.mean_exposures=20",
        "model.dim=8", "trainer.batch_size=256", "trainer.progress=false", "trainer.threads=1"]


class Payload:
    """Unpickling this runs ``os.makedirs(marker)``: a checkpoint holding one must be refused unread."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Directories the cases copy and damage: an interrupted run, a finished RNS run, a study."""
    root = tmp_path_factory.mktemp("sources")
    cache = root / "cache"
    with pytest.raises(InjectedFailure):  # stops after epoch 0's checkpoint: resumable
        train([*TINY, "trainer.epochs=3", "trainer.fail_after_epoch=0"], out=root / "cut", cache_dir=cache)
    (root / "cut" / ".injected-failure").unlink()
    train([*TINY, "trainer.epochs=1"], out=root / "rns", cache_dir=cache)
    from raysearch.tune import start_study

    start_study(["search=compare", "search.only=[rns]", *TINY], root / "study", f"sqlite:///{root / 'm.db'}")
    return {"cut": root / "cut", "rns": root / "rns", "study": root / "study"}


class World:
    """One case's working directory: copies of the sources, argv builders, and what must not change."""

    def __init__(self, tmp: Path, sources: dict[str, Path]):
        self.tmp = tmp
        self.sources = sources
        self.cache = tmp / "cache"
        self.marker = tmp / "code-ran"
        self.unchanged: list[Path] = []  # directories whose every file must be byte-identical afterwards
        self.absent: list[Path] = []  # paths that must not exist afterwards
        self.no_cache = False  # the dataset cache must stay empty

    def copy(self, name: str) -> Path:
        target = self.tmp / name
        shutil.copytree(self.sources[name], target)
        self.unchanged.append(target)
        return target

    def resume(self, run: Path) -> list[str]:
        return ["train", "--resume", str(run), "--cache-dir", str(self.cache)]

    def train(self, *overrides: str, tiny: bool = True) -> list[str]:
        out = self.tmp / "out"
        self.absent.append(out)
        return ["train", "--out", str(out), "--cache-dir", str(self.cache), *(TINY if tiny else []), *overrides]

    def read(self, name: str, content: str | bytes | Callable[[Path], None], *overrides: str) -> list[str]:
        """A fresh run on the file ``name`` (text, bytes, or written by a function): the data never loads."""
        path = self.tmp / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        self.no_cache = True
        return self.train(f"dataset.path={path}", "dataset.split=ratio", *overrides, tiny=False)

    def lightgcn(self, train: str) -> tuple[list[str], Path]:
        """A fresh run on a LightGCN folder whose ``train.txt`` is ``train`` (the data never loads)."""
        folder = self.tmp / "data" / "lgn"
        folder.mkdir(parents=True)
        (folder / "train.txt").write_text(train)
        (folder / "test.txt").write_text("0 3\n")
        self.no_cache = True
        return self.train(f"dataset.path={folder}", "dataset.format=lightgcn", tiny=False), folder

    def pretrained(self, source: Path) -> list[str]:
        return self.train("sampler=icpns", f"sampler.pretrained_from={source}", "sampler.finetune_epochs=1")


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def parquet(columns: dict) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(columns), path)

    return write


def npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, array)


CASES: dict[str, Callable[[World], tuple[list[str], list[str]]]] = {}


def case(fn: Callable[[World], tuple[list[str], list[str]]]):
    """Register a case: ``fn(world)`` prepares it and returns (argv, fragments the error line must hold)."""
    CASES[fn.__name__] = fn
    return fn


# --------------------------------------------------------------------------- checkpoints
@case
def checkpoint_truncated(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    truncate(ckpt)
    return w.resume(run), [f"{ckpt}: not a readable checkpoint (truncated or corrupt: "]


@case
def checkpoint_empty(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "best.pt"
    ckpt.write_bytes(b"")
    return w.resume(run), [f"{ckpt}: not a readable checkpoint (truncated or corrupt: EOFError"]


@case
def checkpoint_garbage(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    ckpt.write_bytes(b"not a checkpoint\n" * 20)
    return w.resume(run), [f"{ckpt}: not a readable checkpoint (truncated or corrupt"]


@case
def checkpoint_runs_code_when_unpickled(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    state = load_checkpoint(ckpt)
    torch.save({**state, "trainer": Payload(w.marker)}, ckpt)
    return w.resume(run), [f"{ckpt}: refusing to load a checkpoint that holds objects other than tensors and "
                           "plain data (it needs os.makedirs)"]


@case
def checkpoint_of_pickled_numpy_arrays(w):
    # what raysearch wrote before checkpoints were loaded with weights_only=True
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    state = load_checkpoint(ckpt)
    torch.save({**state, "sampler": {"memory": np.zeros(3)}}, ckpt)
    return w.resume(run), [f"{ckpt}: refusing to load", "(it needs numpy."]


@case
def checkpoint_not_a_mapping(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    torch.save([torch.zeros(2)], ckpt)
    return w.resume(run), [f"{ckpt}: not a raysearch checkpoint (expected a mapping, got list)"]


@case
def checkpoint_missing_an_entry(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    state = load_checkpoint(ckpt)
    del state["optimizer"]
    save_checkpoint(ckpt, state)
    return w.resume(run), [f"{ckpt}: not a raysearch checkpoint (missing 'optimizer')"]


@case
def checkpoint_of_another_model(w):
    run = w.copy("cut")
    ckpt = run / "stages" / "train" / "last.pt"
    state = load_checkpoint(ckpt)
    state["model"] = {k: torch.zeros(3, 5) for k in state["model"]}
    save_checkpoint(ckpt, state)
    return w.resume(run), [f"{ckpt}: the model state does not fit this run (Error(s) in loading state_dict"]


@case
def pretrained_from_checkpoint_truncated(w):
    source = w.copy("rns")
    truncate(source / "stages" / "train" / "best.pt")
    return w.pretrained(source), [f"{source / 'stages' / 'train' / 'best.pt'}: not a readable checkpoint"]


@case
def pretrained_from_checkpoint_runs_code(w):
    source = w.copy("rns")
    ckpt = source / "stages" / "train" / "best.pt"
    torch.save({"model": Payload(w.marker)}, ckpt)
    return w.pretrained(source), [f"{ckpt}: refusing to load", "(it needs os.makedirs)"]


# --------------------------------------------------------------------------- run and study state
@case
def config_yaml_syntax_error(w):
    run = w.copy("cut")
    config = run / "config.yaml"
    config.write_text(config.read_text() + "trainer: [epochs: 3\n")
    return w.resume(run), [f"{config}:", "not valid YAML ("]


@case
def config_yaml_not_a_mapping(w):
    run = w.copy("cut")
    (run / "config.yaml").write_text("- dataset\n- model\n")
    return w.resume(run), [f"{run / 'config.yaml'}: expected a mapping of config groups", "got a list"]


@case
def config_yaml_empty(w):
    run = w.copy("cut")
    (run / "config.yaml").write_text("")
    return w.resume(run), [f"{run / 'config.yaml'}: expected a mapping of config groups", "got an empty file"]


@case
def config_yaml_unknown_key(w):
    run = w.copy("cut")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("  lr:", "  lrr:", 1))
    return w.resume(run), [f"{config}: unknown key 'trainer.lrr' (known: epochs,", "did you mean 'trainer.lr'?"]


@case
def metrics_last_line_truncated(w):
    run = w.copy("cut")
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2])
    return w.resume(run), [f"{metrics}:{len(lines) + 1}: not a JSON record (the last line is truncated:"]


@case
def metrics_corrupt_middle_line(w):
    run = w.copy("cut")
    metrics = run / "metrics.jsonl"
    line = metrics.read_text().splitlines()[0]
    metrics.write_text(f"{line}\n{{oops\n{line}\n")
    return w.resume(run), [f"{metrics}:2: not a JSON record (corrupt line:"]


@case
def metrics_line_not_an_object(w):
    run = w.copy("cut")
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + "[1, 2]\n")
    return w.resume(run), [f"{metrics}:2: expected a JSON object per line, got list"]


@case
def done_json_truncated(w):
    run = w.copy("cut")
    done = run / "stages" / "train" / "done.json"
    done.write_text('{"stage": "train", "best_epoch"')
    return w.resume(run), [f"{done}:1: not valid JSON, truncated or corrupt"]


@case
def communities_npy_truncated(w):
    run = w.copy("cut")
    path = run / "communities.npy"
    np.save(path, np.arange(60))
    truncate(path, 0.7)
    return w.resume(run), [f"{path}: not a readable .npy array, truncated or corrupt"]


@case
def resume_of_a_missing_directory(w):
    w.absent.append(w.tmp / "nowhere")
    return w.resume(w.tmp / "nowhere"), [f"--resume {w.tmp / 'nowhere'}: no such directory"]


@case
def study_json_truncated(w):
    study = w.copy("study")
    truncate(study / "study.json")
    return ["tune", "--resume", str(study)], [f"{study / 'study.json'}:", "not valid JSON, truncated or corrupt"]


@case
def study_json_empty(w):
    study = w.copy("study")
    (study / "study.json").write_text("")
    return ["tune", "--resume", str(study)], [f"{study / 'study.json'}:1: not valid JSON", "the file is empty"]


@case
def study_json_not_an_object(w):
    study = w.copy("study")
    (study / "study.json").write_text("[1, 2]\n")
    return ["tune", "--resume", str(study)], [f"{study / 'study.json'}: expected a JSON object, got array"]


@case
def study_json_missing_key(w):
    study = w.copy("study")
    meta = json.loads((study / "study.json").read_text())
    del meta["base"]
    (study / "study.json").write_text(json.dumps(meta))
    return ["tune", "--resume", str(study)], [f"{study / 'study.json'}: not a raysearch study file (no 'base')"]


@case
def study_json_bad_base(w):
    study = w.copy("study")
    meta = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps({**meta, "base": [*meta["base"], "trainer.lrr=0.1"]}))
    return ["tune", "--resume", str(study)], [f"{study / 'study.json'}: unknown key 'trainer.lrr'"]


@case
def pretrained_from_results_truncated(w):
    source = w.copy("rns")
    truncate(source / "results.json")
    return w.pretrained(source), [f"{source / 'results.json'}:", "not valid JSON, truncated or corrupt"]


@case
def pretrained_from_results_not_an_object(w):
    source = w.copy("rns")
    (source / "results.json").write_text('"finished"\n')
    return w.pretrained(source), [f"{source / 'results.json'}: expected a JSON object, got string"]


@case
def pretrained_from_results_without_model(w):
    source = w.copy("rns")
    results = json.loads((source / "results.json").read_text())
    results["model"] = "mf"
    (source / "results.json").write_text(json.dumps(results))
    return w.pretrained(source), [f"{source / 'results.json'}: not a raysearch run's results (no model.name)"]


@case
def pretrained_from_another_model(w):
    source = w.copy("rns")
    return w.pretrained(source) + ["model.dim=4"], ["sampler.pretrained_from:", "ran with model parameters"]


# --------------------------------------------------------------------------- readers
@case
def parquet_negative_id(w):
    argv = w.read("x.parquet", parquet({"user_id": [1, -2, 3], "item_id": [4, 5, 6]}), "dataset.format=parquet")
    return argv, [f"{w.tmp / 'data' / 'x.parquet'}:2: negative user id -2"]


@case
def parquet_non_integer_id(w):
    argv = w.read("x.parquet", parquet({"user_id": [1, 2, 3], "item_id": [4.0, 5.5, 6.0]}),
                  "dataset.format=parquet")
    return argv, [f"{w.tmp / 'data' / 'x.parquet'}:2: non-integer item id '5.5'"]


@case
def parquet_boolean_ids(w):
    argv = w.read("x.parquet", parquet({"user_id": [True, False], "item_id": [1, 2]}), "dataset.format=parquet")
    return argv, [f"{w.tmp / 'data' / 'x.parquet'}: user ids must be integers or strings, got bool"]


@case
def parquet_negative_string_id(w):
    argv = w.read("x.parquet", parquet({"user_id": ["a", "b"], "item_id": ["1", "-7"]}), "dataset.format=parquet")
    return argv, [f"{w.tmp / 'data' / 'x.parquet'}:2: negative item id -7"]


@case
def parquet_rating_not_a_number(w):
    argv = w.read("x.parquet", parquet({"user_id": [1, 2], "item_id": [1, 2], "r": ["good", "bad"]}),
                  "dataset.format=parquet", "dataset.rating_col=r")
    return argv, [f"{w.tmp / 'data' / 'x.parquet'}: ratings must be numbers, got str"]


@case
def npy_three_columns(w):
    argv = w.read("x.npy", npy(np.array([[0, 1, 5], [1, 2, 5]])), "dataset.format=npy")
    return argv, [f"{w.tmp / 'data' / 'x.npy'}: expected an integer array of shape (N, 2), got int64 (2, 3)"]


@case
def npy_float_ids(w):
    argv = w.read("x.npy", npy(np.array([[0.0, 1.5]])), "dataset.format=npy")
    return argv, [f"{w.tmp / 'data' / 'x.npy'}: expected an integer array of shape (N, 2), got float64 (1, 2)"]


@case
def npy_negative_id(w):
    argv = w.read("x.npy", npy(np.array([[0, 1], [-3, 2]])), "dataset.format=npy")
    return argv, [f"{w.tmp / 'data' / 'x.npy'}:2: negative user id -3"]


@case
def npy_pickled_objects(w):
    argv = w.read("x.npy", lambda p: np.save(p, np.array([[Payload(w.marker), 1]], dtype=object)),
                  "dataset.format=npy")
    return argv, [f"{w.tmp / 'data' / 'x.npy'}: not a readable .npy array"]


@case
def csv_negative_id(w):
    argv = w.read("x.csv", "user_id,item_id\n1,2\n-3,4\n", "dataset.format=csv")
    return argv, [f"{w.tmp / 'data' / 'x.csv'}:3: negative user id -3"]


@case
def csv_wrong_column_count(w):
    argv = w.read("x.csv", "user_id,item_id\n1,2\n3,4,5\n", "dataset.format=csv")
    return argv, [f"{w.tmp / 'data' / 'x.csv'}:3: expected 2 columns, found 3"]


@case
def movielens_non_integer_id(w):
    argv = w.read("u.data", "1\t2\t5\t100\n1.5\t3\t4\t101\n", "dataset.format=movielens")
    return argv, [f"{w.tmp / 'data' / 'u.data'}:2: non-integer user id '1.5'"]


@case
def lightgcn_negative_id(w):
    argv, folder = w.lightgcn("0 1 2\n1 -2 3\n")
    return argv, [f"{folder / 'train.txt'}:2: negative user or item id -2"]


@case
def recbole_negative_id(w):
    argv = w.read("x.inter", "user_id:token\titem_id:token\n1\t2\n3\t-4\n", "dataset.format=recbole")
    return argv, [f"{w.tmp / 'data' / 'x.inter'}:3: negative item id -4"]


@case
def csv_gzip_compressed(w):
    import gzip

    argv = w.read("x.csv", gzip.compress(b"user_id,item_id\n1,2\n3,4\n", mtime=0), "dataset.format=csv")
    return argv, [f"{w.tmp / 'data' / 'x.csv'}:1: binary content (a NUL byte): not a text file"]


@case
def csv_utf16(w):
    argv = w.read("x.csv", "user_id,item_id\n1,2\n3,4\n".encode("utf-16"), "dataset.format=csv")
    return argv, [f"{w.tmp / 'data' / 'x.csv'}:1: UTF-16 or UTF-32 text: save it as UTF-8"]


@case
def recbole_utf16(w):
    argv = w.read("x.inter", "user_id:token\titem_id:token\n1\t2\n".encode("utf-16"), "dataset.format=recbole")
    return argv, [f"{w.tmp / 'data' / 'x.inter'}:1: UTF-16 or UTF-32 text: save it as UTF-8"]


@case
def movielens_empty(w):
    argv = w.read("u.data", " \n\n", "dataset.format=movielens")
    return argv, [f"{w.tmp / 'data' / 'u.data'}:1: empty file"]


@case
def movielens_binary_line(w):
    argv = w.read("u.data", b"1\t2\t5\t100\n3\t4\x00\t5\t101\n", "dataset.format=movielens")
    return argv, [f"{w.tmp / 'data' / 'u.data'}:2: binary content (a NUL byte): not a text file"]


@case
def lightgcn_huge_id(w):
    argv, folder = w.lightgcn("0 1 2\n99999999999999999999 3\n")
    return argv, [f"{folder / 'train.txt'}:2: user or item id 99999999999999999999 is too large"]


@case
def npy_huge_id(w):
    argv = w.read("x.npy", npy(np.array([[0, 1], [2**62, 2]], dtype=np.uint64)), "dataset.format=npy")
    return argv, [f"{w.tmp / 'data' / 'x.npy'}:2: user id {2**62} is too large"]


@case
def npy_empty_file(w):
    argv = w.read("x.npy", b"", "dataset.format=npy")
    return argv, [f"{w.tmp / 'data' / 'x.npy'}: not a readable .npy array"]


@case
def parquet_not_parquet(w):
    argv = w.read("x.parquet", "user_id,item_id\n1,2\n", "dataset.format=parquet")
    return argv, [f"{w.tmp / 'data' / 'x.parquet'}: not a readable parquet file"]


@case
def csv_folder_without_a_csv(w):
    folder = w.tmp / "data" / "empty-folder"
    folder.mkdir(parents=True)
    w.no_cache = True
    argv = w.train(f"dataset.path={folder}", "dataset.format=csv", "dataset.split=ratio", tiny=False)
    return argv, ["dataset 'empty-folder' (csv) not found", f"looked in: {folder}", "--data-dir"]


@case
def row_sparse_optimiser_on_a_graph_model(w):
    return w.train("model=lightgcn", "trainer.optimizer=sparse_adam"), [
        "trainer.optimizer: sparse_adam updates only the table rows a step looks up, but model 'lightgcn'"]


# --------------------------------------------------------------------------- splits without held-out users
@case
def split_without_validation_users(w):
    return w.train("dataset.ratios=[0.9,0.0,0.1]"), [
        "dataset 'synthetic': the ratio split leaves no user with validation items, so there is nothing to select on"]


@case
def split_without_test_users(w):
    return w.train("dataset.ratios=[0.9,0.1,0.0]"), [
        "dataset 'synthetic': the ratio split leaves no user with test items"]


@case
def loo_split_of_users_with_two_interactions(w):
    rows = "".join(f"{u},{i}\n" for u in range(20) for i in (u, u + 1))
    path = w.tmp / "data" / "two.csv"
    path.parent.mkdir(parents=True)
    path.write_text("user_id,item_id\n" + rows)
    return w.train(f"dataset.path={path}", "dataset.split=loo", tiny=False), [
        "the loo split leaves no user with validation items",
        "leave-one-out holds out users with at least 3 interactions only"]


@case
def given_split_without_validation(w):
    folder = w.tmp / "data" / "lgn"
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text("0 1 2 3\n1 2 3 4\n")
    (folder / "test.txt").write_text("0 4\n1 1\n")
    return w.train(f"dataset.path={folder}", "dataset.format=lightgcn", "dataset.split=given",
                   "dataset.valid_share=0", tiny=False), [
        "the given split leaves no user with validation items", "(give a valid part or dataset.valid_share > 0)"]


# --------------------------------------------------------------------------- configuration
@case
def icpns_key_typo(w):
    return w.train("sampler=icpns", "sampler.n_comunities=8"), [
        "unknown key 'sampler.n_comunities' (known: n_communities, pretrain,", "alpha, smoothing, global_mix)",
        "did you mean 'sampler.n_communities'?"]


@case
def trainer_key_typo(w):
    return w.train("trainer.lrr=0.1"), ["unknown key 'trainer.lrr' (known: epochs, batch_size, lr,",
                                        "did you mean 'trainer.lr'?"]


@case
def model_init_unknown(w):
    return w.train("experiment=icpns-protocol", "dataset=synthetic", "model.init=glorot"), [
        "model.init: unknown initialiser 'glorot' (known: normal, trunc_normal, xavier_normal, xavier_uniform,"]


@case
def trainer_reg_negative(w):
    return w.train("sampler=gdns", "trainer.reg=-0.01"), ["trainer.reg: must be >= 0, got -0.01"]


@case
def group_typo(w):
    return w.train("trainr.lr=0.1"), ["unknown key 'trainr.lr' (groups: dataset, model, sampler, trainer,",
                                      "did you mean 'trainer.lr'?"]


@case
def synthetic_key_typo(w):
    return w.train("dataset.synthetic.n_user=50"), ["unknown key 'dataset.synthetic.n_user' (known: n_users,",
                                                    "did you mean 'dataset.synthetic.n_users'?"]


@case
def sampled_protocol_without_negatives(w):
    return w.train("eval.protocol=sampled"), ["eval.protocol: 'sampled' needs sampled negatives"]


@case
def search_option_typo(w):
    out = w.tmp / "study"
    w.absent.append(out)
    return ["tune", "--out", str(out), "search=compare", "search.num_sample=2"], [
        "unknown key 'search.num_sample' (known: description, num_samples,", "did you mean 'search.num_samples'?"]


# --------------------------------------------------------------------------- side information, knowledge samplers
def side_file(w: World, name: str, content: str) -> Path:
    """A side-information file for the tiny synthetic dataset (items and users '0', '1', ...): the dataset
    is never cached, since the side file is read before anything is written."""
    path = w.tmp / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    w.no_cache = True
    return path


@case
def side_file_missing(w):
    missing = w.tmp / "data" / "genres.tsv"
    w.no_cache = True
    return w.train("sampler=attribute", f"dataset.item_attributes={missing}"), [
        f"dataset.item_attributes: no file '{missing}' (looked in: {missing})"]


@case
def side_file_empty(w):
    path = side_file(w, "genres.tsv", "\n\n")
    return w.train("sampler=attribute", f"dataset.item_attributes={path}"), [f"{path}:1: empty file"]


@case
def side_file_malformed_line(w):
    path = side_file(w, "genres.tsv", "0\tdrama\n1 comedy\n")
    return w.train("sampler=attribute", f"dataset.item_attributes={path}"), [f"{path}:2: expected 2 columns, found 1"]


@case
def side_file_u_item_flag_not_binary(w):
    flags = "|".join(["0"] * 18 + ["2"])
    path = side_file(w, "u.item", f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n")
    return w.train("sampler=attribute", f"dataset.item_attributes={path}"), [
        f"{path}:1: genre flag 19 (Western) is '2', not 0 or 1"]


@case
def side_file_names_no_known_item(w):
    path = side_file(w, "genres.tsv", "9999\tdrama\n")
    return w.train("sampler=attribute", f"dataset.item_attributes={path}"), [
        f"{path}: names no item of dataset 'synthetic' (first: item '9999', line 1)"]


@case
def side_file_names_no_known_user(w):
    path = side_file(w, "trust.txt", "9998\t9999\n")
    return w.train("sampler=social", f"dataset.social_network={path}"), [
        f"{path}: names no link between users of dataset 'synthetic'"]


@case
def attribute_sampler_on_a_dataset_without_attributes(w):
    return w.train("sampler=attribute"), [
        "dataset.item_attributes: sampler 'attribute' draws negatives from item attributes, and dataset "
        "'synthetic' has none (set dataset.item_attributes to"]


@case
def social_sampler_on_a_dataset_without_a_network(w):
    return w.train("sampler=social"), [
        "dataset.social_network: sampler 'social' draws negatives from a social network, and dataset "
        "'synthetic' has none"]


@case
def knowledge_mix_weight_above_one(w):
    return w.train("sampler=attribute", "sampler.weight=1.5"), ["sampler 'attribute': weight: must be in [0, 1], got 1.5"]


@case
def knowledge_mix_weight_negative(w):
    return w.train("sampler=social", "sampler.weight=-0.2"), ["sampler 'social': weight: must be in [0, 1], got -0.2"]


@case
def adversarial_temperature_zero(w):
    return w.train("sampler=adversarial", "sampler.temperature=0"), [
        "sampler 'adversarial': temperature: must be > 0, got 0.0"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, sources, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAYSEARCH_DATA_DIR", raising=False)
    world = World(tmp_path, sources)
    argv, fragments = CASES[name](world)
    before = {root: snapshot(root) for root in world.unchanged}
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("raysearch: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]
    for root, files in before.items():
        assert snapshot(root) == files, f"{root} changed"
    for path in world.absent:
        assert not path.exists(), f"{path} was left behind"
    if world.no_cache:
        assert not world.cache.exists() or not any(world.cache.iterdir())
    assert not world.marker.exists(), "a file's pickled code ran"
    assert not (tmp_path / "runs").exists()


def test_the_corpus_is_large():
    assert len(CASES) >= 60


def test_resume_after_a_refusal_still_works(sources, tmp_path):
    """A refused resume changes nothing: repairing the file lets the same directory resume and finish."""
    run = tmp_path / "cut"
    shutil.copytree(sources["cut"], run)
    metrics = run / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + good[: len(good) // 2])
    with pytest.raises(Exception, match="the last line is truncated"):
        train(resume=run, cache_dir=tmp_path / "cache")
    metrics.write_text(good)
    results = train(resume=run, cache_dir=tmp_path / "cache")
    assert results["stages"]["train"]["epochs_run"] == 3


# --------------------------------------------------------------------------- typos of every key
def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _yaml_keys(group: str, choice: str) -> list[str]:
    """The keys a group's YAML file documents (``name`` chooses the component, it is no parameter)."""
    return [k for k in load_group(group, choice) if k != "name"]


def _groups() -> list[tuple[str, list[str], list[str]]]:
    """(label, overrides choosing the group's file, the group's real keys) for every group and component."""
    from raysearch.models import MODELS
    from raysearch.tune.space import SearchOptions

    out = [("dataset", [], [f for f in _fields(DatasetConfig)]),
           ("dataset.synthetic", [], _fields(SyntheticConfig)),
           ("trainer", [], _yaml_keys("trainer", "default")),
           ("eval", [], _yaml_keys("eval", "default")),
           ("tracking", [], _yaml_keys("tracking", "default")),
           ("search", [], _fields(SearchOptions))]
    out += [("sampler", [f"sampler={s}"], _yaml_keys("sampler", s)) for s in group_options("sampler")]
    out += [("model", [f"model={m}"], _fields(MODELS.get(m).Params)) for m in group_options("model")]
    return out


def _typo(key: str, known: list[str]) -> str:
    """The key with its last letter doubled (``lr`` -> ``lrr``), or another misspelling if that is a key."""
    for typo in (key + key[-1], key[:-1], key + "s"):
        if typo not in known:
            return typo
    raise AssertionError(key)


TYPO_CASES = [pytest.param(prefix, overrides, key, known, id=f"{prefix}{overrides}-{key}")
              for prefix, overrides, known in _groups() for key in known]


@pytest.mark.parametrize(("prefix", "overrides", "key", "known"), TYPO_CASES)
def test_a_typo_of_every_key_lists_that_groups_keys(prefix, overrides, key, known):
    from raysearch.train.pipeline import validate_components
    from raysearch.tune.space import load_search

    typo = _typo(key, known)
    with pytest.raises(ConfigError) as err:
        if prefix == "search":
            load_search("compare", {typo: 1})
        else:
            validate_components(load_run_config([*overrides, f"{prefix}.{typo}=1"]))
    message = str(err.value)
    assert message.startswith(f"unknown key '{prefix}.{typo}' (known: "), message
    listed = re.search(r"\(known: ([^)]*)\)", message).group(1).split(", ")
    assert sorted(listed) == sorted(known)  # that group's keys, all of them, and no other group's
    assert message.endswith(f"; did you mean '{prefix}.{key}'?")


def test_every_sampler_file_documents_exactly_the_keys_of_its_group():
    from raysearch.train.pipeline import sampler_config_keys

    for sampler in group_options("sampler"):
        assert sorted(_yaml_keys("sampler", sampler)) == sorted(sampler_config_keys(sampler)), sampler


def test_the_cli_prints_a_multi_line_message_on_one_line(monkeypatch, capsys):
    from raysearch.errors import RaysearchError

    def fail(*args, **kwargs):
        raise RaysearchError("first part\n\n  second part\n")

    monkeypatch.setattr("raysearch.run.train", fail)
    assert main(["train"]) == 2
    assert capsys.readouterr().err == "raysearch: error: first part second part\n"


# --------------------------------------------------------------------------- safe checkpoints
def test_checkpoint_state_round_trips_exactly_through_a_weights_only_load(tmp_path):
    from collections import OrderedDict

    from raysearch.train.checkpoint import ARRAY_TAG

    module = torch.nn.Linear(3, 2)
    big_endian = np.array([1, -2, 300], dtype=">i4")
    big_endian.flags.writeable = False
    sampler = {"memory": np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2],  # a strided view
               "gain": np.array([0.1, 1 / 3], dtype=np.float32), "seen": np.array([[True], [False]]),
               "ids": np.array([2**63 + 5], dtype=np.uint64), "be": big_endian, "empty": np.zeros((0, 4)),
               "epoch": 7, "scale": np.float32(0.1), "count": np.int64(-3), "flag": np.bool_(True)}
    trainer = {"best_metric": -float("inf"), "best_valid": {"ndcg@10": np.float64(0.25)}, "seconds": [0.5, 1.5]}
    save_checkpoint(tmp_path / "c.pt", {"epoch": 3, "model": module.state_dict(), "sampler": sampler,
                                        "trainer": trainer})
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # safe by construction: no pickled objects
    assert raw["sampler"]["memory"][ARRAY_TAG].tolist() == [[0, 2], [3, 5]]
    back = load_checkpoint(tmp_path / "c.pt")
    for key, value in sampler.items():
        got = back["sampler"][key]
        assert type(got) is type(value) and np.asarray(got).dtype == np.asarray(value).dtype, key
        assert np.asarray(got).shape == np.asarray(value).shape and np.array_equal(got, value), key
    assert back["sampler"]["gain"].tobytes() == sampler["gain"].tobytes()  # bit for bit
    assert back["sampler"]["be"].tolist() == [1, -2, 300] and back["sampler"]["ids"][0] == 2**63 + 5
    assert back["trainer"] == {"best_metric": -float("inf"), "best_valid": {"ndcg@10": 0.25}, "seconds": [0.5, 1.5]}
    assert type(back["trainer"]["best_valid"]["ndcg@10"]) is np.float64
    assert isinstance(back["model"], OrderedDict) and back["model"]._metadata == module.state_dict()._metadata
    assert back["epoch"] == 3


def test_state_a_safe_checkpoint_cannot_hold_is_refused_on_save(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\.sampler\.names: a numpy array of dtype <U1 cannot be stored"):
        save_checkpoint(tmp_path / "c.pt", {"sampler": {"names": np.array(["a", "b"])}})
    with pytest.raises(TypeError, match=r"checkpoint\.trainer\[1\]: a Payload cannot be stored in a checkpoint"):
        save_checkpoint(tmp_path / "c.pt", {"trainer": [1, Payload(tmp_path / "x")]})
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file
