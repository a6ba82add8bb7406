"""Plain tables built from tracked runs: what each section of the report shows, before any plotting.

Runs are compared within a *block*: one dataset, one evaluation protocol, one backbone (metrics of
different datasets or protocols are not comparable). The runs of a block that count are the *tested*
ones: the final runs of a study (the selected configuration of each sampler on each final seed) and
runs of ``raysearch train``; search trials never evaluate test and only feed the search section.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.errors import DataError
from raysearch.evaluation.significance import PairedTest, Verdict, paper_samplers_against_best, verdict
from raysearch.report.runs import TEST_PREFIX, TrackedRun
from raysearch.tracking import mlflow_key

METRIC_ORDER = ("recall", "ndcg", "mrr", "hit", "precision")  # column order of the comparison table
IGNORED_PARAMS = ("trainer.seed", "tracking.")  # what may differ between seeds of one configuration
BANDS = ("head", "mid", "tail")


# --------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Block:
    """The tested runs of one dataset x protocol x backbone."""

    dataset: str
    protocol: str
    backbone: str
    runs: tuple[TrackedRun, ...]

    @property
    def title(self) -> str:
        protocol = {"full": "full ranking", "sampled": "sampled negatives"}.get(self.protocol, self.protocol)
        return f"{self.dataset} · {self.backbone} · {protocol}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.dataset}-{self.backbone}-{self.protocol}".lower()).strip("-")

    @property
    def samplers(self) -> list[str]:
        return sorted({r.sampler for r in self.runs})

    def runs_of(self, sampler: str) -> list[TrackedRun]:
        return [r for r in self.runs if r.sampler == sampler]

    @property
    def valid_metric(self) -> str:
        """The selection metric of the block's runs (the most common one if they differ)."""
        names = [r.valid_metric for r in self.runs]
        return max(sorted(set(names)), key=names.count)


def blocks(runs: Iterable[TrackedRun]) -> list[Block]:
    """Tested runs grouped by (dataset, protocol, backbone), in name order."""
    groups: dict[tuple[str, str, str], list[TrackedRun]] = {}
    for run in runs:
        if run.tested:
            groups.setdefault((run.dataset, run.protocol, run.backbone), []).append(run)
    return [Block(*key, tuple(sorted(group, key=lambda r: (r.sampler, r.seed if r.seed is not None else -1))))
            for key, group in sorted(groups.items())]


# --------------------------------------------------------------------------- comparison table
@dataclass(frozen=True)
class Cell:
    """Mean and sample standard deviation (ddof=1; NaN for one run) of one metric over ``n`` runs."""

    mean: float
    std: float
    n: int
    best: bool = False


@dataclass(frozen=True)
class ComparisonRow:
    sampler: str
    seeds: tuple[int, ...]
    configurations: int  # distinct configurations among the runs (1 for a study's final runs)
    cells: Mapping[str, Cell]  # by MLflow metric key (test/ndcg_at_10)

    @property
    def runs(self) -> int:
        return max((c.n for c in self.cells.values()), default=0)


@dataclass(frozen=True)
class Comparison:
    block: Block
    metrics: tuple[str, ...]  # MLflow keys, table column order
    rows: tuple[ComparisonRow, ...]

    @property
    def selection(self) -> str:
        """The column of the selection metric (its test value)."""
        return selection_key(self.block)


def metric_label(key: str) -> str:
    """``test/ndcg_at_10`` -> ``ndcg@10``."""
    return key.split("/", 1)[-1].replace("_at_", "@")


def metric_sort_key(key: str) -> tuple[int, str, int]:
    name, _, k = metric_label(key).partition("@")
    rank = METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER)
    return rank, name, int(k) if k.isdigit() else 0


def comparison(block: Block) -> Comparison:
    """Per sampler, mean +- std over its runs of every test metric; the best mean of each column is
    marked (all metrics reported here are higher-is-better; ties are all marked)."""
    metrics = tuple(sorted({k for r in block.runs for k in r.test_metrics}, key=metric_sort_key))
    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for sampler in block.samplers:
        stats[sampler] = {}
        for key in metrics:
            values = np.array([r.metrics[key] for r in block.runs_of(sampler) if key in r.metrics], dtype=np.float64)
            mean = float(values.mean()) if values.size else math.nan
            stats[sampler][key] = (mean, float(values.std(ddof=1)) if values.size > 1 else math.nan, int(values.size))
    top = {key: max((s[key][0] for s in stats.values() if not math.isnan(s[key][0])), default=math.nan)
           for key in metrics}
    rows = []
    for sampler, by_key in stats.items():
        runs = block.runs_of(sampler)
        cells = {key: Cell(mean, std, n, best=mean == top[key]) for key, (mean, std, n) in by_key.items()}
        seeds = tuple(sorted(r.seed for r in runs if r.seed is not None))
        rows.append(ComparisonRow(sampler, seeds, configurations(runs), cells))
    return Comparison(block, metrics, tuple(rows))


