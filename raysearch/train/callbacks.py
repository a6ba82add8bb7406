"""Hooks through which the layers above the core watch a training run.

The core (``data``, ``samplers``, ``models``, ``evaluation``, ``train``) imports neither Ray nor MLflow.
Whatever reports a run elsewhere (MLflow's run logger, Ray's metrics, Ray Tune's reports) is a
``RunCallback`` handed to ``run_training`` by the caller that knows about it: ``raysearch.run`` for
``raysearch train``, ``raysearch.distributed`` for Ray Train workers, ``raysearch.tune`` for trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RunCallback:
    """No-op base: override what you need. Called on the main process only, except ``on_epoch`` when
    a callback is handed to every process (the caller decides)."""

    def on_epoch(self, record: dict[str, Any], sampler: Any) -> None:
        """After every epoch's validation and checkpoint; ``record`` is the epoch's ``metrics.jsonl`` line."""

    def on_finish(self, results: dict[str, Any], run_dir: Path) -> None:
        """After ``results.json`` is written."""

    def on_failure(self) -> None:
        """The run raised (the exception is re-raised after the callbacks)."""
