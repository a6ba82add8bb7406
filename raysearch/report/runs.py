"""Reading an MLflow experiment into plain records: one ``TrackedRun`` per run.

Everything the report shows comes from the tracking store: tags, parameters, latest metric values,
the per-epoch history of each run's selection metric, and (for runs that were tested) the
``results.json`` and ``metrics.jsonl`` artifacts, downloaded with the MLflow client. Nothing is read
from run directories on disk: a report can be built from a store that another machine wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.errors import ConfigError, DataError
from raysearch.evaluation import PER_USER_FILE, load_per_user
from raysearch.tracking import TAG_PREFIX, mlflow_key

TEST_PREFIX = "test/"
VALID_PREFIX = "valid/"
_PAGE = 1000  # runs per search_runs page


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run as the report needs it.

    ``metrics``: latest value of every metric key (``test/ndcg_at_10`` ...). ``history``: the run's
    selection metric (``valid/<trainer.valid_metric>``) as ``(step, value)`` pairs, one per step, in
    step order.
    ``results``: the ``results.json`` artifact, ``epochs``: the ``metrics.jsonl`` lines (one dict per
    epoch, with ``stage``); both only for tested runs, empty when absent. ``per_user``: the per-user test
    values (``users`` int64 (n,), ``{"ndcg@10": float64 (n,)}``) of a tested run, None when absent.
    """

    run_id: str
    name: str
    status: str
    start_time: int  # ms since the epoch
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    history: tuple[tuple[int, float], ...] = ()
    results: Mapping[str, Any] = field(default_factory=dict)
    epochs: tuple[Mapping[str, Any], ...] = ()
    per_user: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None  # the test_per_user.npz artifact
    end_time: int | None = None  # ms since the epoch; None while running

    @property
    def seconds(self) -> float:
        """Wall-clock seconds from the run's start to its end (NaN while it runs)."""
        return (self.end_time - self.start_time) / 1000.0 if self.end_time and self.start_time else math.nan

    def tag(self, key: str, default: str = "") -> str:
        return self.tags.get(f"{TAG_PREFIX}{key}", default)

    @property
    def dataset(self) -> str:
        return self.tag("dataset", "?")

    @property
    def backbone(self) -> str:
        return self.tag("backbone", self.params.get("model.name", "?"))

    @property
    def sampler(self) -> str:
        return self.tag("sampler", self.params.get("sampler.name", "?"))

    @property
    def protocol(self) -> str:
        return self.tag("protocol", "?")

    @property
    def seed(self) -> int | None:
        text = self.tag("seed", self.params.get("trainer.seed", ""))
        return int(text) if text.lstrip("-").isdigit() else None

    @property
    def phase(self) -> str:
        """``search``, ``final`` or ``pretrain`` (a study's shared first stage) for study runs, ``train`` for
        runs of ``raysearch train``."""
        return self.tag("phase", "train")

    @property
    def study(self) -> str:
        return self.tag("study")

    @property
    def valid_metric(self) -> str:
        """The selection metric as the run names it (``ndcg@10``)."""
        return self.params.get("trainer.valid_metric", "ndcg@10")

    @property
    def test_metrics(self) -> dict[str, float]:
        """``{"test/ndcg_at_10": value}`` of the run's one test evaluation (empty for search trials)."""
        return {k: v for k, v in self.metrics.items() if k.startswith(TEST_PREFIX)}

    @property
    def tested(self) -> bool:
        """A finished run of a selected configuration: only those evaluate test (once)."""
        return self.status == "FINISHED" and bool(self.test_metrics)

    @property
    def best_valid(self) -> float:
        """The best selection-metric value the run reached (NaN without history)."""
        values = [v for _, v in self.history if not math.isnan(v)]
        return max(values) if values else math.nan


def open_client(tracking_uri: str):
    """An ``MlflowClient`` on an existing store: a sqlite path that does not exist is an error (MLflow
    would silently create an empty database there)."""
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///"):])
        if not path.is_file():
            raise ConfigError(f"--tracking-uri: no MLflow store at {path} (run `raysearch tune` or "
                              "`raysearch train tracking.enabled=true` first, or point --tracking-uri at one)")
    return mlflow.MlflowClient(tracking_uri)


