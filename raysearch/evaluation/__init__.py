"""Evaluation: metrics, the full-ranking and sampled protocols, popularity-band and per-group breakdowns."""

from raysearch.evaluation.breakdown import BAND_NAMES, group_means, popularity_bands
from raysearch.evaluation.full_ranking import evaluate_full
from raysearch.evaluation.metrics import DEFAULT_METRICS, METRICS, TIE_RULES, TargetPositions, metric_key
from raysearch.evaluation.result import PER_USER_FILE, EvalResult, load_per_user, save_per_user
from raysearch.evaluation.sampled import evaluate_sampled

__all__ = [
    "BAND_NAMES",
    "DEFAULT_METRICS",
    "METRICS",
    "PER_USER_FILE",
    "TIE_RULES",
    "EvalResult",
    "TargetPositions",
    "evaluate_full",
    "evaluate_sampled",
    "group_means",
    "load_per_user",
    "metric_key",
    "popularity_bands",
    "save_per_user",
]