def configurations(runs: Sequence[TrackedRun]) -> int:
    """Distinct configurations among ``runs`` (parameters other than the seed and tracking keys)."""
    seen = {json.dumps({k: v for k, v in r.params.items() if not k.startswith(IGNORED_PARAMS)}, sort_keys=True)
            for r in runs}
    return len(seen)


# --------------------------------------------------------------------------- validation curves
@dataclass(frozen=True)
class Curve:
    """Selection-metric values of one run and stage; ``epochs``: 1-based, counted across stages."""

    run: TrackedRun
    stage: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]


def curves(block: Block) -> list[Curve]:
    """One curve per run and stage (ICPNS: ``pretrain`` then ``finetune``).

    Values are the run's MLflow history of its selection metric. Stages come from its ``metrics.jsonl``
    (one line per epoch, in order): the k-th validated line is the k-th history point. Without that
    artifact, or when the two disagree in length, the history is one stage named ``train``.
    """
    out = []
    for run in block.runs:
        values = [v for _, v in run.history]
        validated = [(i + 1, line.get("stage", "train")) for i, line in enumerate(run.epochs) if line.get("valid")]
        if len(validated) != len(values):
            validated = [(i + 1, "train") for i in range(len(values))]
        for stage in dict.fromkeys(s for _, s in validated):
            idx = [i for i, (_, s) in enumerate(validated) if s == stage]
            out.append(Curve(run, stage, tuple(validated[i][0] for i in idx), tuple(values[i] for i in idx)))
    return out


# --------------------------------------------------------------------------- significance
def per_user_runs(block: Block) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per sampler, each run's per-user test values of the selection metric as ``(users, values)``.
    Samplers whose runs lack per-user values are left out (runs logged before they were kept)."""
    metric = block.valid_metric
    per_run = {}
    for sampler in block.samplers:
        runs = block.runs_of(sampler)
        if all(r.per_user is not None and metric in r.per_user[1] for r in runs):
            per_run[sampler] = [(r.per_user[0], r.per_user[1][metric]) for r in runs]
    return per_run


def significance(block: Block) -> list[PairedTest]:
    """ICPNS and GDNS (those of them in the block) each against the block's best other sampler on the
    selection metric, paired over test users; a sampler's per-user values are averaged over its runs."""
    return paper_samplers_against_best(per_user_runs(block), TEST_PREFIX + block.valid_metric)


def block_verdict(block: Block) -> Verdict | None:
    """The block's verdict on the test value of its selection metric (``significance.verdict``: the best
    sampler and which others are indistinguishable from it, Holm-adjusted); None with fewer than two
    samplers that have per-user values."""
    return verdict(per_user_runs(block), TEST_PREFIX + block.valid_metric)


def selection_key(block: Block) -> str:
    """The MLflow key of the selection metric's test value (``test/ndcg_at_10``)."""
    return mlflow_key(TEST_PREFIX + block.valid_metric)


# --------------------------------------------------------------------------- total cost and budget
@dataclass(frozen=True)
class SamplerCost:
    """What a sampler's result in a block cost in all: its search trials, its tested runs and its shared
    first stage (ICPNS's pre-training, run once per study). ``seconds``: the sum of those runs' wall-clock
    durations (concurrent runs each count in full); ``mean``/``std``: the tested runs' selection metric."""

    sampler: str
    trials: int
    trial_epochs: int
    tested_runs: int
    pretraining_runs: int
    pretraining_epochs: int
    # a two-stage sampler whose runs pre-train themselves (no shared first stage): their pre-training
    # epochs are not among the trial-epochs (trials report their output stage only), their time is
    own_pretraining: bool
    seconds: float
    mean: float
    std: float
    budgets: tuple[str, ...]  # the search's budget as the study tagged it (one per study)


def total_costs(block: Block, runs: Sequence[TrackedRun]) -> list[SamplerCost]:
    """Per sampler of ``block``, its total cost (``SamplerCost``). Search and pre-training runs count when
    they belong to a study of the block's tested runs and match its dataset, protocol and backbone."""
    studies = {r.study for r in block.runs if r.study}
    key = selection_key(block)
    out = []
    for sampler in block.samplers:
        tested = block.runs_of(sampler)
        related = [r for r in runs if r.sampler == sampler and r.study in studies and r.phase in ("search", "pretrain")
                   and (r.dataset, r.protocol, r.backbone) == (block.dataset, block.protocol, block.backbone)]
        trials = [r for r in related if r.phase == "search"]
        values = np.array([r.metrics[key] for r in tested if key in r.metrics], dtype=np.float64)
        out.append(SamplerCost(
            sampler=sampler, trials=len(trials), trial_epochs=sum(len(r.history) for r in trials),
            tested_runs=len(tested), pretraining_runs=sum(r.phase == "pretrain" for r in related),
            pretraining_epochs=sum(len(r.history) for r in related if r.phase == "pretrain"),
            own_pretraining=not any(r.phase == "pretrain" for r in related) and any(
                "sampler.pretrain_epochs" in r.params and r.params.get("sampler.pretrained_from") in (None, "", "None")
                for r in [*tested, *trials]),
            seconds=float(sum(r.seconds for r in [*tested, *related] if not math.isnan(r.seconds))),
            mean=float(values.mean()) if values.size else math.nan,
            std=float(values.std(ddof=1)) if values.size > 1 else math.nan,
            budgets=tuple(sorted({r.tag("search_budget") for r in trials if r.tag("search_budget")}))))
    return out


