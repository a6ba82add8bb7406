"""Validation and test evaluation of a model on a dataset, under the run's protocol.

Validation masks the user's train items (full ranking) or ranks against the validation negatives
(sampled); test masks train and validation items, or ranks against the test negatives. The protocol is
resolved once (``eval.protocol=auto`` means sampled exactly when the dataset ships sampled negatives)
and recorded in every result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from raysearch.config import EvalConfig
from raysearch.data.dataset import Dataset
from raysearch.errors import ConfigError, DataError
from raysearch.evaluation import EvalResult, evaluate_full, evaluate_sampled, metric_key, popularity_bands
from raysearch.models.base import Recommender
from raysearch.train.context import LocalContext, TrainingContext


def resolve_protocol(dataset: Dataset, cfg: EvalConfig) -> str:
    if cfg.protocol == "auto":
        return "sampled" if dataset.has_sampled_negatives else "full"
    if cfg.protocol == "sampled" and not dataset.has_sampled_negatives:
        raise ConfigError(f"eval.protocol: 'sampled' needs sampled negatives, which dataset {dataset.name!r} lacks "
                          "(use a leave-one-out dataset or dataset.num_negatives)")
    return cfg.protocol


def check_held_out(dataset: Dataset) -> None:
    """Training selects on validation and reports test: a dataset whose split left no user with
    validation (or test) items would run to the end with every metric NaN. One ``DataError`` saying so."""
    split = dataset.provenance.get("split") if isinstance(dataset.provenance, dict) else None
    name = str(split.get("split", "?")) if isinstance(split, dict) else "?"
    hints = {
        "ratio": "its share in dataset.ratios is too small",
        "temporal": "its share in dataset.ratios is too small, or its rows' users or items are not in train",
        "loo": "leave-one-out holds out users with at least 3 interactions only",
        "given": {"valid": "give a valid part or dataset.valid_share > 0", "test": "the test part is empty"},
    }
    for part, what, purpose in (("valid", "validation", "select on"), ("test", "test", "test")):
        if getattr(dataset, part).nnz:
            continue
        hint = hints.get(name, "")
        hint = hint.get(part, "") if isinstance(hint, dict) else hint
        raise DataError(f"dataset {dataset.name!r}: the {name} split leaves no user with {what} items, so "
                        f"there is nothing to {purpose}" + (f" ({hint})" if hint else ""))


class Evaluator:
    """Evaluates a model's validation or test metrics; each process evaluates its own users.

    A dataset without validation or test users is refused (``check_held_out``)."""

    def __init__(self, dataset: Dataset, cfg: EvalConfig, valid_metric: str,
                 context: TrainingContext | None = None):
        check_held_out(dataset)
        self.dataset = dataset
        self.cfg = cfg
        self.context = context or LocalContext()
        self.protocol = resolve_protocol(dataset, cfg)
        keys = {metric_key(m, k) for m in cfg.metrics for k in cfg.ks}
        if valid_metric not in keys:
            raise ConfigError(f"trainer.valid_metric: {valid_metric!r} is not computed "
                              f"(eval.metrics x eval.ks give: {', '.join(sorted(keys))})")
        self.valid_metric = valid_metric
        self.item_bands = popularity_bands(dataset.item_popularity, cfg.bands)
        self.users = self.context.my_users(dataset.n_users)

    def describe(self) -> dict[str, Any]:
        """The protocol as recorded with results."""
        return {
            "protocol": self.protocol,
            "ks": list(self.cfg.ks),
            "metrics": list(self.cfg.metrics),
            "tie": self.cfg.tie,
            "valid_metric": self.valid_metric,
            "masked_at_validation": ["train"] if self.protocol == "full" else [],
            "masked_at_test": ["train", "valid"] if self.protocol == "full" else [],
            "n_negatives": None if self.protocol == "full" else int(self.dataset.test_negatives.shape[1]),
            "popularity_bands": list(self.cfg.bands),
        }

    @torch.no_grad()
    def evaluate(self, model: Recommender, split: str) -> EvalResult:
        """``split`` is "valid" or "test". The model is put in eval mode and restored afterwards."""
        ds = self.dataset
        was_training = model.training
        model.eval()
        try:
            reps = model.propagate()  # once: every user batch is scored from these representations
            heldout = ds.valid if split == "valid" else ds.test
            if self.protocol == "full":
                exclude = {"train": ds.train} if split == "valid" else {"train": ds.train, "valid": ds.valid}
                result = evaluate_full(
                    lambda users: model.full_scores(users, reps),
                    heldout, exclude, self.cfg.ks, self.cfg.metrics, batch_users=self.cfg.batch_users,
                    users=self.users, item_bands=self.item_bands, tie=self.cfg.tie,
                )
            else:
                negatives = ds.valid_negatives if split == "valid" else ds.test_negatives
                device = reps.items.device

                def pair_scores(users, cand):
                    u = torch.as_tensor(np.asarray(users), device=device)
                    return model.score(u, torch.as_tensor(np.asarray(cand), device=device), reps)

                result = evaluate_sampled(pair_scores, heldout, negatives, self.cfg.ks, self.cfg.metrics,
                                          tie=self.cfg.tie, users=self.users, batch_users=self.cfg.batch_users,
                                          item_bands=self.item_bands)
        finally:
            model.train(was_training)
        return self.context.gather_eval(result)
