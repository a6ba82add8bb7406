"""Pipelines: what ``raysearch train`` runs for a sampler, from a dataset to one test evaluation.

Most samplers train in one stage. ICPNS runs two (pre-train with random negatives, cluster users on the
best pre-trained model, fine-tune with in-community popularity negatives and a fresh optimiser; beyond
the paper, ``sampler.recluster_every`` re-clusters during fine-tuning, ``raysearch.train.recluster``); GDNS
can add the false-negative analysis of its paper. Pipelines are registered by sampler name; each declares
the keys it reads from the ``sampler`` config group, the rest go to ``make_sampler``.

Whatever the pipeline, selection uses validation only and the selected model is evaluated on test once,
at the very end; the result records the protocol, dataset fingerprint, seed and code version.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raysearch.communities import cluster_users, community_summary, kmeans, soft_membership
from raysearch.config import RunConfig, from_mapping, require, to_plain, unknown_key_message
from raysearch.data.dataset import Dataset
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, RaysearchError, RunStateError
from raysearch.evaluation import PER_USER_FILE, save_per_user
from raysearch.evaluation.breakdown import group_means
from raysearch.evaluation.significance import probability_below
from raysearch.heap import keep_freed_memory
from raysearch.models import make_model
from raysearch.models.base import Recommender
from raysearch.registry import Registry
from raysearch.rng import make_rng
from raysearch.samplers import make_sampler
from raysearch.train.callbacks import RunCallback
from raysearch.train.checkpoint import load_checkpoint
from raysearch.train.context import TABLE_DRAWS, LocalContext, TableHosting, TrainingContext
from raysearch.train.evaluator import Evaluator
from raysearch.train.knowledge import SIDE_INFO, check_knowledge, side_params
from raysearch.train.recluster import Reclustering, ReclusterParams
from raysearch.train.rundir import RunDir, load_array, read_json
from raysearch.train.trainer import StageOutcome, StageSpec, Trainer, validate_loss
from raysearch.version import code_version


@dataclass
class PipelineRun:
    """What a pipeline produces before the test evaluation."""

    stages: list[StageOutcome]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class SharedFirstStage:
    """A first stage that a study may run once and share across trials (ICPNS's pre-training).

    ``overrides(base)``: the shared run's ``key=value`` overrides from the study's base overrides;
    ``source_key``: the key that points a trial at the shared run's directory; ``independent(key)``:
    whether a searched key leaves the shared stage unchanged (only then can a study share it).
    """

    overrides: Callable[[Sequence[str]], list[str]]
    source_key: str
    independent: Callable[[str], bool]


@dataclass(frozen=True)
class Pipeline:
    """A registered pipeline: its own config keys (a frozen dataclass), the function that runs it, and
    its output stage: the last stage it runs, whose best model on validation is the run's model (the one
    tested, and the one a search must rank trials by). ``output_epochs(cfg)``: the epoch budget of the
    output stage (a scheduler's ``max_t``). ``shared_first_stage``: set when a study may share stage 1."""

    Params: type
    run: Callable[..., PipelineRun]
    output_stage: str = "train"
    output_epochs: Callable[[RunConfig], int] = lambda cfg: cfg.trainer.epochs
    shared_first_stage: SharedFirstStage | None = None
    # check(cfg, dataset, params): what the pipeline can verify once the data is loaded and before the run
    # directory is written (e.g. ICPNS's pretrained_from source); raises a RaysearchError, returns anything
    check: Callable[[RunConfig, Dataset, Any], object] | None = None
    # sampler parameters the pipeline computes and passes itself (not keys of the sampler config group)
    supplies: frozenset[str] = frozenset()


PIPELINES: Registry[Pipeline] = Registry("pipeline")


def split_sampler_params(params: Mapping[str, Any], pipeline_params_cls: type) -> tuple[Any, dict[str, Any]]:
    """(pipeline params dataclass, remaining sampler params) from the ``sampler`` config group."""
    own = {f.name for f in dataclasses.fields(pipeline_params_cls)}
    mine = {k: v for k, v in params.items() if k in own}
    rest = {k: v for k, v in params.items() if k not in own}
    return from_mapping(pipeline_params_cls, mine, "sampler"), rest


# --------------------------------------------------------------------------- single stage
@dataclass(frozen=True)
class NoParams:
    pass


def run_single(trainer: Trainer, cfg: RunConfig, dataset: Dataset, params: NoParams,
               sampler_params: dict[str, Any]) -> PipelineRun:
    sampler = make_sampler(cfg.sampler.name, dataset.train, **sampler_params)
    outcome = trainer.fit(StageSpec("train", sampler, cfg.trainer.epochs, cfg.trainer.lr))
    return PipelineRun([outcome], {"sampler_params": _params_of(sampler)})


# --------------------------------------------------------------------------- ICPNS
# ICPNS's parameters the pipeline computes: the assignment and a soft membership's arrays
ICPNS_SUPPLIES = frozenset({"communities", "member_ids", "member_weights"})
MEMBERSHIPS = ("hard", "soft")  # ICPNS: a user draws from its community's table, or from a mixture of its nearest


@dataclass(frozen=True)
class IcpnsPipelineParams:
    """Keys of ``conf/sampler/icpns.yaml`` read by the pipeline (``alpha`` etc. go to the sampler)."""

    n_communities: int = 8
    pretrain: bool = True  # false: communities from the initial model (ablation "no pre-training")
    pretrain_epochs: int | None = None  # None: trainer.epochs
    finetune_epochs: int | None = None  # None: trainer.epochs
    finetune_lr: float | None = None  # None: trainer.lr
    finetune_patience: int | None = None  # None: trainer.patience
    cluster_seed: int | None = None  # None: trainer.seed
    pretrained_from: str | None = None  # a finished one-process RNS run directory to fine-tune from
    # On Ray Train workers: actors hosting the community tables (one a group of communities); 0 = every
    # worker builds its own tables. Ignored by one-process runs.
    table_actors: int = 1
    table_draws: str = "local"  # "local": workers draw from the shared tables; "remote": the actors draw
    # Beyond the paper: re-cluster the users on the current model every this many fine-tuning epochs and
    # draw from the new communities' tables (0: clustered once, frozen; see raysearch/train/recluster.py)
    recluster_every: int = 0
    recluster_warm_start: bool = True  # k-means from the previous centroids (ids stay comparable)
    # Beyond the paper: "soft" draws a user's negatives from a mixture of the tables of its top_communities
    # nearest centroids, weighted by a softmax over the negative distances / membership_temperature
    membership: str = "hard"
    top_communities: int = 2
    membership_temperature: float = 1.0

    def __post_init__(self) -> None:
        require(self.n_communities >= 1, "sampler.n_communities", "must be >= 1")
        require(self.recluster_every >= 0, "sampler.recluster_every",
                f"must be >= 0 (0: communities frozen), got {self.recluster_every}")
        require(self.membership in MEMBERSHIPS, "sampler.membership",
                f"must be one of {', '.join(MEMBERSHIPS)}, got {self.membership!r}")
        require(self.top_communities >= 1, "sampler.top_communities", f"must be >= 1, got {self.top_communities}")
        require(self.membership != "soft" or self.top_communities <= self.n_communities, "sampler.top_communities",
                f"must be <= sampler.n_communities ({self.n_communities}), got {self.top_communities}")
        require(math.isfinite(self.membership_temperature) and self.membership_temperature > 0,
                "sampler.membership_temperature", f"must be > 0, got {self.membership_temperature}")
        require(self.membership != "soft" or self.table_draws == "local", "sampler.table_draws",
                "remote draws serve hard communities only (sampler.membership=soft draws locally)")
        require(self.table_actors >= 0, "sampler.table_actors", f"must be >= 0, got {self.table_actors}")
        require(self.table_draws in TABLE_DRAWS, "sampler.table_draws",
                f"must be one of {', '.join(TABLE_DRAWS)}, got {self.table_draws!r}")
        require(self.pretrain_epochs is None or self.pretrain_epochs >= 0, "sampler.pretrain_epochs", "must be >= 0")
        require(self.finetune_epochs is None or self.finetune_epochs >= 0, "sampler.finetune_epochs", "must be >= 0")
        require(self.finetune_lr is None or self.finetune_lr > 0, "sampler.finetune_lr", "must be > 0")
        require(self.finetune_patience is None or self.finetune_patience >= 1, "sampler.finetune_patience",
                "must be >= 1")


def run_icpns(trainer: Trainer, cfg: RunConfig, dataset: Dataset, params: IcpnsPipelineParams,
              sampler_params: dict[str, Any]) -> PipelineRun:
    t = cfg.trainer
    stages: list[StageOutcome] = []
    extra: dict[str, Any] = {}
    if params.pretrained_from:
        # Stage 1 was run once elsewhere (a study shares it across trials): start from its best weights.
        weights = check_icpns(cfg, dataset, params, trainer.device)
        try:
            trainer.model.load_state_dict(weights)
        except RuntimeError as err:
            raise RunStateError(f"the model state does not fit this run ({' '.join(str(err).split())[:200]})",
                                where=str(pretrained_weights(params.pretrained_from))) from None
        extra["pretrained_from"] = str(Path(params.pretrained_from).resolve())
    elif params.pretrain:
        rns = make_sampler("rns", dataset.train)
        stages.append(trainer.fit(StageSpec("pretrain", rns, _or(params.pretrain_epochs, t.epochs), t.lr)))
    run_dir = trainer.run_dir
    path = run_dir.path / "communities.npy"
    seed = _or(params.cluster_seed, t.seed)
    adaptive, soft = params.recluster_every > 0, params.membership == "soft"
    membership = None
    if adaptive or soft:
        communities, centroids = initial_communities(trainer, params.n_communities, seed)
        if soft:
            membership = initial_membership(trainer, centroids, params)
            sampler_params = {**sampler_params, "member_ids": membership[0], "member_weights": membership[1]}
    elif path.exists():  # resumed: the assignment is frozen once computed
        communities = load_array(path)
    else:
        communities = cluster_users(trainer.model.user_representations(), params.n_communities, seed)
        communities = np.asarray(trainer.context.broadcast_object(communities))
        if trainer.context.is_main:
            np.save(path, communities)
    summary = community_summary(dataset.train, communities)
    if soft:
        summary["membership"] = membership_summary(membership)
    run_dir.write_json("communities.json", summary)
    # On Ray workers the context may host the tables (actors, object store) instead of building them here.
    sampler = trainer.context.build_sampler("icpns", dataset.train, {**sampler_params, "communities": communities},
                                            TableHosting(params.table_actors, params.table_draws))
    if adaptive:
        sampler = Reclustering(sampler, trainer.model, trainer.context,
                               ReclusterParams(params.recluster_every, params.recluster_warm_start, seed,
                                               params.top_communities if soft else None,
                                               params.membership_temperature),
                               communities, centroids, membership)
        if trainer.context.is_main:  # communities.json follows the refreshes (an interrupted run's file too)
            sampler.on_refresh.append(
                lambda record: run_dir.write_json("communities.json", reclustered_summary(dataset.train, sampler)))
    lr = _or(params.finetune_lr, t.lr)
    finished = (run_dir.stage_dir("finetune") / "done.json").exists()
    # A fresh optimiser: Trainer.fit builds one per stage (the official code re-creates Adam).
    stages.append(trainer.fit(StageSpec("finetune", sampler, _or(params.finetune_epochs, t.epochs), lr,
                                        params.finetune_patience)))
    if adaptive:
        if finished:  # resumed after fine-tuning ended: the refreshes after the best epoch are in the last state
            sampler.history = finished_history(trainer)
        # The selected epoch's assignment (the best checkpoint's state) is the run's: summary and breakdowns.
        communities = sampler.communities
        summary = reclustered_summary(dataset.train, sampler)
        run_dir.write_json("communities.json", summary)
    if hasattr(sampler, "table_stats") and trainer.context.is_main:  # hosted tables: the actors' figures
        extra["table_actors"] = sampler.table_stats()
    params_of = {k: v for k, v in _params_of(sampler).items() if k not in ICPNS_SUPPLIES}
    return PipelineRun(stages, {**extra, "communities": summary, "sampler_params": params_of,
                                "community_assignment": communities})


def initial_communities(trainer: Trainer, n_communities: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 (n_users,) assignment, float64 (K, d') centroids) that fine-tuning starts from when it
    re-clusters: k-means on the pre-trained user representations (the frozen run's assignment, the same
    call), computed on the main process and broadcast; saved (``communities.npy``, ``centroids.npy``) so
    that a resumed run reads them back."""
    paths = (trainer.run_dir.path / "communities.npy", trainer.run_dir.path / "centroids.npy")
    if all(p.exists() for p in paths):
        return load_array(paths[0]), load_array(paths[1])
    reps = trainer.model.user_representations()  # every process: sharded tables gather collectively
    found = kmeans(reps, n_communities, seed) if trainer.context.is_main else None
    communities, centroids = trainer.context.broadcast_object(found)
    if trainer.context.is_main:
        np.save(paths[1], centroids)
        np.save(paths[0], communities)
    return np.asarray(communities), np.asarray(centroids)


def initial_membership(trainer: Trainer, centroids: np.ndarray, params: IcpnsPipelineParams
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Soft membership of the pre-trained users (``communities.soft_membership`` with ``centroids``),
    computed on the main process from the representations every process gathers, and broadcast."""
    reps = trainer.model.user_representations()  # every process: sharded tables gather collectively
    found = None
    if trainer.context.is_main:
        found = soft_membership(reps, centroids, params.top_communities, params.membership_temperature)
    return trainer.context.broadcast_object(found)


def membership_summary(membership: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Soft membership at a glance: the mixture size, the mean weight of each rank (nearest first) and
    the users whose nearest community holds more than 90% of their weight."""
    ids, weights = membership
    return {"top_communities": int(ids.shape[1]), "mean_weights": weights.mean(axis=0).tolist(),
            "users_mostly_nearest": int(np.count_nonzero(weights[:, 0] > 0.9))}


def reclustered_summary(train: Interactions, sampler: Reclustering) -> dict[str, Any]:
    """``communities.json`` of a run that re-clusters: ``community_summary`` of the sampler's current
    assignment (at the end of the run, the selected epoch's) and its ``version``, then ``versions``, one
    record a version (0: the pre-trained clustering; then each refresh: the fine-tuning epoch it is drawn
    from on, sizes, users that changed community, adjusted Rand index, seconds of clustering and of tables,
    the table version each process drew from), and the refreshes' seconds in all."""
    seconds = sum((r.get("cluster_seconds") or 0.0) + (r.get("table_seconds") or 0.0) for r in sampler.history)
    soft = {} if sampler.membership is None else {"membership": membership_summary(sampler.membership)}
    return {**community_summary(train, sampler.communities), **soft, "version": sampler.version,
            "versions": sampler.history, "refresh_seconds": seconds}


def finished_history(trainer: Trainer) -> list[dict[str, Any]]:
    """The refresh records in the fine-tuning stage's last checkpoint (every version of the stage)."""
    last = trainer.run_dir.stage_dir("finetune") / trainer.context.checkpoint_name("last")
    state = load_checkpoint(last, trainer.device, keys=("sampler",))["sampler"]
    try:
        return [dict(r) for r in state["history"]]
    except (KeyError, TypeError, ValueError):
        raise RunStateError("not a re-clustering ICPNS checkpoint (no refresh records)", where=str(last)) from None


def pretrained_weights(source: str | Path) -> Path:
    """The checkpoint ``sampler.pretrained_from`` fine-tunes from: the source run's best RNS weights."""
    return Path(source) / "stages" / "train" / "best.pt"


def check_icpns(cfg: RunConfig, dataset: Dataset, params: IcpnsPipelineParams,
                device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """ICPNS's checks once the data is loaded: a ``pretrained_from`` source must be a finished RNS run
    of this backbone and split whose best weights load safely; returns those weights (None without one)."""
    if not params.pretrained_from:
        return None
    from raysearch.models import MODELS

    source = pretrained_weights(params.pretrained_from)
    if not source.exists():
        raise ConfigError(f"sampler.pretrained_from: {source} does not exist (expected a finished "
                          "one-process run of sampler=rns)")
    model_params = from_mapping(MODELS.get(cfg.model.name).Params, cfg.model.params, "model")
    check_pretraining_source(Path(params.pretrained_from), dataset, model_params, cfg.model.name)
    return load_checkpoint(source, device, keys=("model",))["model"]


def check_pretraining_source(source: Path, dataset: Dataset, model_params: Any, model_name: str) -> None:
    """Stop unless ``source`` (``sampler.pretrained_from``) is a finished RNS run of this backbone, with
    these model parameters (``model_params``: the model's ``Params``), on this very dataset and split (same
    fingerprint): weights of the same shape trained on another split would load silently and leak its
    held-out items into this run's model. A ``results.json`` that is not a run's is one line naming it."""
    results_path = source / "results.json"
    if not results_path.exists():
        raise ConfigError(f"sampler.pretrained_from: {source} has no results.json (not a finished run)")
    done = read_json(results_path)

    def entry(group: str, key: str) -> Any:
        value = done.get(group)
        if not isinstance(value, dict) or key not in value:
            raise RunStateError(f"not a raysearch run's results (no {group}.{key}), named by sampler.pretrained_from",
                                where=str(results_path))
        return value[key]

    want = {"sampler": "rns", "dataset fingerprint": dataset.fingerprint, "model": model_name,
            "model parameters": to_plain(model_params)}
    have = {"sampler": entry("sampler", "name"), "dataset fingerprint": entry("dataset", "fingerprint"),
            "model": entry("model", "name"), "model parameters": entry("model", "params")}
    if have["model"] == model_name and isinstance(have["model parameters"], dict):
        # a key added since the source ran (model.init) has the default it ran with
        try:
            have["model parameters"] = to_plain(from_mapping(type(model_params), have["model parameters"], "model"))
        except ConfigError:
            pass  # not this code's parameters: reported as a mismatch below
    for key, value in want.items():
        if have[key] != value:
            raise ConfigError(f"sampler.pretrained_from: {source} ran with {key} {have[key]!r}, this run has "
                              f"{value!r}")


# --------------------------------------------------------------------------- GDNS
@dataclass(frozen=True)
class GdnsPipelineParams:
    false_negative_analysis: bool = False  # the GDNS paper's section 4.6 (see run_gdns)


def run_gdns(trainer: Trainer, cfg: RunConfig, dataset: Dataset, params: GdnsPipelineParams,
             sampler_params: dict[str, Any]) -> PipelineRun:
    """Plain GDNS training, or the false-negative analysis.

    Analysis: one training positive of every user with at least two is taken out of train and pinned
    into the user's GDNS candidate pool as a known false negative; after every epoch the H and G of
    pinned entries and of ordinary seen candidates are summarised (quantiles and histograms), so that a
    user can check that G separates them (the paper finds lower G for false negatives).
    """
    if not params.false_negative_analysis:
        return run_single(trainer, cfg, dataset, NoParams(), sampler_params)
    fn_users, fn_items, reduced = hold_out_false_negatives(dataset.train, make_rng(cfg.trainer.seed, "false-negatives"))
    trainer.dataset = dataclasses.replace(dataset, train=reduced)
    sampler = make_sampler("gdns", reduced, **sampler_params)
    sampler.pin(fn_users, fn_items)
    history: list[dict[str, Any]] = []
    trainer.epoch_callbacks.append(
        lambda record, s: history.append({"epoch": record["epoch"], "steering": record.get("sampler_stats"),
                                          **false_negative_stats(s)}))
    outcome = trainer.fit(StageSpec("train", sampler, cfg.trainer.epochs, cfg.trainer.lr))
    trainer.dataset = dataset
    analysis = {"n_false_negatives": int(fn_users.size), "per_epoch": history,
                "final": false_negative_stats(sampler, histogram_bins=20)}
    trainer.run_dir.write_json("false_negatives.json", analysis)
    return PipelineRun([outcome], {"false_negative_analysis": analysis, "sampler_params": _params_of(sampler)})


def hold_out_false_negatives(train: Interactions, rng: np.random.Generator
                             ) -> tuple[np.ndarray, np.ndarray, Interactions]:
    """One random train positive per user with >= 2: (users, items, train without them)."""
    users, items = train.pairs()
    eligible = train.user_counts()[users] >= 2
    keys = rng.random(users.size)
    keys[~eligible] = np.inf
    order = np.lexsort((keys, users))
    first = np.ones(order.size, dtype=bool)
    first[1:] = users[order][1:] != users[order][:-1]
    chosen = order[first & eligible[order]]
    keep = np.ones(users.size, dtype=bool)
    keep[chosen] = False
    reduced = Interactions.from_pairs(users[keep], items[keep], train.n_users, train.n_items)
    return users[chosen], items[chosen], reduced


def false_negative_stats(sampler: Any, histogram_bins: int | None = None) -> dict[str, Any]:
    """Quantiles (and optionally histograms on [0, 1]) of H and G for pinned vs other seen pool entries,
    and how well each separates them: ``separation`` holds P(H_fn > H_tn) and P(G_fn < G_tn) for a random
    false negative against a random true negative (0.5: no separation; the paper's finding is that both
    exceed 0.5: false negatives keep a high score gap H and gain little, so a low G keeps them out)."""
    state = sampler.pool_state()
    seen = np.asarray(state["seen"], dtype=bool)
    pinned = np.asarray(state["pinned"], dtype=bool) & seen
    others = seen & ~np.asarray(state["pinned"], dtype=bool)
    out: dict[str, Any] = {}
    for key, values in (("H", state["H_prev"]), ("G", state["G"])):
        values = np.asarray(values, dtype=np.float64)
        for label, mask in (("false_negatives", pinned), ("true_negatives", others)):
            v = values[mask]
            entry: dict[str, Any] = {"n": int(v.size)}
            if v.size:
                q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])
                entry.update(mean=float(v.mean()), quantiles=dict(zip(["q10", "q25", "q50", "q75", "q90"],
                                                                      map(float, q), strict=True)))
                if histogram_bins:
                    counts, edges = np.histogram(v, bins=histogram_bins, range=(0.0, 1.0))
                    entry["histogram"] = {"counts": counts.tolist(), "edges": edges.tolist()}
            out[f"{key}_{label}"] = entry
        fn, tn = values[pinned], values[others]
        out.setdefault("separation", {})[f"P({key}_fn {'>' if key == 'H' else '<'} {key}_tn)"] = (
            1.0 - probability_below(fn, tn) if key == "H" else probability_below(fn, tn))
    return out


def icpns_pretraining_overrides(base: Sequence[str]) -> list[str]:
    """The overrides of ICPNS's stage 1 run on its own: ``base`` with RNS as the sampler and the ICPNS
    pipeline's ``sampler.pretrain_epochs`` (when set) as ``trainer.epochs``; the other ``sampler.*`` keys
    belong to ICPNS and are dropped."""
    out, epochs = [], None
    for text in base:
        key, _, value = text.partition("=")
        key = key.lstrip("+")
        if key == "sampler.pretrain_epochs":
            epochs = value
        elif key != "sampler" and not key.startswith("sampler."):
            out.append(text)
    out.append("sampler=rns")
    if epochs not in (None, "", "null", "None"):
        out.append(f"trainer.epochs={epochs}")
    return out


def icpns_finetune_epochs(cfg: RunConfig) -> int:
    return cfg.sampler.params.get("finetune_epochs") or cfg.trainer.epochs


PIPELINES.register("default")(Pipeline(NoParams, run_single))
PIPELINES.register("icpns")(Pipeline(
    IcpnsPipelineParams, run_icpns, output_stage="finetune", output_epochs=icpns_finetune_epochs,
    check=check_icpns,
    supplies=ICPNS_SUPPLIES,
    shared_first_stage=SharedFirstStage(
        overrides=icpns_pretraining_overrides, source_key="sampler.pretrained_from",
        # stage 1 (RNS) reads no ICPNS key but these two
        independent=lambda key: key.startswith("sampler.") and key not in ("sampler.pretrain",
                                                                           "sampler.pretrain_epochs")),
))
PIPELINES.register("gdns")(Pipeline(GdnsPipelineParams, run_gdns))


# --------------------------------------------------------------------------- knowledge-enhanced samplers
def run_knowledge(trainer: Trainer, cfg: RunConfig, dataset: Dataset, params: NoParams,
                  sampler_params: dict[str, Any]) -> PipelineRun:
    """``attribute`` and ``social``: one stage, the dataset's side information supplied (train/knowledge.py)."""
    return run_single(trainer, cfg, dataset, params, {**sampler_params, **side_params(cfg.sampler.name, dataset)})


for _name, (_key, *_) in SIDE_INFO.items():
    PIPELINES.register(_name)(Pipeline(NoParams, run_knowledge, check=check_knowledge, supplies=frozenset({_key})))


# --------------------------------------------------------------------------- the run
def pipeline_of(sampler: str) -> Pipeline:
    """The pipeline ``raysearch train`` runs for ``sampler``: its own, or the single-stage default."""
    return PIPELINES.get(sampler) if sampler in PIPELINES else PIPELINES.get("default")


def validate_components(cfg: RunConfig) -> None:
    """Check model, sampler and pipeline parameters up front (before any directory or data is touched)."""
    from raysearch.models import MODELS
    from raysearch.samplers import SAMPLERS

    model_cls = MODELS.get(cfg.model.name)
    from_mapping(model_cls.Params, cfg.model.params, "model")
    from raysearch.train.optimisers import check_row_sparse

    check_row_sparse(cfg.trainer.optimizer, model_cls)
    if cfg.trainer.workers > 1 and model_cls.unshardable:
        raise ConfigError(f"trainer.workers: model {cfg.model.name!r} runs in one process only: "
                          f"{model_cls.unshardable}")
    pipeline = pipeline_of(cfg.sampler.name)
    sampler_cls = SAMPLERS.get(cfg.sampler.name)
    known = sampler_config_keys(cfg.sampler.name)
    for key in cfg.sampler.params:
        if key not in known:
            raise ConfigError(unknown_key_message(f"sampler.{key}", known))
    _, sampler_params = split_sampler_params(cfg.sampler.params, pipeline.Params)
    sampler_cls.validate_params(sampler_params)
    validate_loss(cfg.trainer, sampler_cls)
    if sampler_cls.synthesises and model_cls.layer_pool is None:
        mixable = ", ".join(n for n in MODELS.names() if MODELS.get(n).layer_pool is not None)
        raise ConfigError(f"sampler: {cfg.sampler.name} mixes per-layer item representations, which model "
                          f"{cfg.model.name!r} does not have (it runs on {mixable})")


def sampler_config_keys(sampler: str) -> list[str]:
    """The keys of the ``sampler`` config group for ``sampler``: its pipeline's own (``Pipeline.Params``)
    and the sampler's parameters (``Sampler.Params``) but those the pipeline supplies itself."""
    from raysearch.samplers import SAMPLERS

    pipeline = pipeline_of(sampler)
    keys = [f.name for f in dataclasses.fields(pipeline.Params)]
    keys += [f.name for f in dataclasses.fields(SAMPLERS.get(sampler).Params)
             if f.name not in pipeline.supplies and f.name not in keys]
    return keys


def check_device(cfg: RunConfig) -> None:
    """``trainer.device=cuda`` needs a CUDA device that torch sees."""
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device: cuda was asked for but torch sees no CUDA device")


def check_run(cfg: RunConfig, dataset: Dataset) -> None:
    """What can be checked once the data is loaded, before a run directory is written: the device, the
    evaluation protocol and selection metric, users with validation and test items (``Evaluator``), and
    the pipeline's own check (ICPNS: its ``pretrained_from`` source). Raises a ``RaysearchError``."""
    check_device(cfg)
    Evaluator(dataset, cfg.eval, cfg.trainer.valid_metric)
    pipeline = pipeline_of(cfg.sampler.name)
    if pipeline.check is not None:
        params, _ = split_sampler_params(cfg.sampler.params, pipeline.Params)
        pipeline.check(cfg, dataset, params)


def configure_threads(threads: int, shared_by: int = 1) -> int:
    """Set torch's intra-op threads explicitly (``0``: an even share of the CPUs this process may use
    among the ``shared_by`` runs sharing them, at least 1)."""
    n = threads or max(1, len(os.sched_getaffinity(0)) // shared_by)
    torch.set_num_threads(n)
    return n


BUSY_LOAD = 1.0  # a 1-minute load average of at least one CPU's worth of runnable work: others are busy


def busy_cpus_warning(threads: int, shared_by: int, load: float | None = None) -> str | None:
    """One line when ``trainer.threads=0`` would take every CPU (``shared_by`` 1) while the 1-minute load
    average (``load``, else the machine's) shows other busy processes: runs that each take every CPU
    oversubscribe them (two on 2 cores ran up to 23x slower per epoch than with one thread each)."""
    cpus = len(os.sched_getaffinity(0))
    if threads or shared_by > 1 or cpus < 2:
        return None
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            return None
    if load < BUSY_LOAD:
        return None
    return (f"trainer.threads=0 takes all {cpus} CPUs, but the load average ({load:.1f}) shows other busy "
            f"processes; if other runs share this machine, set trainer.shared_by=<runs> or trainer.threads=<n>")


def build_model(cfg: RunConfig, dataset: Dataset, tables=None) -> Recommender:
    torch.manual_seed(int(make_rng(cfg.trainer.seed, "init").integers(2**62)))
    model = make_model(cfg.model.name, dataset.n_users, dataset.n_items, dataset.train, tables=tables,
                       **cfg.model.params)
    return model.to(cfg.trainer.device)


def run_training(cfg: RunConfig, dataset: Dataset, run_dir: RunDir, context: TrainingContext | None = None,
                 tables=None, threads: int | None = None, evaluate_test: bool = True,
                 callbacks: Sequence[RunCallback] = ()) -> dict[str, Any]:
    """Train with the sampler's pipeline, evaluate the selected model on test once, return the results.

    ``context``/``tables``: a distributed worker's context and sharded tables (default: one process).
    ``evaluate_test=False``: a search trial; the test split is not touched (selection happens later, on
    validation, and the selected configuration alone is tested). ``callbacks``: what the caller attaches
    (MLflow, Ray metrics): each sees every epoch's record, then the results or the failure.
    """
    context = context or LocalContext()
    started = time.perf_counter()
    threads = configure_threads(threads if threads is not None else cfg.trainer.threads, cfg.trainer.shared_by)
    if cfg.trainer.keep_freed_memory:
        keep_freed_memory()  # after the data is loaded: its temporaries still go back to the system
    check_device(cfg)
    pipeline = pipeline_of(cfg.sampler.name)
    pipeline_params, sampler_params = split_sampler_params(cfg.sampler.params, pipeline.Params)
    model = build_model(cfg, dataset, tables)
    evaluator = Evaluator(dataset, cfg.eval, cfg.trainer.valid_metric, context)
    trainer = Trainer(model, dataset, cfg.trainer, evaluator, run_dir, context)
    for callback in callbacks:
        trainer.epoch_callbacks.append(callback.on_epoch)
    try:
        produced = pipeline.run(trainer, cfg, dataset, pipeline_params, sampler_params)
    except BaseException:
        for callback in callbacks:
            callback.on_failure()
        raise

    selected = produced.stages[-1]
    if selected.stage != pipeline.output_stage:
        raise RaysearchError(f"pipeline of {cfg.sampler.name!r} ended with stage {selected.stage!r}, "
                             f"not its output stage {pipeline.output_stage!r}")
    # The one and only test evaluation of this run (none at all for a search trial).
    test = evaluator.evaluate(model, "test") if evaluate_test else None
    assignment = produced.extra.pop("community_assignment", None)
    if test is not None and assignment is not None:  # per-community test metrics (the report's breakdown)
        produced.extra["test_by_community"] = {str(c): v for c, v in group_means(test, assignment).items()}
    epoch_seconds = [s for st in produced.stages for s in st.epoch_seconds]
    sampling = sum(sum(st.sampling_seconds) for st in produced.stages)
    steps = sum(sum(st.step_seconds) for st in produced.stages)
    results = {
        "raysearch_version": code_version(),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_users": dataset.n_users,
                    "n_items": dataset.n_items, "provenance": dataset.provenance},
        "model": {"name": cfg.model.name, "params": to_plain(model.params)},
        "sampler": {"name": cfg.sampler.name, "params": produced.extra.pop("sampler_params", {}),
                    "pipeline": to_plain(pipeline_params)},
        "trainer": to_plain(cfg.trainer),
        "seed": cfg.trainer.seed,
        "protocol": evaluator.describe(),
        "stages": {st.stage: st.to_dict() for st in produced.stages},
        "selected": {"stage": selected.stage, "epoch": selected.best_epoch},
        "valid": selected.best_valid,
        "test": test.means if test is not None else {},
        "test_evaluated_once": test is not None,
        "test_bands": test.band_means if test is not None else {},
        "timings": {
            "total_seconds": time.perf_counter() - started,
            "epoch_seconds_mean": float(np.mean(epoch_seconds)) if epoch_seconds else None,
            "sampling_share": sampling / steps if steps else None,
            "threads": threads,
            "workers": context.world_size,
        },
        **produced.extra,
        "run_dir": str(run_dir.path),
    }
    if context.is_main:
        if test is not None:  # per-user test values: the paired significance tests between samplers
            save_per_user(test, run_dir.path / PER_USER_FILE)
        run_dir.write_json("results.json", results)
        for callback in callbacks:
            callback.on_finish(results, run_dir.path)
    return results


def _or(value, default):
    return default if value is None else value


def _params_of(sampler: Any) -> dict[str, Any]:
    """The sampler's resolved parameters for results, without per-user arrays (ICPNS's communities)."""
    params = getattr(sampler, "params", None)
    if params is None or not dataclasses.is_dataclass(params):
        return {}
    return {k: v for k, v in to_plain(params).items() if not isinstance(v, (list, np.ndarray))}
