"""Readers: one per file format, registered by the format's name in ``READERS``.

A ``Reader`` knows the format's default file layouts (part -> file name pattern) and parses the part
files into ``InteractionTable`` rows with the source's original ids; it does no filtering or remapping
(that is ``preprocess``). Formats, as named in ``DatasetConfig.format``:

- ``lightgcn``: LightGCN/NGCF adjacency lines ``user item item ...`` (0-based ints, space separated) in
  ``train.txt``/``test.txt`` (optional ``valid.txt``); a line with a user alone is a user without items.
- ``movielens``: ``u.data`` (tab separated) or ``ratings.dat`` (``::`` separated): user, item, rating,
  timestamp, all integers.
- ``ncf``: NCF's ``*.train.rating``/``*.test.rating`` (tab separated user, item[, rating[, timestamp]])
  and ``*.test.negative`` (``(user,item)`` then the sampled negatives of that test user).
- ``npy``: numpy integer arrays of shape (N, 2) of ``[user, item]`` rows (``train_list.npy``,
  ``valid_list.npy``, ``test_list.npy``); the "line" of a row in an error message is its 1-based row.
- ``csv``: delimited text, columns by name (``header: true``) or 0-based position; no quoting.
- ``parquet``: columns by name (or 0-based position when ``header: false``); integer, integral float or
  string id columns.
- ``recbole``: RecBole atomic ``.inter`` files with a typed header (``user_id:token`` ...), pooled
  ``NAME.inter`` or ``NAME.train.inter``/``NAME.valid.inter``/``NAME.test.inter``.

The synthetic generator registers itself here as the format ``synthetic`` (it needs no files).
Text is parsed with numpy on the whole buffer (no Python loop per line or token); every error is a
``DataError`` whose ``where`` is ``file:line`` (1-based).

Every reader applies the same checks to ids: formats that promise integers (lightgcn, movielens, ncf,
npy, integer or float parquet columns) reject a non-integer, a negative or a too large id; formats of
tokens (csv, recbole, string parquet columns) keep any non-empty token, turn canonical decimals into
integers, and reject a missing id and a negative integer (``-3``), as the integer formats do. Ratings
and timestamps must be finite numbers. A file of another shape (column count) is rejected, never
silently cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raysearch.config import DatasetConfig
from raysearch.data.table import InteractionTable
from raysearch.errors import ConfigError, DataError
from raysearch.registry import Registry

FILE_PARTS = ("all", "train", "valid", "test", "negative")
RECBOLE_TYPES = ("float", "float_seq", "token", "token_seq")
_MAX_ID_DIGITS = 18  # larger decimal ids would overflow int64


# --------------------------------------------------------------------------- the format registry
@dataclass(frozen=True)
class Layout:
    """One way a format lays out its files: part -> file name or glob pattern inside the dataset folder."""

    files: Mapping[str, str]
    optional: frozenset[str] = frozenset()

    def describe(self) -> str:
        needed = [p for part, p in self.files.items() if part not in self.optional]
        extra = [p for part, p in self.files.items() if part in self.optional]
        return ", ".join(needed) + (f" (optional: {', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class NegativeLists:
    """Sampled test negatives given by a source (NCF ``*.test.negative``), in original ids.

    ``users``: (n,) ids; ``items``: (n, N) ids, one row per line; ``lines``: int64 (n,) 1-based lines.
    """

    users: np.ndarray
    items: np.ndarray
    lines: np.ndarray
    source: str


@dataclass(frozen=True)
class RawData:
    """Everything a reader produced, in original ids.

    ``parts``: ``{"all": table}`` (pooled) or ``train``/``test`` (+ ``valid``) tables.
    ``test_negatives``: negatives given by the source, if any.
    ``user_extras``: name -> (user ids (n,), int64 values (n,)), e.g. the synthetic communities.
    ``pair_extras``: name -> (user ids (m,), item ids (m,)), e.g. the synthetic false negatives.
    """

    parts: dict[str, InteractionTable]
    test_negatives: NegativeLists | None = None
    user_extras: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    pair_extras: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


ReadFn = Callable[[Mapping[str, Path], DatasetConfig], RawData]


@dataclass(frozen=True)
class Reader:
    """A format: how to parse its part files, and where they are by default.

    ``layouts`` are tried in order when ``DatasetConfig.files`` is empty; a format without layouts needs
    ``path`` to be a file or ``files`` to name the parts. ``needs_files`` is False for generated data.
    """

    read: ReadFn
    layouts: tuple[Layout, ...] = ()
    needs_files: bool = True
    has_negatives: bool = False


READERS: Registry[Reader] = Registry("dataset format")


def needed_files(config: DatasetConfig) -> str:
    """Human-readable list of the files ``config`` needs (for 'not found' messages)."""
    reader = READERS.get(config.format)
    if config.files:
        return ", ".join(config.files.values())
    if not reader.layouts:
        return f"a {config.format} file (dataset.path), or dataset.files naming the parts"
    return " or ".join(layout.describe() for layout in reader.layouts)


def _glob_one(folder: Path, pattern: str, config: DatasetConfig) -> Path | None:
    matches = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(matches) > 1:
        # RecBole/NCF layouts are NAME.*: prefer the dataset's own name when several files match (a named
        # dataset pointed at other data, NAME@FOLDER, still prefers NAME.*).
        named = [p for p in matches if p.name.split(".")[0] == config.name.split("@")[0]]
        if len(named) == 1:
            return named[0]
        names = ", ".join(p.name for p in matches)
        raise DataError(
            f"several files match {pattern!r} ({names}); name the parts in dataset.files", where=str(folder)
        )
    return matches[0] if matches else None


def _check_parts(parts: Mapping[str, object], reader: Reader, fmt: str) -> None:
    for part in parts:
        if part not in FILE_PARTS:
            raise ConfigError(f"dataset.files.{part}: unknown part (known: {', '.join(FILE_PARTS)})")
    if "negative" in parts and not reader.has_negatives:
        raise ConfigError(f"dataset.files.negative: format {fmt!r} has no negatives file")
    splits = {p for p in parts if p != "negative"}
    if "all" in splits and len(splits) > 1:
        raise ConfigError("dataset.files: give either 'all' or train/test (+ valid) parts, not both")
    if splits and "all" not in splits and not {"train", "test"} <= splits:
        raise ConfigError("dataset.files: split parts need at least 'train' and 'test'")


def locate(config: DatasetConfig, root: Path) -> dict[str, Path] | None:
    """The part files of ``config`` under ``root`` (a file or a folder), or None when they are missing."""
    reader = READERS.get(config.format)
    if root.is_file():
        if config.files:
            raise ConfigError("dataset.files: must be empty when dataset.path is a file")
        return {"all": root}
    if not root.is_dir():
        return None
    if config.files:
        _check_parts(config.files, reader, config.format)
        files = {part: root / name for part, name in config.files.items()}
        return files if all(p.is_file() for p in files.values()) else None
    for layout in reader.layouts:
        found: dict[str, Path] = {}
        for part, pattern in layout.files.items():
            path = _glob_one(root, pattern, config)
            if path is not None:
                found[part] = path
            elif part not in layout.optional:
                break
        else:
            return found
    return None


def read_files(files: Mapping[str, Path], config: DatasetConfig) -> RawData:
    """Parse ``files`` (part -> path) with the reader of ``config.format``."""
    return READERS.get(config.format).read(files, config)


# --------------------------------------------------------------------------- text parsing (vectorised)
def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read the file ({err.strerror})", where=str(path)) from None
    if not data.strip():
        raise DataError("empty file", where=f"{path}:1")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a byte-order mark: UTF-16 (or UTF-32 LE)
        raise DataError("UTF-16 or UTF-32 text: save it as UTF-8", where=f"{path}:1")
    if (nul := data.find(b"\x00")) >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise DataError("binary content (a NUL byte): not a text file", where=f"{path}:{line}")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    return data


def _tokenize(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace tokens of ``text``: (line of each token int64 (n_tokens,) 1-based, tokens per line (n_lines,)).

    Tokens are in the order of ``text.split()`` (bytes <= 0x20 separate tokens).
    """
    buf = np.frombuffer(text, dtype=np.uint8)
    space = buf <= 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    newlines = np.flatnonzero(buf == 10)
    token_line = np.searchsorted(newlines, starts) + 1
    per_line = np.bincount(token_line - 1, minlength=newlines.size + 1).astype(np.int64)
    return token_line.astype(np.int64), per_line


