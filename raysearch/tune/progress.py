"""What a study prints while it runs: one line per finished trial and the time left, and nothing of Ray's,
Tune's or MLflow's own chatter unless asked (``raysearch tune --verbose``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune import Callback

from raysearch.config import short_names
from raysearch.tune.selection import _fmt

# Loggers whose INFO/WARNING lines say nothing about the study (Ray's token-authentication notice,
# MLflow's database set-up); errors still show.
QUIET_LOGGERS = ("ray", "mlflow.store.db.utils", "alembic")


def quiet_ray_and_mlflow() -> None:
    """Silence Ray Tune's console output (its experiment box and TensorBoard hint) and the INFO/WARNING
    lines of ``QUIET_LOGGERS`` (Tune's "operation took" warnings among them); call before the study starts
    Tune."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter, silent at verbose=0
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard files per trial
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; under a minute in whole seconds."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class TrialProgress(Callback):
    """Prints one line per finished trial of a search (or final run) and how long the rest should take:

    ``[icpns 3/8]  n_communities=4 alpha=0.021  valid ndcg@10 0.1012  10 epochs  6 s  | 41 s, ~55 s left``

    The time left is the elapsed time per finished trial times the trials still to finish (trials run
    ``concurrency`` at a time, so this is already wall-clock)."""

    def __init__(self, label: str, total: int, metric: str, params: Sequence[str] = (),
                 describe: Callable[[dict[str, Any]], str] | None = None,
                 report: Callable[[str], Any] = print, clock: Callable[[], float] = time.monotonic):
        """``params``: the searched keys shown with their values; ``describe``: else, the text shown
        for a trial's config (final runs: the sampler and seed)."""
        self.label = label
        self.describe = describe
        self.total = total
        self.metric = metric
        self.params = list(params)
        self.names = short_names(self.params)
        self.report = report
        self.clock = clock
        self.started = clock()
        self.finished = 0

    def line(self, config: dict[str, Any], result: dict[str, Any], best: float | None, failed: bool) -> str:
        """The line of one finished trial (``result``: its last report; ``best``: its best ``metric``)."""
        self.finished += 1
        elapsed = self.clock() - self.started
        left = elapsed / self.finished * max(0, self.total - self.finished)
        params = (self.describe(config) if self.describe is not None else
                  " ".join(f"{self.names[k]}={_fmt(config[k])}" for k in self.params if k in config))
        name = self.metric.split("/", 1)[-1]
        if failed:
            outcome = "FAILED"
        elif best is None:
            outcome = f"no {name} reported"
        else:
            outcome = f"valid {name} {best:.4f}"
        epochs = result.get("epochs_done")
        seconds = result.get("time_total_s")
        parts = [f"[{self.label} {self.finished}/{self.total}]", params, outcome,
                 f"{epochs} epochs" if epochs is not None else "",
                 format_seconds(seconds) if seconds is not None else ""]
        eta = f"| {format_seconds(elapsed)}" + (f", ~{format_seconds(left)} left" if self.finished < self.total else "")
        return "  ".join(p for p in parts if p) + "  " + eta

    def _done(self, trial, failed: bool) -> None:
        best = (getattr(trial, "metric_analysis", {}) or {}).get(self.metric, {}).get("max")
        self.report(self.line(trial.config, trial.last_result or {}, best, failed))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._done(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._done(trial, failed=True)
