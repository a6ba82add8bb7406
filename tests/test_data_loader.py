"""load_dataset end to end on files written here: data directory resolution, cache, provenance, errors,
negatives; describe and list_datasets; the real datasets' counts when ../shared/data is present."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from raysearch.config import DatasetConfig
from raysearch.data import describe, format_description, list_datasets, load_dataset
from raysearch.data.describe import gini
from raysearch.data.loader import cache_path, dataset_config, fingerprint
from raysearch.data.readers import READERS
from raysearch.errors import ConfigError, DataError

TRAIN = "0 0 1 2 3\n1 1 2 4\n2 0 3 4 5\n3 5 6\n"
TEST = "0 4\n1 5\n2 6\n3 0\n"


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("RAYSEARCH_DATA_DIR", raising=False)
    monkeypatch.delenv("RAYSEARCH_CACHE_DIR", raising=False)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data" / "toy"
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text(TRAIN)
    (folder / "test.txt").write_text(TEST)
    return tmp_path / "data"


def toy(**overrides) -> DatasetConfig:
    return DatasetConfig(
        **{"name": "toy", "format": "lightgcn", "path": "toy", "valid_share": 0.0, **overrides}
    )


def test_loads_a_lightgcn_dataset_with_provenance(data_dir, tmp_path):
    ds = load_dataset(toy(), data_dir=data_dir, use_cache=False)
    assert (ds.n_users, ds.n_items) == (4, 7)
    assert ds.train.nnz == 13 and ds.test.nnz == 4 and ds.valid.nnz == 0
    assert ds.train.row(2).tolist() == [0, 3, 4, 5]
    assert ds.user_ids.tolist() == ["0", "1", "2", "3"]  # contiguous 0-based ids map to themselves
    prov = ds.provenance
    sha = hashlib.sha256(TRAIN.encode()).hexdigest()
    assert prov["sources"][0] == {
        "part": "train",
        "file": "toy/train.txt",
        "sha256": sha,
        "bytes": len(TRAIN),
    }
    assert prov["fingerprint"] == ds.fingerprint == fingerprint(toy(), prov["sources"])
    assert prov["split"]["valid_carved"] is False
    assert prov["config"]["format"] == "lightgcn"
    json.dumps(prov)  # JSON-serialisable


def test_carved_validation_is_recorded(data_dir):
    ds = load_dataset(toy(valid_share=0.5, split_seed=3), data_dir=data_dir, use_cache=False)
    # RecBole rule with share 0.5: 4 items -> 2, 3 -> 1 (int(1.5)), 2 -> 1 (int(1.0))
    assert ds.valid.user_counts().tolist() == [2, 1, 2, 1]
    assert ds.train.nnz + ds.valid.nnz == 13
    assert not ds.train.contains(*ds.valid.pairs()).any()
    assert ds.provenance["split"] == {
        "split": "given",
        "cold_users": "error",
        "dropped_cold_rows": {},
        "valid_carved": True,
        "valid_share": 0.5,
        "split_seed": 3,
    }


def test_data_dir_from_the_environment(data_dir, monkeypatch):
    monkeypatch.setenv("RAYSEARCH_DATA_DIR", str(data_dir))
    assert load_dataset(toy(), use_cache=False).train.nnz == 13


def test_missing_dataset_names_directories_and_files(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(DataError) as err:
        load_dataset(toy(), data_dir=tmp_path, use_cache=False)
    assert str(err.value) == (
        f"dataset 'toy' (lightgcn) not found: it needs train.txt, test.txt (optional: valid.txt); "
        f"looked in: {tmp_path / 'toy'}; {tmp_path / 'here' / 'toy'}"
    )


def test_relative_path_falls_back_to_the_current_directory(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(data_dir)
    ds = load_dataset(toy(path="toy"), data_dir=tmp_path / "empty", use_cache=False)
    assert ds.train.nnz == 13
    assert ds.provenance["sources"][0]["file"] == "toy/train.txt"


def test_cache_is_used_and_keyed_by_content(data_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_dataset(toy(), data_dir=data_dir, cache_dir=cache)
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"toy-{first.fingerprint}.json", f"toy-{first.fingerprint}.npz"]

    def broken(files, config):
        raise AssertionError("the reader must not run on a cache hit")

    lightgcn = READERS.get("lightgcn")
    monkeypatch.setitem(READERS._items, "lightgcn", type(lightgcn)(read=broken, layouts=lightgcn.layouts))
    again = load_dataset(toy(), data_dir=data_dir, cache_dir=cache)
    assert again.train == first.train and again.test == first.test
    assert again.user_ids.tolist() == first.user_ids.tolist() and again.provenance == first.provenance
    # a changed file changes the key: the reader runs again
    (data_dir / "toy" / "test.txt").write_text("0 5\n1 5\n2 6\n3 0\n")
    with pytest.raises(AssertionError, match="must not run"):
        load_dataset(toy(), data_dir=data_dir, cache_dir=cache)


def test_config_change_changes_the_key(data_dir, tmp_path):
    a = load_dataset(toy(), data_dir=data_dir, cache_dir=tmp_path / "c")
    b = load_dataset(toy(valid_share=0.5), data_dir=data_dir, cache_dir=tmp_path / "c")
    assert a.fingerprint != b.fingerprint and b.valid.nnz > 0


def test_an_error_leaves_no_cache_entry(data_dir, tmp_path):
    (data_dir / "toy" / "test.txt").write_text("0 4\n9 x\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"test.txt:2: non-integer user or item id 'x'"):
        load_dataset(toy(), data_dir=data_dir, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_corrupt_cache_entry_is_rebuilt(data_dir, tmp_path):
    cache = tmp_path / "cache"
    ds = load_dataset(toy(), data_dir=data_dir, cache_dir=cache)
    path = cache_path(toy(), ds.fingerprint, cache)
    path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        again = load_dataset(toy(), data_dir=data_dir, cache_dir=cache)
    assert again.train == ds.train
    assert np.load(path)["train_indices"].size == 13  # rewritten
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_cold_test_user_error_names_the_line(data_dir):
    (data_dir / "toy" / "test.txt").write_text("0 4\n1 5\n7 6\n")
    with pytest.raises(DataError) as err:
        load_dataset(toy(), data_dir=data_dir, use_cache=False)
    assert str(err.value) == (
        f"{data_dir / 'toy' / 'test.txt'}:3: test user '7' has no train interactions "
        "(1 such test rows; set dataset.cold_users: drop to drop them)"
    )
    ds = load_dataset(toy(cold_users="drop"), data_dir=data_dir, use_cache=False)
    assert ds.n_users == 4 and ds.provenance["split"]["dropped_cold_rows"] == {"test": 1}


def test_pooled_string_ids_and_loo_negatives(tmp_path):
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(30)], 8)
    items = np.concatenate([rng.choice(50, 8, replace=False) for _ in range(30)])
    times = rng.permutation(users.size)
    lines = "\n".join(f"{u},i{i},{t}" for u, i, t in zip(users, items, times, strict=True))
    (tmp_path / "log.csv").write_text("user,item,time\n" + lines + "\n")
    config = DatasetConfig(
        name="log", format="csv", path=str(tmp_path / "log.csv"), user_col="user", item_col="item",
        time_col="time", split="loo", num_negatives=10,
    )  # fmt: skip
    ds = load_dataset(config, use_cache=False)
    assert ds.n_users == 30 and ds.test.nnz == 30 and ds.valid.nnz == 30
    assert ds.user_ids[:3].tolist() == ["u0", "u1", "u10"]  # string ids sort as strings
    assert ds.test_negatives.shape == (30, 10) and np.array_equal(ds.valid_negatives, ds.test_negatives)
    everything = ds.train.union(ds.valid).union(ds.test)
    assert not everything.contains(np.arange(30)[:, None], ds.test_negatives).any()
    # the test item is each user's latest interaction
    latest = {}
    for u, i, _ in sorted(zip(users, items, times, strict=True), key=lambda r: r[2]):
        latest[u] = f"i{i}"  # later times overwrite earlier ones
    test_users, test_items = ds.test.pairs()
    assert {ds.user_ids[u]: ds.item_ids[i] for u, i in zip(test_users, test_items, strict=True)} == latest


def test_ncf_given_negatives_map_to_internal_ids(tmp_path):
    (tmp_path / "x.train.rating").write_text("0\t10\t5\t1\n0\t11\t5\t2\n1\t10\t4\t3\n1\t12\t4\t4\n")
    (tmp_path / "x.test.rating").write_text("0\t12\t5\t9\n1\t11\t5\t9\n")
    (tmp_path / "x.test.negative").write_text("(0,12)\t13\t14\n(1,11)\t14\t13\n")
    config = DatasetConfig(name="x", format="ncf", path=str(tmp_path), valid_share=0.0)
    ds = load_dataset(config, use_cache=False)
    assert ds.item_ids.tolist() == ["10", "11", "12", "13", "14"]
    assert ds.test_negatives.tolist() == [[3, 4], [4, 3]]
    assert ds.provenance["negatives"]["test"] == "given"


def test_unknown_split_or_format_is_a_config_error(data_dir):
    with pytest.raises(ConfigError, match="unknown dataset format 'tsv'"):
        load_dataset(toy(format="tsv"), data_dir=data_dir)
    with pytest.raises(ConfigError, match="dataset.path: required for format 'lightgcn'"):
        load_dataset(toy(path=None), data_dir=data_dir)


def test_named_dataset_from_conf(tmp_path):
    folder = tmp_path / "lastfm-lightgcn"
    folder.mkdir()
    (folder / "data1.txt").write_text("1\t1\t5\r\n1\t2\t3\r\n2\t2\t1\r\n2\t3\t1\r\n")
    (folder / "test1.txt").write_text("1\t3\t2\r\n2\t1\t1\r\n5\t1\t1\r\n")
    ds = load_dataset("lastfm", data_dir=tmp_path, use_cache=False)
    assert ds.user_ids.tolist() == ["1", "2"]  # user 5 only in test: dropped (cold_users: drop)
    assert ds.test.nnz == 2 and ds.train.nnz + ds.valid.nnz == 4


# --------------------------------------------------------------------------- describe
def test_gini_hand_values():
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)  # (n - 1) / n: one item has everything
    assert gini(np.array([3, 3, 3])) == pytest.approx(0.0)
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # 2 * (1 + 6) / (2 * 4) - 3 / 2
    assert gini(np.zeros(5)) == 0.0


def test_describe_and_format(data_dir):
    ds = load_dataset(toy(valid_share=0.5), data_dir=data_dir, use_cache=False)
    info = describe(ds)
    assert info["users"] == 4 and info["items"] == 7
    assert info["interactions"] == {
        "train": 7,
        "valid": 6,
        "test": 4,
        "total": 17,
        "train+valid (as published)": 13,
    }
    assert info["density"] == pytest.approx(17 / 28)
    assert info["interactions_per_user"]["all"] == {"min": 3, "median": 4.5, "max": 5}
    assert info["sources"][1]["file"] == "toy/test.txt"
    text = format_description(info)
    assert "interactions train+valid (as published)  13" in text
    json.dumps(info)


def test_format_uses_thousands_separators():
    info = {
        "name": "big", "format": "csv", "fingerprint": "f", "users": 29858, "items": 40981,
        "interactions": {"train": 810128}, "density": 0.00084, "train_popularity_gini": 0.5,
        "items_without_train_interactions": 0,
        "interactions_per_user": {"train": {"min": 1, "median": 15.0, "max": 1014}},
        "sampled_negatives": None, "preprocessing": {}, "split": {"split": "given", "split_seed": 2026},
    }  # fmt: skip
    text = format_description(info)
    assert "users                  29,858" in text
    assert "interactions train     810,128" in text
    assert "max 1,014" in text and "split_seed=2026" in text


def test_list_datasets_reports_presence(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t1\n")
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    assert rows["ml-100k"] == {
        "name": "ml-100k",
        "format": "movielens",
        "folder": "ml-100k",
        "split": "ratio",
        "present": True,
    }
    assert rows["gowalla"]["present"] is False
    assert rows["synthetic"]["present"] is True


# --------------------------------------------------------------------------- the real data (skipped without it)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "lightgcn-gowalla").is_dir(), reason="../shared/data is absent"
)


@needs_shared
def test_gowalla_counts(tmp_path):
    ds = load_dataset("gowalla", data_dir=SHARED, use_cache=False)
    assert (ds.n_users, ds.n_items) == (29_858, 40_981)
    assert ds.train.nnz + ds.valid.nnz == 810_128 and ds.test.nnz == 217_242
    assert (
        ds.provenance["sources"][0]["sha256"]
        == "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62"
    )


@needs_shared
def test_ml100k_icpns_protocol_counts():
    ds = load_dataset(dataset_config("ml-100k"), data_dir=SHARED, use_cache=False)
    assert (ds.n_users, ds.n_items) == (939, 1_016)
    assert ds.train.nnz + ds.valid.nnz + ds.test.nnz == 80_393