def _bad_int_message(token: bytes | str, what: str) -> str:
    tok = token.decode("utf-8", errors="replace") if isinstance(token, bytes) else str(token)
    if not tok:
        return f"missing {what} id"
    if tok.startswith("-") and tok[1:].isdigit():
        return f"negative {what} id {tok}"
    if tok.isdigit():
        return f"{what} id {tok} is too large"
    return f"non-integer {what} id {tok!r}"


def _int_column(col: np.ndarray, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Bytes column of non-negative decimal integers -> int64; the first bad value is a DataError."""
    ok = np.strings.isdigit(col) & (np.strings.str_len(col) <= _MAX_ID_DIGITS)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(_bad_int_message(bytes(col[i]), what), where=f"{path}:{lines[i]}")
    return col.astype(np.int64)


def _ints_of_text(text: bytes, token_line: np.ndarray, path: Path, what: str) -> np.ndarray:
    """All whitespace tokens of ``text`` as non-negative int64 (fast path: one C call)."""
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        values = None
    if values is not None and values.size == token_line.size and values.size:
        if values.min() >= 0 and values.max() < 10**_MAX_ID_DIGITS:
            return values
    # Slow path, only to name the first bad token and its line.
    return _int_column(np.array(text.split()), token_line, path, what)


def _float_column(col: np.ndarray, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    try:
        values = col.astype(np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        import pandas as pd  # only on the error path, to find the first bad value

        parsed = pd.to_numeric(pd.Series(np.char.decode(col, "utf-8", errors="replace")), errors="coerce")
        bad = np.flatnonzero(~np.isfinite(parsed.to_numpy(dtype=np.float64)))
        i = int(bad[0]) if bad.size else 0
        raise DataError(
            f"{what} {bytes(col[i]).decode(errors='replace')!r} is not a number", where=f"{path}:{lines[i]}"
        )
    return values


def _time_column(col: np.ndarray, lines: np.ndarray, path: Path) -> np.ndarray:
    """Timestamps: int64 when every value is a decimal integer, else float64."""
    if np.strings.isdigit(col).all() and (np.strings.str_len(col) <= _MAX_ID_DIGITS).all():
        return col.astype(np.int64)
    return _float_column(col, lines, path, "timestamp")


def _token_column(col: np.ndarray, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Ids of a format that does not promise integers (bytes or str tokens): int64 if every id is a
    canonical decimal, else str. A missing id or a negative integer (``-3``) is a ``DataError``."""
    text = col.dtype.kind == "U"
    length = np.strings.str_len(col)
    if (length == 0).any():
        i = int(np.flatnonzero(length == 0)[0])
        raise DataError(f"missing {what} id", where=f"{path}:{lines[i]}")
    minus, zero = ("-", "0") if text else (b"-", b"0")
    negative = np.strings.startswith(col, minus) & np.strings.isdigit(np.strings.slice(col, 1, None))
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise DataError(_bad_int_message(col[i].item(), what), where=f"{path}:{lines[i]}")
    canonical = (
        np.strings.isdigit(col)
        & (length <= _MAX_ID_DIGITS)
        & ((length == 1) | ~np.strings.startswith(col, zero))
    )
    if canonical.all():
        return col.astype(np.int64)
    return col if text else np.char.decode(col, "utf-8", errors="replace")


def _sniff(text: bytes) -> str:
    """The delimiter of a text: the first of tab, '::', comma found in its first non-blank line, else
    whitespace (rows of another width are then reported by ``_grid``)."""
    first = next(line for line in text.split(b"\n", 64) if line.strip())
    for sep in ("\t", "::", ","):
        if sep.encode() in first:
            return sep
    return " "


@dataclass(frozen=True)
class _Grid:
    """The non-blank rows of a delimited text: ``fields`` bytes (n_rows, n_cols), ``lines`` int64 (n_rows,)."""

    fields: np.ndarray
    lines: np.ndarray
    header: list[str] | None
    header_line: int
    path: Path

    @property
    def n_cols(self) -> int:
        return int(self.fields.shape[1])

    def column(self, j: int) -> np.ndarray:
        return np.strings.strip(self.fields[:, j])


def _grid(path: Path, sep: str | None, header: bool) -> _Grid:
    """Parse a delimited text file into rows of equal width (one ``DataError`` for a row of another width)."""
    text = _read_bytes(path)
    if sep is None:
        sep = _sniff(text)
    if set(sep) == {" "}:  # whitespace-separated: runs of blanks (spaces, tabs) are one separator
        token_line, per_line = _tokenize(text)
        tokens = np.array(text.split())
        counts = per_line
        nonblank = per_line > 0
    else:
        sep_bytes = sep.encode()
        if len(sep_bytes) > 1:  # '::' -> one byte, so that separators can be located with one comparison
            text = text.replace(sep_bytes, b"\x1f")
            sep_bytes = b"\x1f"
        buf = np.frombuffer(text, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 10)
        n_segments = newlines.size + 1
        counts = (
            np.bincount(np.searchsorted(newlines, np.flatnonzero(buf == sep_bytes[0])), minlength=n_segments)
            + 1
        )
        nonblank = np.bincount(np.searchsorted(newlines, np.flatnonzero(buf > 32)), minlength=n_segments) > 0
        tokens = np.array(text.replace(b"\n", sep_bytes).split(sep_bytes))
        tokens = tokens[np.repeat(nonblank, counts)]
    row_lines = np.flatnonzero(nonblank).astype(np.int64) + 1
    counts = counts[nonblank]
    names = None
    header_line = int(row_lines[0])
    if header:
        names = [t.decode("utf-8", errors="replace").strip() for t in tokens[: counts[0]]]
        tokens, row_lines, counts = tokens[counts[0] :], row_lines[1:], counts[1:]
        if not counts.size:
            raise DataError("no data rows after the header", where=f"{path}:{header_line}")
    n_cols = len(names) if names is not None else int(counts[0])
    bad = np.flatnonzero(counts != n_cols)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"expected {n_cols} columns, found {counts[i]}", where=f"{path}:{row_lines[i]}")
    return _Grid(tokens.reshape(-1, n_cols), row_lines, names, header_line, path)


