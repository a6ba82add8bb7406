"""The run directory: resolved config, per-epoch metrics, checkpoints, results.

Layout::

    RUN/config.yaml                 the resolved configuration (what ``--resume`` reads back)
    RUN/metrics.jsonl               one JSON line per epoch and stage
    RUN/stages/<stage>/last.pt      the latest epoch's full state (resume)
    RUN/stages/<stage>/best.pt      the best-validation state of the stage
    RUN/stages/<stage>/done.json    the stage's outcome, once it has finished
    RUN/communities.npy|.json       ICPNS: the frozen community assignment and its summary
    RUN/results.json                written last and atomically: a run without it did not finish

Reading any of them back (``--resume``, ``sampler.pretrained_from``, ``raysearch track``) checks what it
reads: a file that is not valid YAML/JSON, is truncated or holds the wrong kind of value is one
``RunStateError`` line naming the file (and line), and nothing is written before the check.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from raysearch.errors import RunStateError


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "sampler", "trainer")  # what the trainer saves


def load_array(path: Path) -> np.ndarray:
    """A saved ``.npy`` array (no pickles); ``RunStateError`` naming the file when it cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        brief = " ".join(str(err).split()) or type(err).__name__
        raise RunStateError(f"not a readable .npy array, truncated or corrupt ({brief})", where=str(path)) from None


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=_json_default, allow_nan=True)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: Path, expect: type | None = dict) -> Any:
    """The JSON value in ``path`` (of type ``expect`` unless None); ``RunStateError`` naming the file, and
    the line of a syntax error, when it is unreadable, not JSON (e.g. truncated) or of another type."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RunStateError(f"cannot be read ({getattr(err, 'strerror', None) or err})", where=str(path)) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        problem = "the file is empty" if not text.strip() else f"{err.msg} at column {err.colno}"
        raise RunStateError(f"not valid JSON, truncated or corrupt ({problem})",
                            where=f"{path}:{err.lineno}") from None
    if expect is not None and not isinstance(value, expect):
        raise RunStateError(f"expected a JSON {_JSON_NAMES.get(expect, expect.__name__)}, got "
                            f"{_JSON_NAMES.get(type(value), type(value).__name__)}", where=str(path))
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def default_run_dir(dataset: str, model: str, sampler: str, root: str | Path = "runs") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(root) / f"{stamp}-{dataset}-{model}-{sampler}"


class RunDir:
    """Paths and writers of one run directory (only the main process writes)."""

    def __init__(self, path: str | Path, writable: bool = True):
        self.path = Path(path)
        self.writable = writable
        if writable:
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def stage_dir(self, stage: str) -> Path:
        return self.path / "stages" / stage

    def write_config(self, plain_config: dict[str, Any]) -> None:
        if self.writable:
            with self.config_path.open("w") as fh:
                yaml.safe_dump(plain_config, fh, sort_keys=False)

    def read_config(self) -> dict[str, Any]:
        """The saved configuration: a mapping of config groups (``RunStateError`` naming the file else)."""
        path = self.config_path
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise RunStateError(f"cannot be read ({getattr(err, 'strerror', None) or err})",
                                where=str(path)) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problem = " ".join(str(getattr(err, "problem", None) or "malformed").split())
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise RunStateError(f"not valid YAML ({problem})", where=where) from None
        if not isinstance(data, dict):
            got = "an empty file" if data is None else f"a {type(data).__name__}"
            raise RunStateError(f"expected a mapping of config groups (dataset, model, sampler, ...), got {got}",
                                where=str(path))
        return data

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.writable:
            with self.metrics_path.open("a") as fh:
                fh.write(json.dumps(record, default=_json_default) + "\n")

    def _metric_lines(self) -> list[tuple[str, dict[str, Any]]]:
        """(line, record) of each non-blank line of ``metrics.jsonl``; ``RunStateError`` naming the file and
        line for a line that is not a JSON object (e.g. the last line of a run killed while writing it)."""
        path = self.metrics_path
        if not path.exists():
            return []
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise RunStateError(f"cannot be read ({getattr(err, 'strerror', None) or err})",
                                where=str(path)) from None
        out = []
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            last = number == len(lines) or not any(rest.strip() for rest in lines[number:])
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                kind = "the last line is truncated" if last else "corrupt line"
                raise RunStateError(f"not a JSON record ({kind}: {err.msg} at column {err.colno})",
                                    where=f"{path}:{number}") from None
            if not isinstance(record, dict):
                raise RunStateError(f"expected a JSON object per line, got {type(record).__name__}",
                                    where=f"{path}:{number}")
            out.append((line, record))
        return out

    def truncate_metrics(self, stage: str, after_epoch: int) -> None:
        """Drop metric lines of ``stage`` beyond ``after_epoch`` (lines written after the checkpoint we resume)."""
        if not (self.writable and self.metrics_path.exists()):
            return
        keep = []
        for line, rec in self._metric_lines():
            epoch = rec.get("epoch", -1)
            if rec.get("stage") == stage and isinstance(epoch, int) and epoch > after_epoch:
                continue
            keep.append(line)
        text = "".join(f"{line}\n" for line in keep)
        if text != self.metrics_path.read_text():
            _write_text_atomic(self.metrics_path, text)

    def read_metrics(self) -> list[dict[str, Any]]:
        return [record for _, record in self._metric_lines()]

    def check_resumable(self) -> None:
        """Read back everything ``--resume`` will read (metric lines, finished stages, checkpoints, the
        ICPNS assignment) before anything is written: the first problem is one ``RunStateError`` naming
        the file, and the directory is left as it was."""
        from raysearch.train.checkpoint import load_checkpoint

        self._metric_lines()
        stages = self.path / "stages"
        if stages.is_dir():
            for done in sorted(stages.glob("*/done.json")):
                read_json(done)
            for ckpt in sorted(stages.glob("*/*.pt")):
                load_checkpoint(ckpt, keys=CHECKPOINT_KEYS)
        communities = self.path / "communities.npy"
        if communities.exists():
            load_array(communities)

    def write_json(self, name: str, data: Any) -> None:
        if self.writable:
            write_json_atomic(self.path / name, data)
