"""``search.max_trial_epochs``: a search that ends when its trials together have trained that many epochs.

The trial count (``search.num_samples``) does not fix a search's compute: ASHA stops trials at different
rungs, and an asynchronous ASHA promotes more trials early on than later. A budget in trial-epochs (the
study summary's ``trial_epochs``: every epoch a trial trains, all its stages) does: once the trials'
epochs reach it, Tune stops every running trial and starts no other. A trial stopped so keeps what it
reached (its best validation so far counts, as an ASHA-stopped trial's does). The last epochs in flight
when the budget is reached finish, so a search may exceed it by at most one epoch per running trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.stopper import Stopper

from raysearch.train.rundir import RunDir

TRIAL_DIR_PREFIX = "trial-"  # the search's trial directories: trial-<trial id> (study._trial_dirname)


class TrialEpochBudget(Stopper):
    """Stops the search in ``search_dir`` once its trials' epochs sum to ``budget``.

    Each result's ``epochs_done`` (a trial's epochs so far, resumed epochs included) updates its trial's
    count. A search resumed after an interruption counts the epochs its trials trained before, read once
    from their run directories (a trial finished then reports nothing again)."""

    def __init__(self, budget: int, search_dir: Path):
        self.budget = int(budget)
        self.search_dir = Path(search_dir)
        self.epochs: dict[str, int] | None = None  # trial id -> its epochs so far

    def _counts(self) -> dict[str, int]:
        if self.epochs is None:
            self.epochs = {}
            for trial_dir in sorted(self.search_dir.glob(f"{TRIAL_DIR_PREFIX}*")):
                run = trial_dir / "run"
                if (run / "metrics.jsonl").is_file():
                    records = RunDir(run, writable=False).read_metrics()
                    self.epochs[trial_dir.name.removeprefix(TRIAL_DIR_PREFIX)] = len(records)
        return self.epochs

    def spent(self) -> int:
        """Trial-epochs trained so far."""
        return sum(self._counts().values())

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        counts = self._counts()
        done = result.get("epochs_done")
        if done is not None:
            counts[trial_id] = max(counts.get(trial_id, 0), int(done))
        return False  # no trial is stopped for its own sake: stop_all ends the search

    def stop_all(self) -> bool:
        return self.spent() >= self.budget
