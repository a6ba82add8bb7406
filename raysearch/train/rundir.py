"""The run directory: resolved config, per-epoch metrics, checkpoints, results.

Layout::

    RUN/config.yaml                 the resolved configuration (what ``--resume`` reads back)
    RUN/metrics.jsonl               one JSON line per epoch and stage
    RUN/stages/<stage>/last.pt      the latest epoch's full state (resume)
    RUN/stages/<stage>/best.pt      the best-validation state of the stage
    RUN/stages/<stage>/done.json    the stage's outcome, once it has finished
    RUN/communities.npy|.json       ICPNS: the frozen community assignment and its summary
    RUN/results.json                written last and atomically: a run without it did not finish
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
        with self.config_path.open() as fh:
            return yaml.safe_load(fh)

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.writable:
            with self.metrics_path.open("a") as fh:
                fh.write(json.dumps(record, default=_json_default) + "\n")

    def truncate_metrics(self, stage: str, after_epoch: int) -> None:
        """Drop metric lines of ``stage`` beyond ``after_epoch`` (lines written after the checkpoint we resume)."""
        if not (self.writable and self.metrics_path.exists()):
            return
        keep = []
        for line in self.metrics_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("stage") == stage and rec.get("epoch", -1) > after_epoch:
                continue
            keep.append(line)
        self.metrics_path.write_text("".join(f"{line}\n" for line in keep))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_json(self, name: str, data: Any) -> None:
        if self.writable:
            write_json_atomic(self.path / name, data)
