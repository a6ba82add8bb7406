"""Readers: each format on small files written here, and the exact error for each kind of bad input."""

from pathlib import Path

import numpy as np
import pytest

from raysearch.config import DatasetConfig
from raysearch.data.readers import READERS, locate, needed_files, read_files
from raysearch.errors import ConfigError, DataError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


def read(tmp_path: Path, **config) -> dict:
    cfg = DatasetConfig(path=str(tmp_path), **config)
    files = locate(cfg, tmp_path)
    assert files is not None
    return read_files(files, cfg).parts


def rows(table) -> list[tuple]:
    return list(zip(table.users.tolist(), table.items.tolist(), strict=True))


# --------------------------------------------------------------------------- lightgcn
def test_lightgcn_adjacency_lines_and_users_without_items(tmp_path):
    write(tmp_path / "train.txt", "0 5 6 7\n1\n2 3\n\n3 1 2\n")
    write(tmp_path / "test.txt", "0 9\r\n2 4\r\n")
    parts = read(tmp_path, format="lightgcn")
    assert set(parts) == {"train", "test"}
    train = parts["train"]
    # user 1 has a line with no items: no rows; the blank line 4 is skipped
    assert rows(train) == [(0, 5), (0, 6), (0, 7), (2, 3), (3, 1), (3, 2)]
    assert train.lines.tolist() == [1, 1, 1, 3, 5, 5]
    assert rows(parts["test"]) == [(0, 9), (2, 4)]
    assert train.ratings is None and train.timestamps is None


def test_lightgcn_optional_valid_part(tmp_path):
    write(tmp_path / "train.txt", "0 1 2\n")
    write(tmp_path / "test.txt", "0 3\n")
    write(tmp_path / "valid.txt", "0 4\n")
    assert set(read(tmp_path, format="lightgcn")) == {"train", "valid", "test"}


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ("0 1 2\n1 x 3\n", "non-integer user or item id 'x'", 2),
        ("0 1 2\n1 3\n2 -4\n", "negative user or item id -4", 3),
        ("0 1 2.5\n", "non-integer user or item id '2.5'", 1),
        ("0 1\n1 2\n3 99999999999999999999\n", "user or item id 99999999999999999999 is too large", 3),
    ],
)
def test_lightgcn_bad_tokens_name_file_and_line(tmp_path, content, message, line):
    path = write(tmp_path / "train.txt", content)
    write(tmp_path / "test.txt", "0 1\n")
    with pytest.raises(DataError) as err:
        read(tmp_path, format="lightgcn")
    assert str(err.value) == f"{path}:{line}: {message}"
    assert err.value.where == f"{path}:{line}"


def test_empty_file_is_an_error(tmp_path):
    write(tmp_path / "train.txt", "0 1\n")
    path = write(tmp_path / "test.txt", "\n  \n")
    with pytest.raises(DataError, match="empty file") as err:
        read(tmp_path, format="lightgcn")
    assert err.value.where == f"{path}:1"


def test_lightgcn_parses_a_gowalla_sized_file_quickly(tmp_path):
    """~30k lines, ~1M tokens (Gowalla's train.txt size): vectorised parsing, no per-token Python loop."""
    import time

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=30_000)
    items = rng.integers(0, 40_000, size=int(lengths.sum()))
    splits = np.split(items, np.cumsum(lengths)[:-1])
    text = "\n".join(f"{u} " + " ".join(map(str, row)) for u, row in enumerate(splits)) + "\n"
    write(tmp_path / "train.txt", text)
    write(tmp_path / "test.txt", "0 1\n")
    start = time.perf_counter()
    train = read(tmp_path, format="lightgcn")["train"]
    elapsed = time.perf_counter() - start
    assert len(train) == items.size
    assert np.array_equal(train.items, items)
    assert np.array_equal(train.users, np.repeat(np.arange(30_000), lengths))
    assert elapsed < 2.0  # about 0.1 s here; generous for loaded CI machines


# --------------------------------------------------------------------------- movielens
def test_movielens_u_data_and_ratings_dat_read_the_same_rows(tmp_path):
    lines = [(196, 242, 3, 881250949), (186, 302, 3, 891717742), (22, 377, 1, 878887116)]
    write(tmp_path / "a" / "u.data", "".join("\t".join(map(str, r)) + "\n" for r in lines))
    write(tmp_path / "b" / "ratings.dat", "".join("::".join(map(str, r)) + "\n" for r in lines))
    a = read(tmp_path / "a", format="movielens")["all"]
    b = read(tmp_path / "b", format="movielens")["all"]
    for table in (a, b):
        assert rows(table) == [(196, 242), (186, 302), (22, 377)]
        assert table.ratings.tolist() == [3.0, 3.0, 1.0]
        assert table.timestamps.dtype == np.int64
        assert table.timestamps.tolist() == [881250949, 891717742, 878887116]


