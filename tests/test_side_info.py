"""Side information (raysearch.data.side_info): the ``u.item``, ``item<TAB>attr[|attr...]`` and
``user<TAB>friend`` readers, id matching with the dataset's id maps (unknown ids counted, never dropped
silently), the cache (its own entry, none on error) and the dataset's fingerprint left unchanged."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from raysearch.config import DatasetConfig
from raysearch.data import load_dataset
from raysearch.data.side_info import MOVIELENS_GENRES
from raysearch.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def csv_dataset(folder: Path) -> DatasetConfig:
    """A csv dataset of users 1..6 and items 10..15 (item 15 only in test), split by ratio."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(u, i) for u in range(1, 7) for i in range(10, 15) if (u + i) % 3] + [(1, 15)]
    (folder / "inter.csv").write_text("user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i in rows))
    return DatasetConfig(name="toy", format="csv", path=str(folder / "inter.csv"), split="ratio",
                         ratios=(0.6, 0.2, 0.2))


def u_item_line(item: int, flags: list[int], title: str = "Movie (1995)") -> str:
    bits = ["0"] * len(MOVIELENS_GENRES)
    for f in flags:
        bits[f] = "1"
    return "|".join([str(item), title, "01-Jan-1995", "", "http://x"] + bits) + "\n"


def test_u_item_genres_map_to_the_datasets_items_and_unknown_items_are_counted(tmp_path):
    cfg = csv_dataset(tmp_path / "toy")
    text = (u_item_line(10, [1, 8]) + u_item_line(11, []) + u_item_line(12, [8], "Café (1995)")
            + u_item_line(99, [5]) + u_item_line(98, [5]))
    (tmp_path / "toy" / "u.item").write_bytes(text.encode("latin-1"))
    ds = load_dataset(dataclasses.replace(cfg, item_attributes="u.item"), cache_dir=tmp_path / "cache")
    items = {str(ds.item_ids[i]): i for i in range(ds.n_items)}
    pairs = {(str(ds.item_ids[i]), str(ds.extras["item_attribute_names"][a])) for i, a in ds.extras["item_attributes"]}
    assert pairs == {("10", "Action"), ("10", "Drama"), ("12", "Drama")}
    assert ds.extras["item_attributes"].dtype == np.int64 and set(items) >= {"10", "11", "12"}
    record = ds.provenance["side_info"]["item_attributes"]
    assert record["format"] == "movielens" and record["lines"] == 5 and record["attributes"] == 19
    assert record["items_not_in_dataset"] == 2 and record["items_not_in_dataset_examples"] == ["99", "98"]
    assert record["dataset_items_without_attributes"] == ds.n_items - 2
    assert record["file"].endswith("u.item") and len(record["sha256"]) == 64


def test_attribute_lines_pool_repeated_items_and_the_fingerprint_is_unchanged(tmp_path):
    cfg = csv_dataset(tmp_path / "toy")
    path = tmp_path / "toy" / "tags.tsv"
    path.write_text("10\trock|pop\n11\tjazz\n10\t pop | indie \n77\tjazz\n")
    plain = load_dataset(cfg, cache_dir=tmp_path / "cache")
    ds = load_dataset(dataclasses.replace(cfg, item_attributes="tags.tsv"), cache_dir=tmp_path / "cache")
    assert ds.fingerprint == plain.fingerprint  # side information is not the split's identity
    names = list(ds.extras["item_attribute_names"])
    assert names == ["indie", "jazz", "pop", "rock"]
    pairs = {(str(ds.item_ids[i]), names[a]) for i, a in ds.extras["item_attributes"]}
    assert pairs == {("10", "rock"), ("10", "pop"), ("10", "indie"), ("11", "jazz")}
    assert ds.provenance["side_info"]["item_attributes"]["items_not_in_dataset"] == 1
    assert "side_info" not in plain.provenance and "item_attributes" not in plain.extras


def test_social_links_are_made_symmetric_and_self_links_unknown_users_counted(tmp_path):
    cfg = csv_dataset(tmp_path / "toy")
    (tmp_path / "toy" / "trust.txt").write_text("1\t2\n2\t1\n3\t3\n1\t4\n4\t900\n901\t902\n")
    ds = load_dataset(dataclasses.replace(cfg, social_network="trust.txt"), cache_dir=tmp_path / "cache")
    links = {(str(ds.user_ids[a]), str(ds.user_ids[b])) for a, b in ds.extras["social_network"]}
    assert links == {("1", "2"), ("2", "1"), ("1", "4"), ("4", "1")}
    record = ds.provenance["side_info"]["social_network"]
    assert record["self_links"] == 1 and record["lines_with_users_not_in_dataset"] == 2
    assert record["users_not_in_dataset"] == 3 and record["users_not_in_dataset_examples"] == ["900", "901", "902"]
    assert record["links"] == 4 and record["dataset_users_with_friends"] == 3


def test_side_information_is_cached_keyed_by_its_file_and_never_on_error(tmp_path):
    cfg = dataclasses.replace(csv_dataset(tmp_path / "toy"), item_attributes="tags.tsv")
    path = tmp_path / "toy" / "tags.tsv"
    cache = tmp_path / "cache"
    path.write_text("10\ta\n")
    first = load_dataset(cfg, cache_dir=cache)
    side_entries = sorted(cache.glob("*-side-*.npz"))
    assert len(side_entries) == 1 and first.extras["item_attributes"].shape == (1, 2)
    again = load_dataset(cfg, cache_dir=cache)  # from the cache
    np.testing.assert_array_equal(again.extras["item_attributes"], first.extras["item_attributes"])
    assert again.provenance["side_info"] == first.provenance["side_info"]
    path.write_text("10\ta|b\n")  # another file: another entry, read afresh
    assert load_dataset(cfg, cache_dir=cache).extras["item_attributes"].shape == (2, 2)
    assert len(sorted(cache.glob("*-side-*.npz"))) == 2
    # a bad side file on a fresh dataset: nothing at all is cached
    fresh = tmp_path / "fresh-cache"
    path.write_text("10\ta\n11\n")
    with pytest.raises(DataError, match=rf"{path}:2: expected 2 columns, found 1"):
        load_dataset(cfg, cache_dir=fresh)
    assert not fresh.exists() or not any(fresh.iterdir())


@pytest.mark.parametrize("name,content,fmt,message", [
    ("tags.tsv", "", "auto", ":1: empty file"),
    ("tags.tsv", "10\ta||b\n", "auto", ":1: empty attribute name"),
    ("tags.tsv", "10 a\n11 b\n", "auto", ":1: expected item<TAB>attr[|attr...], found 1 tab-separated fields"),
    ("tags.tsv", "-1\ta\n", "auto", ":1: negative item id -1"),
    ("tags.tsv", "98\ta\n99\tb\n", "auto", ": names no item of dataset 'toy' (first: item '98', line 1)"),
    ("u.item", "10|T|d||u|0|1\n", "auto", ":1: expected 24 '|'-separated fields"),
    ("u.item", u_item_line(10, [1]).replace("|1|", "|x|"), "auto", ":1: genre flag 2 (Action) is 'x', not 0 or 1"),
    ("u.item", u_item_line(10, [1]).replace("10|", "ten|", 1), "auto", ":1: non-integer item id 'ten'"),
    ("items.txt", u_item_line(10, [1]), "movielens", ""),  # an explicit format: read as u.item, fine
    ("trust.txt", "1\t2\t3\n", "social", ":1: expected user<TAB>friend, found 3 fields"),
    ("trust.txt", "800\t801\n", "social", ": names no link between users of dataset 'toy'"),
    ("trust.txt", "3\t3\n", "social", ": names no link between users of dataset 'toy'"),
])
def test_bad_side_files_name_the_file_and_line(tmp_path, name, content, fmt, message):
    cfg = csv_dataset(tmp_path / "toy")
    path = tmp_path / "toy" / name
    path.write_text(content)
    key = "social_network" if fmt == "social" else "item_attributes"
    extra = {} if fmt in ("auto", "social") else {"item_attributes_format": fmt}
    cfg = dataclasses.replace(cfg, **{key: name}, **extra)
    if not message:
        assert load_dataset(cfg, use_cache=False).extras["item_attributes"].shape == (1, 2)
        return
    with pytest.raises(DataError) as err:
        load_dataset(cfg, cache_dir=tmp_path / "cache")
    assert str(err.value).startswith(f"{path}{message}"), str(err.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_missing_side_file_names_the_key_and_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = dataclasses.replace(csv_dataset(tmp_path / "toy"), social_network="nope.txt")
    with pytest.raises(DataError, match=r"^dataset.social_network: no file 'nope.txt' \(looked in: .*toy/nope.txt; "):
        load_dataset(cfg, use_cache=False)


@pytest.mark.skipif(not (SHARED / "ml-100k" / "u.item").is_file(), reason="ML-100K not in ../shared/data")
def test_ml_100k_genres():
    from raysearch.data import dataset_config

    ds = load_dataset(dataclasses.replace(dataset_config("ml-100k"), item_attributes="u.item"), data_dir=SHARED,
                      use_cache=False)
    record = ds.provenance["side_info"]["item_attributes"]
    assert record["lines"] == 1682 and record["items_not_in_dataset"] == 1682 - ds.n_items
    assert record["dataset_items_without_attributes"] == 0 and list(ds.extras["item_attribute_names"])[1] == "Action"


@pytest.mark.skipif(not (SHARED / "lastfm-lightgcn" / "trustnetwork.txt").is_file(), reason="LastFM not there")
def test_lastfm_trust_network():
    from raysearch.data import dataset_config

    ds = load_dataset(dataclasses.replace(dataset_config("lastfm"), social_network="trustnetwork.txt"),
                      data_dir=SHARED, use_cache=False)
    links = ds.extras["social_network"]
    assert {tuple(x) for x in links.tolist()} == {(b, a) for a, b in links.tolist()}
    record = ds.provenance["side_info"]["social_network"]
    assert record["lines"] == 25434 and record["users_not_in_dataset"] == 1892 - ds.n_users