def load_runs(tracking_uri: str, experiment: str) -> list[TrackedRun]:
    """Every run of ``experiment`` in the store, oldest first, with the artifacts of tested runs."""
    client = open_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError(f"--experiment: no experiment {experiment!r} in {tracking_uri} "
                          f"(experiments there: {', '.join(names) or 'none'})")
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([found.experiment_id], max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    if not runs:
        raise ConfigError(f"--experiment: experiment {experiment!r} in {tracking_uri} has no runs")
    if not any(r.info.status == "FINISHED" for r in runs):
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(Counter(r.info.status for r in runs).items()))
        raise ConfigError(f"--experiment: experiment {experiment!r} in {tracking_uri} has no finished run ({states}); "
                          "report it once a run has finished (a study resumes with `raysearch tune --resume DIR`)")
    runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    with tempfile.TemporaryDirectory(prefix="raysearch-report-") as tmp, _quiet_downloads():
        return [_tracked(client, run, Path(tmp)) for run in runs]


@contextlib.contextmanager
def _quiet_downloads():
    """MLflow draws a progress bar per artifact download; a report downloads hundreds of tiny files."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _tracked(client, run, tmp: Path) -> TrackedRun:
    info, data = run.info, run.data
    record = TrackedRun(run_id=info.run_id, name=info.run_name or info.run_id, status=info.status,
                        start_time=int(info.start_time or 0), tags=dict(data.tags), params=dict(data.params),
                        metrics=dict(data.metrics), end_time=int(info.end_time) if info.end_time else None)
    key = mlflow_key(VALID_PREFIX + record.valid_metric)
    history: dict[int, float] = {}
    for m in sorted(client.get_metric_history(info.run_id, key), key=lambda m: (m.step, m.timestamp)):
        # The first value at a step is the epoch's: a study's final run logs the selected validation
        # again, at the step of its last epoch.
        history.setdefault(int(m.step), float(m.value))
    results: dict[str, Any] = {}
    epochs: tuple[dict[str, Any], ...] = ()
    per_user = None
    if record.tested:
        present = {a.path for a in client.list_artifacts(info.run_id)}
        if "results.json" in present:
            results = _read_json(client, info.run_id, "results.json", tmp)
        if "metrics.jsonl" in present:
            epochs = _read_jsonl(client, info.run_id, "metrics.jsonl", tmp)
        if PER_USER_FILE in present:
            try:
                per_user = load_per_user(_download(client, info.run_id, PER_USER_FILE, tmp))
            except (ValueError, OSError, zipfile.BadZipFile) as err:
                raise DataError(f"malformed artifact: {err}", f"run {info.run_id} {PER_USER_FILE}") from None
    return dataclasses.replace(record, history=tuple(history.items()), results=results, epochs=epochs,
                               per_user=per_user)


def _download(client, run_id: str, name: str, tmp: Path) -> Path:
    dst = tmp / run_id
    dst.mkdir(exist_ok=True)
    return Path(client.download_artifacts(run_id, name, str(dst)))


def _read_json(client, run_id: str, name: str, tmp: Path) -> dict[str, Any]:
    path = _download(client, run_id, name, tmp)
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"malformed artifact: {err.msg}", f"run {run_id} {name}:{err.lineno}") from None
    if not isinstance(value, dict):
        raise DataError("expected a JSON object", f"run {run_id} {name}")
    return value


def _read_jsonl(client, run_id: str, name: str, tmp: Path) -> tuple[dict[str, Any], ...]:
    lines = []
    for number, line in enumerate(_download(client, run_id, name, tmp).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed artifact: {err.msg}", f"run {run_id} {name}:{number}") from None
        if not isinstance(value, dict):
            raise DataError("expected one JSON object per line", f"run {run_id} {name}:{number}")
        lines.append(value)
    return tuple(lines)