def test_movielens_wrong_column_count(tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\t4\n5\t6\t7\n")
    with pytest.raises(DataError) as err:
        read(tmp_path, format="movielens")
    assert str(err.value) == f"{path}:2: expected 4 columns, found 3"


def test_movielens_non_numeric_rating(tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\t4\n5\t6\tgood\t8\n")
    with pytest.raises(DataError) as err:
        read(tmp_path, format="movielens")
    assert str(err.value) == f"{path}:2: rating 'good' is not a number"


# --------------------------------------------------------------------------- ncf
def test_ncf_ratings_and_negatives(tmp_path):
    write(tmp_path / "ml.train.rating", "0\t1\t5\t100\n0\t2\t4\t101\n1\t3\t3\t102\n")
    write(tmp_path / "ml.test.rating", "0\t4\t5\t200\n1\t5\t4\t201\n")
    write(tmp_path / "ml.test.negative", "(0,4)\t7\t8\t9\n(1,5)\t6\t7\t8\n")
    cfg = DatasetConfig(format="ncf", path=str(tmp_path))
    raw = read_files(locate(cfg, tmp_path), cfg)
    assert rows(raw.parts["train"]) == [(0, 1), (0, 2), (1, 3)]
    assert raw.parts["test"].timestamps.tolist() == [200, 201]
    assert raw.test_negatives.users.tolist() == [0, 1]
    assert raw.test_negatives.items.tolist() == [[7, 8, 9], [6, 7, 8]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("(0,4)\t7\t8\n0,5\t6\t7\n", "expected '(user,item)' at the start of the line, found '0,5'"),
        ("(0,4)\t7\t8\n(1,5)\t6\n", "expected 2 negatives, found 1"),
    ],
)
def test_ncf_malformed_negative_lines(tmp_path, content, message):
    write(tmp_path / "x.train.rating", "0\t1\t5\t100\n")
    write(tmp_path / "x.test.rating", "0\t4\t5\t200\n")
    path = write(tmp_path / "x.test.negative", content)
    cfg = DatasetConfig(format="ncf", path=str(tmp_path))
    with pytest.raises(DataError) as err:
        read_files(locate(cfg, tmp_path), cfg)
    assert str(err.value) == f"{path}:2: {message}"


# --------------------------------------------------------------------------- npy
def test_npy_parts(tmp_path):
    np.save(tmp_path / "train_list.npy", np.array([[0, 0], [0, 1], [1, 2]]))
    np.save(tmp_path / "valid_list.npy", np.array([[0, 2]]))
    np.save(tmp_path / "test_list.npy", np.array([[1, 0]]))
    parts = read(tmp_path, format="npy")
    assert rows(parts["train"]) == [(0, 0), (0, 1), (1, 2)]
    assert parts["train"].lines.tolist() == [1, 2, 3]
    assert rows(parts["valid"]) == [(0, 2)]


def test_npy_rejects_floats_and_negative_ids(tmp_path):
    np.save(tmp_path / "train_list.npy", np.array([[0.0, 1.0]]))
    np.save(tmp_path / "test_list.npy", np.array([[0, 1], [2, -1]]))
    with pytest.raises(DataError) as err:
        read(tmp_path, format="npy")
    assert (
        str(err.value)
        == f"{tmp_path / 'train_list.npy'}: expected an integer array of shape (N, 2), got float64 (1, 2)"
    )
    np.save(tmp_path / "train_list.npy", np.array([[0, 1]]))
    with pytest.raises(DataError) as err:
        read(tmp_path, format="npy")
    assert str(err.value) == f"{tmp_path / 'test_list.npy'}:2: negative item id -1"


# --------------------------------------------------------------------------- csv
def test_csv_named_columns_with_string_ids(tmp_path):
    path = write(tmp_path / "data.csv", "user,item,score,ts\nalice,book,4.5,10\nbob,pen,2,11\n")
    table = read(path, format="csv", user_col="user", item_col="item", rating_col="score", time_col="ts")[
        "all"
    ]
    assert table.users.tolist() == ["alice", "bob"]
    assert table.items.tolist() == ["book", "pen"]
    assert table.ratings.tolist() == [4.5, 2.0]
    assert table.timestamps.tolist() == [10, 11]
    assert table.lines.tolist() == [2, 3]


def test_csv_positional_columns_one_based_ids_and_extra_column(tmp_path):
    path = write(tmp_path / "data1.txt", "424\t4076\t993\r\n1311\t1574\t957\r\n")
    table = read(path, format="csv", header=False, sep="\t", user_col="0", item_col="1")["all"]
    assert rows(table) == [(424, 4076), (1311, 1574)]
    assert table.users.dtype == np.int64


@pytest.mark.parametrize("sep", ["\t", ",", "::", "  "])
def test_csv_sniffs_the_separator(tmp_path, sep):
    path = write(tmp_path / "x.txt", f"1{sep}2\n3{sep}4\n")
    table = read(path, format="csv", header=False, sep=None, user_col="0", item_col="1")["all"]
    assert rows(table) == [(1, 2), (3, 4)]


def test_csv_ids_that_are_not_canonical_integers_stay_strings(tmp_path):
    path = write(tmp_path / "x.csv", "u,i\n007,1\n7,2\n")
    table = read(path, format="csv", user_col="u", item_col="i")["all"]
    assert table.users.tolist() == ["007", "7"]  # '007' and '7' are different tokens
    assert table.items.tolist() == [1, 2]


def test_csv_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "x.csv", "user,item\n1,2\n")
    with pytest.raises(DataError) as err:
        read(path, format="csv", user_col="user_id", item_col="item")
    assert str(err.value) == f"{path}:1: no column 'user_id' for dataset.user_col (columns: user, item)"