def _column_index(grid: _Grid, spec: str, key: str, header: bool) -> int:
    """Position of the column named (or numbered, without a header) ``spec`` for config key ``key``."""
    if grid.header is not None:
        if spec not in grid.header:
            raise DataError(
                f"no column {spec!r} for dataset.{key} (columns: {', '.join(grid.header)})",
                where=f"{grid.path}:{grid.header_line}",
            )
        return grid.header.index(spec)
    if not spec.isdigit():
        raise ConfigError(
            f"dataset.{key}: {spec!r} must be a 0-based column position when dataset.header is false"
        )
    if int(spec) >= grid.n_cols:
        raise DataError(
            f"no column {spec} for dataset.{key}: the file has {grid.n_cols} columns",
            where=f"{grid.path}:{grid.lines[0]}",
        )
    return int(spec)


def _table_of_grid(
    grid: _Grid,
    part: str,
    columns: Mapping[str, int | None],
    id_parser: Callable[[np.ndarray, np.ndarray, Path, str], np.ndarray],
) -> InteractionTable:
    """Build a table from the grid's columns ``user``, ``item`` and optional ``rating``/``timestamp``."""
    lines, path = grid.lines, grid.path
    rating_col, time_col = columns.get("rating"), columns.get("timestamp")
    return InteractionTable(
        users=id_parser(grid.column(columns["user"]), lines, path, "user"),  # type: ignore[arg-type]
        items=id_parser(grid.column(columns["item"]), lines, path, "item"),  # type: ignore[arg-type]
        ratings=None if rating_col is None else _float_column(grid.column(rating_col), lines, path, "rating"),
        timestamps=None if time_col is None else _time_column(grid.column(time_col), lines, path),
        lines=lines,
        part=part,
        source=str(path),
    )


