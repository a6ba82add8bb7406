"""Live metrics exported through Ray's metrics system (Prometheus), for the Grafana dashboard in
``dashboards/grafana-raysearch.json``.

Ray prefixes every name with ``ray_`` on export: ``raysearch_epoch_seconds`` is scraped as
``ray_raysearch_epoch_seconds``. Outside a Ray process (a plain one-process ``raysearch train``) every
call is a no-op, so the training loop can record unconditionally.

Exported:

* ``raysearch_epoch_seconds`` (gauge): the last epoch's wall time; tags dataset, model, sampler, stage.
* ``raysearch_sampling_share`` (gauge): the share of the epoch's step time spent drawing negatives.
* ``raysearch_draws_per_second`` (gauge): negatives drawn per second of sampling time.
* ``raysearch_draws_total`` (counter): negatives drawn.
* ``raysearch_table_draws_total`` (counter): draws served by the community alias-table actors
  (remote draws); tag actor.
* ``raysearch_trials_running`` (gauge): Ray Tune trials running in a study; tag study.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from raysearch.train.callbacks import RunCallback

EPOCH_TAGS = ("dataset", "model", "sampler", "stage")


def _ray_ready() -> bool:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return ray.is_initialized()


@cache
def _instruments() -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge

    return {
        "epoch_seconds": Gauge("raysearch_epoch_seconds", "Wall time of the last epoch (s)", tag_keys=EPOCH_TAGS),
        "sampling_share": Gauge("raysearch_sampling_share", "Share of step time spent drawing negatives",
                                tag_keys=EPOCH_TAGS),
        "draws_per_second": Gauge("raysearch_draws_per_second", "Negatives drawn per second of sampling",
                                  tag_keys=EPOCH_TAGS),
        "draws_total": Counter("raysearch_draws_total", "Negatives drawn", tag_keys=EPOCH_TAGS),
        "table_draws_total": Counter("raysearch_table_draws_total", "Draws served by alias-table actors",
                                     tag_keys=("actor",)),
        "trials_running": Gauge("raysearch_trials_running", "Ray Tune trials running", tag_keys=("study",)),
    }


def record_epoch(tags: dict[str, str], record: dict[str, Any], draws: int) -> None:
    """Export one epoch's cost (``record``: the trainer's metrics line)."""
    if not _ray_ready():
        return
    m = _instruments()
    tags = {k: str(tags.get(k, "")) for k in EPOCH_TAGS}
    m["epoch_seconds"].set(float(record["epoch_seconds"]), tags=tags)
    if record.get("sampling_share") is not None:
        m["sampling_share"].set(float(record["sampling_share"]), tags=tags)
    if record.get("draws_per_second") is not None:
        m["draws_per_second"].set(float(record["draws_per_second"]), tags=tags)
    if draws:
        m["draws_total"].inc(float(draws), tags=tags)


class RayMetricsCallback(RunCallback):
    """Exports every epoch's cost (attach it on every process of a run on Ray)."""

    def __init__(self, dataset: str, model: str):
        self.tags = {"dataset": dataset, "model": model}

    def on_epoch(self, record: dict[str, Any], sampler: Any) -> None:
        record_epoch({**self.tags, "sampler": sampler.name, "stage": record["stage"]}, record,
                     int(record.get("draws", 0)))


def record_table_draws(actor: str, draws: int) -> None:
    if _ray_ready() and draws:
        _instruments()["table_draws_total"].inc(float(draws), tags={"actor": actor})


def record_trials_running(study: str, running: int) -> None:
    if _ray_ready():
        _instruments()["trials_running"].set(float(running), tags={"study": study})