def test_csv_wrong_column_count_and_missing_id(tmp_path):
    path = write(tmp_path / "x.csv", "user,item\n1,2\n3,4,5\n")
    with pytest.raises(DataError) as err:
        read(path, format="csv", user_col="user", item_col="item")
    assert str(err.value) == f"{path}:3: expected 2 columns, found 3"
    path = write(tmp_path / "y.csv", "user,item\n1,2\n,4\n")
    with pytest.raises(DataError) as err:
        read(path, format="csv", user_col="user", item_col="item")
    assert str(err.value) == f"{path}:3: missing user id"


def test_csv_positions_need_header_false(tmp_path):
    path = write(tmp_path / "x.csv", "1,2\n")
    with pytest.raises(ConfigError, match="dataset.user_col: 'user_id' must be a 0-based column position"):
        read(path, format="csv", header=False)


# --------------------------------------------------------------------------- parquet
def test_parquet_named_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"u": ["a", "b"], "i": [3, 4], "r": [1.0, 5.0]}), path)
    table = read(path, format="parquet", user_col="u", item_col="i", rating_col="r")["all"]
    assert table.users.tolist() == ["a", "b"]
    assert table.items.tolist() == [3, 4]
    assert table.ratings.tolist() == [1.0, 5.0]
    with pytest.raises(DataError) as err:
        read(path, format="parquet", user_col="user", item_col="i")
    assert str(err.value) == f"{path}: no column 'user' for dataset.user_col (columns: u, i, r)"


# --------------------------------------------------------------------------- recbole
def test_recbole_typed_header_and_split_parts(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    write(tmp_path / "ml.train.inter", header + "u1\ti1\t4\t100\nu2\ti2\t5\t101\n")
    write(tmp_path / "ml.test.inter", header + "u1\ti2\t3\t102\n")
    parts = read(tmp_path, format="recbole", name="ml")
    assert set(parts) == {"train", "test"}
    assert rows(parts["train"]) == [("u1", "i1"), ("u2", "i2")]
    assert parts["train"].ratings.tolist() == [4.0, 5.0]
    assert parts["test"].timestamps.tolist() == [102]


def test_recbole_pooled_file(tmp_path):
    write(tmp_path / "ml.inter", "user_id:token\titem_id:token\ttags:token_seq\n1\t2\ta b\n3\t4\tc\n")
    parts = read(tmp_path, format="recbole", name="ml")
    assert set(parts) == {"all"}
    assert rows(parts["all"]) == [(1, 2), (3, 4)]


def test_recbole_unknown_type_names_line_one(tmp_path):
    path = write(tmp_path / "ml.inter", "user_id:token\titem_id:tokn\n1\t2\n")
    with pytest.raises(DataError) as err:
        read(tmp_path, format="recbole", name="ml")
    assert str(err.value) == (
        f"{path}:1: unknown type 'tokn' of field 'item_id' (known: float, float_seq, token, token_seq)"
    )


# --------------------------------------------------------------------------- locating files
def test_files_option_and_single_file_path(tmp_path):
    write(tmp_path / "tr.csv", "u,i\n1,2\n")
    write(tmp_path / "te.csv", "u,i\n1,3\n")
    cfg = DatasetConfig(format="csv", path=str(tmp_path), files={"train": "tr.csv", "test": "te.csv"})
    assert locate(cfg, tmp_path) == {"train": tmp_path / "tr.csv", "test": tmp_path / "te.csv"}
    single = DatasetConfig(format="csv", path=str(tmp_path / "tr.csv"))
    assert locate(single, tmp_path / "tr.csv") == {"all": tmp_path / "tr.csv"}
    missing = DatasetConfig(format="csv", path=str(tmp_path), files={"train": "tr.csv", "test": "nope.csv"})
    assert locate(missing, tmp_path) is None


def test_files_option_rejects_unknown_parts(tmp_path):
    cfg = DatasetConfig(format="csv", path=str(tmp_path), files={"training": "x.csv"})
    with pytest.raises(ConfigError, match=r"dataset.files.training: unknown part"):
        locate(cfg, tmp_path)


def test_needed_files_describes_the_layout():
    assert needed_files(DatasetConfig(format="lightgcn")) == "train.txt, test.txt (optional: valid.txt)"
    assert needed_files(DatasetConfig(format="movielens")) == "u.data or ratings.dat"


def test_every_config_format_is_registered():
    import raysearch.data  # noqa: F401  (registers 'synthetic')

    assert set(READERS.names()) == {
        "lightgcn",
        "movielens",
        "ncf",
        "npy",
        "csv",
        "parquet",
        "recbole",
        "synthetic",
    }