def _parts_reader(parse: Callable[[Path, str, DatasetConfig], InteractionTable]) -> ReadFn:
    """A ``ReadFn`` that parses each split part with ``parse`` (the negatives part is not a split part)."""

    def read(files: Mapping[str, Path], config: DatasetConfig) -> RawData:
        return RawData(
            {part: parse(path, part, config) for part, path in files.items() if part != "negative"}
        )

    return read


# --------------------------------------------------------------------------- lightgcn
def read_adjacency(path: Path, part: str) -> InteractionTable:
    """LightGCN adjacency lines ``user item item ...``; a line with a user alone adds no rows."""
    text = _read_bytes(path)
    token_line, per_line = _tokenize(text)
    values = _ints_of_text(text, token_line, path, "user or item")
    first = np.zeros(values.size, dtype=bool)
    offsets = np.cumsum(per_line) - per_line
    nonblank = per_line > 0
    first[offsets[nonblank]] = True
    return InteractionTable(
        users=np.repeat(values[first], per_line[nonblank] - 1),
        items=values[~first],
        lines=token_line[~first],
        part=part,
        source=str(path),
    )


READERS.register("lightgcn")(
    Reader(
        read=_parts_reader(lambda path, part, config: read_adjacency(path, part)),
        layouts=(
            Layout({"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}, frozenset({"valid"})),
        ),
    )
)


# --------------------------------------------------------------------------- movielens
def read_movielens(path: Path, part: str, config: DatasetConfig) -> InteractionTable:
    """MovieLens ratings: ``u.data`` (tab) or ``ratings.dat`` ('::'): user, item, rating, timestamp."""
    sep = config.sep or ("::" if path.suffix == ".dat" else "\t")
    grid = _grid(path, sep, header=False)
    if grid.n_cols != 4:
        raise DataError(
            f"expected 4 columns (user, item, rating, timestamp), found {grid.n_cols}",
            where=f"{path}:{grid.lines[0]}",
        )
    return _table_of_grid(grid, part, {"user": 0, "item": 1, "rating": 2, "timestamp": 3}, _int_column)


READERS.register("movielens")(
    Reader(
        read=_parts_reader(read_movielens),
        layouts=(Layout({"all": "u.data"}), Layout({"all": "ratings.dat"})),
    )
)


# --------------------------------------------------------------------------- ncf
def read_ncf_ratings(path: Path, part: str, config: DatasetConfig) -> InteractionTable:
    """NCF ``*.rating``: tab separated user, item[, rating[, timestamp]] (integer ids)."""
    grid = _grid(path, config.sep or "\t", header=False)
    if not 2 <= grid.n_cols <= 4:
        raise DataError(
            f"expected 2 to 4 columns (user, item[, rating[, timestamp]]), found {grid.n_cols}",
            where=f"{path}:{grid.lines[0]}",
        )
    columns = {
        "user": 0,
        "item": 1,
        "rating": 2 if grid.n_cols > 2 else None,
        "timestamp": 3 if grid.n_cols > 3 else None,
    }
    return _table_of_grid(grid, part, columns, _int_column)


def read_ncf_negatives(path: Path) -> NegativeLists:
    """NCF ``*.test.negative``: lines ``(user,item)<TAB>neg1<TAB>neg2 ...``, the same number of negatives each."""
    text = _read_bytes(path)
    token_line, per_line = _tokenize(text)
    nonblank = per_line > 0
    offsets = (np.cumsum(per_line) - per_line)[nonblank]
    heads = np.array(text.split())[offsets]
    well_formed = (
        np.strings.startswith(heads, b"(")
        & np.strings.endswith(heads, b")")
        & (np.strings.count(heads, b",") == 1)
    )
    if not well_formed.all():
        i = int(np.flatnonzero(~well_formed)[0])
        raise DataError(
            f"expected '(user,item)' at the start of the line, found {bytes(heads[i]).decode(errors='replace')!r}",
            where=f"{path}:{token_line[offsets[i]]}",
        )
    # '(u,i)' -> ' u i ': the line structure is unchanged, each line gains one token.
    clean = text.replace(b"(", b" ").replace(b")", b" ").replace(b",", b" ")
    token_line, per_line = _tokenize(clean)
    values = _ints_of_text(clean, token_line, path, "user or item")
    counts = per_line[per_line > 0]
    width = int(counts[0]) - 2
    bad = np.flatnonzero(counts != counts[0])
    lines = np.flatnonzero(per_line > 0).astype(np.int64) + 1
    if bad.size:
        i = int(bad[0])
        raise DataError(f"expected {width} negatives, found {counts[i] - 2}", where=f"{path}:{lines[i]}")
    if width < 1:
        raise DataError("a test user has no negatives", where=f"{path}:{lines[0]}")
    rows = values.reshape(-1, width + 2)
    return NegativeLists(users=rows[:, 0], items=rows[:, 2:], lines=lines, source=str(path))


def _read_ncf(files: Mapping[str, Path], config: DatasetConfig) -> RawData:
    parts = {part: read_ncf_ratings(path, part, config) for part, path in files.items() if part != "negative"}
    negatives = read_ncf_negatives(files["negative"]) if "negative" in files else None
    return RawData(parts, test_negatives=negatives)


READERS.register("ncf")(
    Reader(
        read=_read_ncf,
        layouts=(
            Layout(
                {"train": "*.train.rating", "test": "*.test.rating", "negative": "*.test.negative"},
                frozenset({"negative"}),
            ),
        ),
        has_negatives=True,
    )
)


# --------------------------------------------------------------------------- npy
def read_npy(path: Path, part: str) -> InteractionTable:
    """A numpy integer array (N, 2) of ``[user, item]`` rows; an error's line is the 1-based row. Another
    shape (a third column included: it would be dropped silently) is a ``DataError``."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"not a readable .npy array ({err})", where=str(path)) from None
    if (
        not isinstance(array, np.ndarray)
        or array.dtype.kind not in "iu"
        or array.ndim != 2
        or array.shape[1] != 2
    ):
        shape = getattr(array, "shape", None)
        raise DataError(
            f"expected an integer array of shape (N, 2), got {getattr(array, 'dtype', '?')} {shape}",
            where=str(path),
        )
    if array.shape[0] == 0:
        raise DataError("empty file (no rows)", where=f"{path}:1")
    users, items = (_integer_ids(array[:, j], path, what) for j, what in ((0, "user"), (1, "item")))
    return InteractionTable(
        users=users,
        items=items,
        lines=np.arange(1, array.shape[0] + 1),
        part=part,
        source=str(path),
    )


READERS.register("npy")(
    Reader(
        read=_parts_reader(lambda path, part, config: read_npy(path, part)),
        layouts=(
            Layout(
                {"train": "train_list.npy", "valid": "valid_list.npy", "test": "test_list.npy"},
                frozenset({"valid"}),
            ),
        ),
    )
)


# --------------------------------------------------------------------------- csv
def read_csv(path: Path, part: str, config: DatasetConfig) -> InteractionTable:
    """Delimited text; columns from ``user_col``/``item_col``/``rating_col``/``time_col`` (names or positions)."""
    grid = _grid(path, config.sep, config.header)
    columns = {
        "user": _column_index(grid, config.user_col, "user_col", config.header),
        "item": _column_index(grid, config.item_col, "item_col", config.header),
        "rating": None
        if config.rating_col is None
        else _column_index(grid, config.rating_col, "rating_col", config.header),
        "timestamp": None
        if config.time_col is None
        else _column_index(grid, config.time_col, "time_col", config.header),
    }
    return _table_of_grid(grid, part, columns, _token_column)


READERS.register("csv")(Reader(read=_parts_reader(read_csv)))


# --------------------------------------------------------------------------- binary id columns
def _integer_ids(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """int64 ids from a numeric column (integers, or floats with integral values); the first
    non-integer, negative or too large id is a ``DataError`` naming its 1-based row, as the text readers
    name the line."""
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"non-integer {what} id {str(values[i])!r}", where=f"{path}:{i + 1}")
    limit = 10**_MAX_ID_DIGITS
    bad = np.flatnonzero((values < 0) | (values >= limit))
    if bad.size:
        i = int(bad[0])
        value = int(values[i])
        message = f"negative {what} id {value}" if value < 0 else f"{what} id {value} is too large"
        raise DataError(message, where=f"{path}:{i + 1}")
    return values.astype(np.int64)


def _parquet_ids(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Ids of a parquet column: an integer or float column as ``_integer_ids``, a string column as the
    tokens of a csv file (``_token_column``); any other type is a ``DataError``."""
    kind = values.dtype.kind
    if kind in "iuf":
        return _integer_ids(values, path, what)
    # A parquet column has one type: an object column is all strings (or all something else).
    if kind == "U" or (kind == "O" and values.size and isinstance(values[0], str)):
        tokens = np.strings.strip(values.astype(str))
        return _token_column(tokens, np.arange(1, values.size + 1), path, what)
    shown = type(values[0]).__name__ if kind == "O" and values.size else str(values.dtype)
    raise DataError(f"{what} ids must be integers or strings, got {shown}", where=str(path))


def _parquet_numbers(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A rating or timestamp column: finite numbers (timestamps may be datetimes: int64 nanoseconds)."""
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]").astype(np.int64)
    if values.dtype.kind not in "iuf":
        shown = type(values[0]).__name__ if values.dtype.kind == "O" and values.size else str(values.dtype)
        raise DataError(f"{what}s must be numbers, got {shown}", where=str(path))
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"{what} {str(values[i])!r} is not a number", where=f"{path}:{i + 1}")
    return values


# --------------------------------------------------------------------------- parquet


def read_parquet(path: Path, part: str, config: DatasetConfig) -> InteractionTable:
    """A parquet file; columns by name (or 0-based position with ``header: false``). Lines are 1-based rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid / OSError subclasses
        raise DataError(f"not a readable parquet file ({err})", where=str(path)) from None
    names = list(table.column_names)
    if table.num_rows == 0:
        raise DataError("empty file (no rows)", where=f"{path}:1")

    def column(spec: str | None, key: str) -> np.ndarray | None:
        if spec is None:
            return None
        if spec not in names:
            if config.header or not spec.isdigit() or int(spec) >= len(names):
                raise DataError(
                    f"no column {spec!r} for dataset.{key} (columns: {', '.join(names)})", where=str(path)
                )
            spec = names[int(spec)]
        data = table.column(spec)
        if data.null_count:
            row = int(np.flatnonzero(pc.is_null(data).to_numpy(zero_copy_only=False))[0])
            raise DataError(f"missing value in column {spec!r}", where=f"{path}:{row + 1}")
        return data.to_numpy(zero_copy_only=False)

    users, items = column(config.user_col, "user_col"), column(config.item_col, "item_col")
    ratings, times = column(config.rating_col, "rating_col"), column(config.time_col, "time_col")
    return InteractionTable(
        users=_parquet_ids(users, path, "user"),  # type: ignore[arg-type]
        items=_parquet_ids(items, path, "item"),  # type: ignore[arg-type]
        ratings=None if ratings is None else _parquet_numbers(ratings, path, "rating").astype(np.float64),
        timestamps=None if times is None else _parquet_numbers(times, path, "timestamp"),
        lines=np.arange(1, table.num_rows + 1),
        part=part,
        source=str(path),
    )


READERS.register("parquet")(Reader(read=_parts_reader(read_parquet)))


# --------------------------------------------------------------------------- recbole
_RECBOLE_FIELD = re.compile(r"^(?P<name>[^:]+):(?P<type>[^:]+)$")


def read_recbole(path: Path, part: str, config: DatasetConfig) -> InteractionTable:
    """A RecBole atomic ``.inter`` file: tab separated, header ``name:type`` fields.

    Users and items come from ``user_col``/``item_col`` (default ``user_id``/``item_id``, type token);
    ratings from ``rating_col`` or the ``rating`` field, timestamps from ``time_col`` or ``timestamp``.
    """
    grid = _grid(path, "\t", header=True)
    names: list[str] = []
    types: dict[str, str] = {}
    for raw in grid.header or []:
        match = _RECBOLE_FIELD.match(raw)
        if match is None:
            raise DataError(
                f"header field {raw!r} is not of the form name:type", where=f"{path}:{grid.header_line}"
            )
        name, kind = match["name"], match["type"]
        if kind not in RECBOLE_TYPES:
            raise DataError(
                f"unknown type {kind!r} of field {name!r} (known: {', '.join(RECBOLE_TYPES)})",
                where=f"{path}:{grid.header_line}",
            )
        names.append(name)
        types[name] = kind
    grid = _Grid(grid.fields, grid.lines, names, grid.header_line, path)

    def index(spec: str | None, key: str, kind: str) -> int | None:
        if spec is None:
            return None
        j = _column_index(grid, spec, key, header=True)
        if types[spec] != kind:
            raise DataError(
                f"field {spec!r} has type {types[spec]}, expected {kind}", where=f"{path}:{grid.header_line}"
            )
        return j

    rating = config.rating_col or ("rating" if "rating" in types else None)
    timestamp = config.time_col or ("timestamp" if "timestamp" in types else None)
    columns = {
        "user": index(config.user_col, "user_col", "token"),
        "item": index(config.item_col, "item_col", "token"),
        "rating": index(rating, "rating_col", "float"),
        "timestamp": index(timestamp, "time_col", "float"),
    }
    return _table_of_grid(grid, part, columns, _token_column)


READERS.register("recbole")(
    Reader(
        read=_parts_reader(read_recbole),
        layouts=(
            Layout(
                {"train": "*.train.inter", "valid": "*.valid.inter", "test": "*.test.inter"},
                frozenset({"valid"}),
            ),
            Layout({"all": "*.inter"}),
        ),
    )
)
