"""Training: the loop, the pipelines (single stage, ICPNS two-stage, GDNS analysis), run directories.

``raysearch.run.train`` is what ``raysearch train`` runs; the loop itself is ``train.pipeline.run_training``.
"""

from raysearch.train.rundir import RunDir

__all__ = ["RunDir"]
