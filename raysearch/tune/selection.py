"""Selection and summary: the best trial of each search, the final runs' statistics, the printed table."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.config import build_run_config, resolve
from raysearch.errors import ConfigError
from raysearch.evaluation.significance import describe_verdict
from raysearch.train.rundir import RunDir, write_json_atomic
from raysearch.tune.space import METRIC_PREFIX, Dimension, Study


def _metric_key(study: Study) -> str:
    return METRIC_PREFIX + build_run_config(resolve(study.base)).trainer.valid_metric


def _best_trial(grid, metric: str, space: Mapping[str, Dimension], sampler: str, fixed: list[str]) -> dict:
    """The trial with the highest validation value it reached in its pipeline's output stage (read from
    each trial's own ``metrics.jsonl``, ASHA-stopped trials included) and the compute the search used
    (trial-epochs).

    Only the output stage counts: it holds the model a run returns. ICPNS's pre-training reports
    validation too (ASHA ranks trials on it while they pre-train), but its best epoch is an RNS model; a
    trial stopped before fine-tuning produced no ICPNS model and cannot be selected.
    """
    from raysearch.train.pipeline import pipeline_of

    name = metric.removeprefix(METRIC_PREFIX)
    stage = pipeline_of(sampler).output_stage
    best, trial_epochs, trials, errors = None, 0, [], []
    for result in grid:
        records = RunDir(Path(result.path) / "run", writable=False).read_metrics()
        values = [r["valid"][name] for r in records
                  if r.get("valid") and name in r["valid"] and r.get("stage") == stage]
        trial_epochs += len(records)
        if result.error is not None:
            errors.append(f"{Path(result.path).name}: {result.error}")
        # every trial is listed; one without a validation in the output stage has best None
        entry = {"params": {k: _plain(result.config[k]) for k in space},
                 "best": float(max(values)) if values else None, "epochs": len(records), "path": str(result.path)}
        trials.append(entry)
        if values and (best is None or entry["best"] > best["best"]):
            best = entry
    if best is None:
        detail = "; ".join(errors[:3]) or f"no trial reported a validation in its {stage!r} stage"
        raise ConfigError(f"search for {sampler!r}: no trial reached {metric!r} ({detail})")
    return {"sampler": sampler, "fixed": fixed, "best": best, "trials": trials, "trial_epochs": trial_epochs,
            "errors": errors}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, (np.integer, np.floating)) else value


def _summarise(study: Study, selections: dict, finals: list[dict]) -> dict:
    metric = _metric_key(study)
    rows = []
    for sampler, sel in selections.items():
        runs = [r["metrics"] for r in finals if r["sampler"] == sampler]
        row = {"sampler": sampler, "search_best_valid": sel["best"]["best"], "params": sel["best"]["params"],
               "trials": len(sel["trials"]), "trial_epochs": sel["trial_epochs"], "final_runs": len(runs)}
        for key in sorted({k for m in runs for k in m if k.startswith(("test/", METRIC_PREFIX))}):
            values = np.array([m[key] for m in runs if key in m], dtype=np.float64)
            row[f"{key} mean"] = float(values.mean())
            row[f"{key} std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        rows.append(row)
    summary = {"study": study.path.name, "metric": metric, "base": study.base,
               "mlflow": {"tracking_uri": study.tracking_uri, "experiment": study.experiment},
               "rows": rows, **_significance(finals, metric.removeprefix(METRIC_PREFIX)),
               "trials": {s: sel["trials"] for s, sel in selections.items()}}
    write_json_atomic(study.path / "summary.json", summary)
    keys = ["sampler", "search_best_valid", "params", "trials", "trial_epochs", "final_runs"]
    keys += sorted({k for r in rows for k in r} - set(keys))
    with (study.path / "summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    return summary


def _significance(finals: list[dict], metric: str) -> dict[str, Any]:
    """Paired tests over test users on the selection metric, each sampler's per-user values averaged over
    its final seeds: ``significance``, ICPNS and GDNS (when in the study) against the best other sampler;
    ``verdict``, the best sampler and which others are indistinguishable from it (Holm-adjusted)."""
    from raysearch.evaluation import PER_USER_FILE, load_per_user
    from raysearch.evaluation.significance import paper_samplers_against_best, verdict

    per_run: dict[str, list] = {}
    for run in finals:
        path = Path(run["path"]) / "run" / PER_USER_FILE
        if not path.exists():  # a run from before per-user values were kept
            return {"significance": [], "verdict": None}
        users, values = load_per_user(path)
        per_run.setdefault(run["sampler"], []).append((users, values[metric]))
    found = verdict(per_run, "test/" + metric)
    return {"significance": [test.to_dict() for test in paper_samplers_against_best(per_run, "test/" + metric)],
            "verdict": found.to_dict() if found is not None else None}


def format_summary(summary: dict) -> str:
    lines = [f"study {summary['study']}  (selection on {summary['metric']}; test on the selected runs only)"]
    for row in summary["rows"]:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in row["params"].items()) or "-"
        selection = "test/" + summary["metric"].removeprefix(METRIC_PREFIX)
        tests = sorted((k.removesuffix(" mean") for k in row if k.startswith("test/") and k.endswith(" mean")),
                       key=lambda k: (k != selection, not k.startswith(("test/recall", "test/ndcg")), k))
        several = row["final_runs"] > 1  # one final run has no standard deviation to show
        shown = "  ".join(f"{k} {row[k + ' mean']:.4f}" + (f"±{row[k + ' std']:.4f}" if several else "")
                          for k in tests[:4])
        lines.append(f"  {row['sampler']:<8} valid {row['search_best_valid']:.4f}  {params}")
        lines.append(f"  {'':<8} {row['final_runs']} final run(s): {shown}  "
                     f"({row['trials']} trials, {row['trial_epochs']} trial-epochs)")
    for test in summary.get("significance", []):
        lines.append(f"  {test['b']} vs {test['a']} (best other) on {test['metric']}: "
                     f"{test['mean_b']:.4f} vs {test['mean_a']:.4f}, diff {test['diff']:+.4f} "
                     f"(95% CI {test['ci95'][0]:+.4f} to {test['ci95'][1]:+.4f}), paired t p = {test['p_t']:.3g}, "
                     f"Wilcoxon p = {test['p_wilcoxon']:.3g}, {test['n_users']} users")
    if summary.get("verdict"):
        lines.append("  verdict: " + describe_verdict(summary["verdict"]))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else str(value)
