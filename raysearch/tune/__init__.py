"""``raysearch tune``: hyperparameter studies with Ray Tune + Optuna, tracked in MLflow, leak-free.

A study (``conf/search/NAME.yaml``) names one or more samplers, each with a search space over any config
keys (``sampler.*``, ``trainer.*``, ``model.*``), plus a space shared by all of them. For each sampler,
Ray Tune runs ``num_samples`` trials suggested by Optuna's TPE (seeded; ``constant_liar`` so that trials
running in parallel get different suggestions; the first ``startup_trials`` are TPE's random start-up)
behind a concurrency limit, and ASHA stops unpromising trials on the validation metric every trial
reports after each epoch of its output stage (ICPNS: fine-tuning; its pre-training is not reported, see
``TuneReportingContext``). Every sampler gets the same budget. Trials never touch the test split.

After the search, the best trial of each sampler (its best validation value) is re-trained on
``final_seeds`` seeds, and only these final runs evaluate the test split, once each: in MLflow they are
the runs tagged ``raysearch.selected=true``, the only ones with ``test/*`` metrics. The study writes
``summary.csv`` and ``summary.json`` and prints a table.

A sampler whose pipeline has a shared first stage (``Pipeline.shared_first_stage``; ICPNS's pre-training)
shares it across trials when every searched key leaves it unchanged (ICPNS: ``sampler.*`` keys only, as
stage 1 (random negatives) does not depend on the number of communities or the smoothing factor): it runs
once (``pretrain/``) and every trial fine-tunes from its best weights; the trial-epochs counted are then
the fine-tuning epochs plus the pre-training once.

An interrupted study (Ctrl-C, a lost machine) resumes with ``--resume DIR``: finished trials are kept,
unfinished ones continue from their last epoch checkpoint, and the Optuna state is restored.

Modules: ``space`` (study files, options, dimensions), ``trial`` (a Tune trial), ``callbacks`` (the
driver's MLflow logging, running-trials gauge), ``study`` (directory, searches, shared first stage, final
runs), ``selection`` (best trials, summary, significance).
"""

from raysearch.train.pipeline import icpns_pretraining_overrides as pretraining_overrides
from raysearch.tune.callbacks import TrialsRunning, mlflow_callback
from raysearch.tune.selection import format_summary
from raysearch.tune.space import METRIC_PREFIX, Dimension, SearchConfig, SearchOptions, Study, load_search
from raysearch.tune.study import load_study, run_study, start_study, tpe_startup_note
from raysearch.tune.trial import TuneReportingContext, effective_config, run_trial, trial_overrides

__all__ = [
    "METRIC_PREFIX", "Dimension", "SearchConfig", "SearchOptions", "Study", "TrialsRunning",
    "TuneReportingContext", "effective_config", "format_summary", "load_search", "load_study",
    "mlflow_callback", "pretraining_overrides", "run_study", "run_trial", "start_study", "tpe_startup_note",
    "trial_overrides",
]