# --------------------------------------------------------------------------- popularity bands
def band_k(block: Block) -> int | None:
    """The K of the band breakdowns: the K of the selection metric when recorded, else the smallest."""
    ks = sorted({int(key.split("@")[1]) for r in block.runs for key in r.results.get("test_bands", {})
                 if key.startswith("recall@")})
    if not ks:
        return None
    wanted = block.valid_metric.partition("@")[2]
    return int(wanted) if wanted.isdigit() and int(wanted) in ks else ks[0]


def band_rows(block: Block, k: int) -> list[dict[str, Any]]:
    """Rows ``{sampler, seed, kind ("recall"|"share"), band, value}`` from each run's ``test_bands``."""
    rows = []
    for run in block.runs:
        bands = run.results.get("test_bands", {})
        for kind in ("recall", "share"):
            for band, value in (bands.get(f"{kind}@{k}") or {}).items():
                rows.append({"sampler": run.sampler, "seed": run.seed, "kind": kind, "band": band,
                             "value": _float(value)})
    return rows


# --------------------------------------------------------------------------- communities
def community_run(block: Block) -> TrackedRun | None:
    """The run whose communities are shown: the lowest-seed run with a community summary (assignments
    differ between seeds, so they are not averaged)."""
    candidates = [r for r in block.runs if r.results.get("communities")]
    return min(candidates, key=lambda r: (r.seed if r.seed is not None else 0, r.run_id)) if candidates else None


def community_items(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Top items of each community as rows ``{community, item, in_share, global_share, in_count,
    global_count}``: shares of the community's / all train interactions (the same item can appear in
    several communities)."""
    total = sum(int(c["interactions"]) for c in summary["communities"])
    rows = []
    for c in summary["communities"]:
        size = int(c["interactions"]) or 1
        for item, count, global_count in zip(c["top_items"], c["top_item_counts"], c["top_item_global_counts"],
                                             strict=True):
            rows.append({"community": int(c["community"]), "item": int(item), "in_count": int(count),
                         "global_count": int(global_count), "in_share": count / size,
                         "global_share": global_count / total if total else math.nan})
    return rows


# --------------------------------------------------------------------------- cost
COST_FIELDS = ("epoch_seconds", "sampling_share", "draws_per_second")


def cost_rows(block: Block) -> list[dict[str, Any]]:
    """Per run, the cost of the sampler's own stage (the last one: ICPNS's fine-tuning):
    ``{sampler, seed, epoch_seconds, sampling_share, draws_per_second}``. Without ``results.json`` the
    run's last logged ``epoch_seconds`` / ``sampling_share`` stand in and draws/s is unknown (NaN)."""
    rows = []
    for run in block.runs:
        stages = run.results.get("stages") or {}
        if stages:
            last = list(stages.values())[-1]
            values = {"epoch_seconds": last.get("epoch_seconds_mean"), "sampling_share": last.get("sampling_share"),
                      "draws_per_second": last.get("draws_per_second")}
        else:
            values = {"epoch_seconds": run.metrics.get("epoch_seconds"),
                      "sampling_share": run.metrics.get("sampling_share"), "draws_per_second": None}
        rows.append({"sampler": run.sampler, "seed": run.seed, **{k: _float(v) for k, v in values.items()}})
    return rows


# --------------------------------------------------------------------------- scale measurements
SCALE_FIELDS = ("model", "workers", "epoch_seconds", "draws_per_second", "comm_bytes_per_step", "param_bytes",
                "optimizer_bytes")


def read_scale(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``raysearch bench scale --json FILE``: ``{model, workers, epoch_seconds, draws_per_second,
    comm_bytes_per_step, param_bytes (per worker list), optimizer_bytes (per worker list)}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file (write one with `raysearch bench scale --json FILE`)", str(path))
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"not JSON: {err.msg}", f"{path}:{err.lineno}") from None
    if isinstance(rows, dict) and "rows" in rows:
        rows = rows["rows"]
    if not isinstance(rows, list) or not rows:
        raise DataError("expected a non-empty JSON list of rows (raysearch bench scale --json)", str(path))
    for i, row in enumerate(rows):
        missing = [k for k in SCALE_FIELDS if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"row {i} lacks {', '.join(missing)}", str(path))
        if not isinstance(row["workers"], int) or row["workers"] < 1:
            raise DataError(f"row {i}: workers must be a positive integer, got {row['workers']!r}", str(path))
    return rows


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
