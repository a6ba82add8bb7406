"""The training loop of one stage: epochs of (user, positive, negatives) steps, validation, early
stopping, checkpoints. The same code runs in one process and inside each Ray Train worker (the
``TrainingContext`` says which users are this process's and how to gather evaluation).

Randomness: epoch ``e`` of stage ``s`` draws its shuffling and negatives from the stream
``(seed, s, "epoch", e, rank)`` and seeds torch's generator (dropout) from ``(seed, s, "torch", e)``, so
a run resumed from the checkpoint of epoch ``e - 1`` repeats exactly what an uninterrupted run does. With
``trainer.epoch_draws`` a static sampler's negatives come instead from streams keyed by the global row
(``(seed, s, "epoch-draws", e, chunk)``, raysearch/train/epoch_draws.py): the same on any number of workers.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from raysearch.batch import Batch
from raysearch.config import TrainerConfig
from raysearch.data.dataset import Dataset
from raysearch.errors import ConfigError, RaysearchError, RunStateError
from raysearch.losses import LOSSES, Loss, LossSettings
from raysearch.models.base import Recommender
from raysearch.rng import make_rng, torch_seed
from raysearch.samplers.base import SAMPLERS, require_log_q
from raysearch.train.batches import pair_batch_indices, pair_batches, pair_rows, user_batches
from raysearch.train.checkpoint import load_checkpoint, save_checkpoint
from raysearch.train.context import LocalContext, TrainingContext
from raysearch.train.epoch_draws import DrawPlan, draw_epoch, plan_draws
from raysearch.train.evaluator import Evaluator
from raysearch.train.optimisers import make_optimiser
from raysearch.train.rundir import CHECKPOINT_KEYS, RunDir, read_json, write_json_atomic

# The trainer's own bookkeeping saved with every checkpoint (plain scalars, lists and dicts).
TRAINER_STATE_KEYS = ("best_metric", "best_epoch", "best_valid", "bad_evals", "epoch_seconds",
                      "sampling_seconds", "step_seconds", "draws")


class InjectedFailure(RuntimeError):
    """Raised once by ``trainer.fail_after_epoch`` to exercise resume and fault tolerance."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline: its name (checkpoint folder), sampler, epoch budget and learning rate."""

    name: str
    sampler: Any
    epochs: int
    lr: float
    patience: int | None = None  # None: trainer.patience


@dataclass
class StageOutcome:
    """What a finished stage hands on: the best validation epoch and metrics, timings, history."""

    stage: str
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    stopped_early: bool
    epoch_seconds: list[float] = field(default_factory=list)
    sampling_seconds: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    draws: int = 0
    memory: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        sampling, steps = sum(self.sampling_seconds), sum(self.step_seconds)
        extra = {"memory_per_process": self.memory} if self.memory else {}
        return {
            "stage": self.stage,
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "epoch_seconds_mean": float(np.mean(self.epoch_seconds)) if self.epoch_seconds else None,
            "sampling_seconds_total": sampling,
            "step_seconds_total": steps,
            "sampling_share": sampling / steps if steps else None,
            "draws": self.draws,
            "draws_per_second": self.draws / sampling if sampling else None,
            **extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageOutcome:
        return cls(stage=d["stage"], best_epoch=d["best_epoch"], best_valid=d["best_valid"],
                   epochs_run=d["epochs_run"], stopped_early=d["stopped_early"],
                   epoch_seconds=d.get("epoch_seconds", []), sampling_seconds=d.get("sampling_seconds", []),
                   step_seconds=d.get("step_seconds", []), draws=d.get("draws", 0),
                   memory=d.get("memory_per_process", {}))


@dataclass(frozen=True)
class StepOutcome:
    """One training step: its (user, positive) rows (users, group-wise), negatives drawn, seconds spent
    drawing them, the loss (a detached scalar tensor) and its parts by name ("ranking" and the model's and
    sampler's own terms; detached scalars)."""

    rows: int
    draws: int
    sampling_seconds: float
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


def resolve_loss(cfg: TrainerConfig, sampler: Any) -> str:
    """``auto``: a sampler that builds negative groups (GDNS) trains group-wise, everything else with BPR."""
    if cfg.loss == "auto":
        return "group_hinge" if hasattr(sampler, "sample_groups") else "bpr"
    return cfg.loss


def validate_loss(cfg: TrainerConfig, sampler_cls: type) -> Loss:
    """Check ``trainer.loss``, ``trainer.logq_correction`` and ``trainer.epoch_draws`` against the sampler
    (a class or instance) before anything runs; returns the loss. Each problem is one ``ConfigError``
    naming the key."""
    name = resolve_loss(cfg, sampler_cls)
    if name not in LOSSES:
        raise ConfigError(f"trainer.loss: unknown loss {name!r} (known: auto, {', '.join(LOSSES.names())})")
    loss = LOSSES.get(name)
    sampler_name = getattr(sampler_cls, "name", "?")
    if loss.group_wise and not hasattr(sampler_cls, "sample_groups"):
        raise ConfigError(f"trainer.loss: {name} needs a sampler that builds negative groups (gdns), "
                          f"not {sampler_name!r}")
    if cfg.logq_correction:
        if not loss.corrects_log_q:
            correcting = [n for n in LOSSES.names() if LOSSES.get(n).corrects_log_q]
            raise ConfigError(f"trainer.logq_correction: applies to trainer.loss={' or '.join(correcting)}, "
                              f"not {name}")
        require_log_q(sampler_cls if isinstance(sampler_cls, type) else type(sampler_cls))
    if cfg.epoch_draws:
        why = epoch_draws_refusal(sampler_cls, name)
        if why:
            able = [n for n in SAMPLERS.names() if SAMPLERS.get(n).batch_independent]
            raise ConfigError(f"trainer.epoch_draws: sampler {sampler_name!r} cannot draw an epoch's negatives "
                              f"ahead: {why} (static samplers that can: {', '.join(able)})")
    return loss


def epoch_draws_refusal(sampler: Any, loss_name: str) -> str | None:
    """Why ``sampler`` (a class or instance) under the loss ``loss_name`` cannot draw an epoch's negatives
    ahead (``trainer.epoch_draws``); None when it can."""
    if getattr(sampler, "synthesises", False):
        return "it synthesises each step's negatives from the model's current representations"
    if getattr(sampler, "dynamic", False):
        return "its draws depend on the model's current scores (a dynamic sampler)"
    if LOSSES.get(loss_name).group_wise:
        return f"trainer.loss={loss_name} trains on negative groups drawn per step"
    if not getattr(sampler, "batch_independent", False):
        return "its draws depend on the other rows of the step's batch (in-batch negatives)"
    return None


def progress_enabled(setting: bool | None) -> bool:
    return sys.stderr.isatty() if setting is None else setting


class Trainer:
    """Trains ``model`` on ``dataset`` stage by stage; checkpoints go to ``run_dir/stages/<stage>``."""

    def __init__(self, model: Recommender, dataset: Dataset, cfg: TrainerConfig, evaluator: Evaluator,
                 run_dir: RunDir, context: TrainingContext | None = None):
        self.model = model
        self.dataset = dataset
        self.cfg = cfg
        self.evaluator = evaluator
        self.run_dir = run_dir
        self.context = context or LocalContext()
        self.device = torch.device(cfg.device)
        self.my_users = self.context.my_users(dataset.n_users)
        self.show_progress = progress_enabled(cfg.progress) and self.context.is_main
        self._draw_plan: DrawPlan | None = None  # trainer.epoch_draws: this process's chunks, built once
        # Called as fn(record, sampler) after every epoch's validation and checkpoint (the record is the
        # epoch's metrics line): the GDNS false-negative analysis, MLflow logging.
        self.epoch_callbacks: list[Callable[[dict[str, Any], Any], None]] = []

    # ------------------------------------------------------------------ public
    def fit(self, spec: StageSpec) -> StageOutcome:
        """Run (or resume, or skip if already done) stage ``spec``; leaves the best weights in the model."""
        stage_dir = self.run_dir.stage_dir(spec.name)
        done = stage_dir / "done.json"
        if done.exists():
            try:
                outcome = StageOutcome.from_dict(read_json(done))
            except (KeyError, TypeError) as err:
                raise RunStateError(f"not a finished stage's record (missing or bad {err})", where=str(done)) from None
            self.load_best(spec)
            return outcome

        loss_name = resolve_loss(self.cfg, spec.sampler)
        validate_loss(self.cfg, spec.sampler)
        # a layer-mixing sampler needs each propagation's per-layer representations
        self.model.keep_layers = bool(getattr(spec.sampler, "synthesises", False))
        spec.sampler.prepare(self.model, torch_seed(self.cfg.seed, spec.name, "sampler"))
        optimizer = make_optimiser(self.cfg.optimizer, self.model, spec.sampler.parameters(), spec.lr)
        state = {"best_metric": -math.inf, "best_epoch": -1, "best_valid": {}, "bad_evals": 0,
                 "epoch_seconds": [], "sampling_seconds": [], "step_seconds": [], "draws": 0}
        start_epoch = 0
        last = stage_dir / self.context.checkpoint_name("last")
        if last.exists():
            ckpt = load_checkpoint(last, self.device, keys=CHECKPOINT_KEYS)
            self._restore(last, ckpt, spec, optimizer)
            state = ckpt["trainer"]
            missing = sorted(set(TRAINER_STATE_KEYS) - set(state)) if isinstance(state, dict) else ["all"]
            if missing or not isinstance(ckpt["epoch"], int):
                raise RunStateError(f"not this trainer's checkpoint (trainer state missing {', '.join(missing)})"
                                    if missing else "not this trainer's checkpoint (epoch is not an integer)",
                                    where=str(last))
            start_epoch = ckpt["epoch"] + 1
            self.run_dir.truncate_metrics(spec.name, ckpt["epoch"])

        epochs = range(start_epoch, spec.epochs)
        bar = tqdm(epochs, desc=spec.name, unit="epoch", disable=not self.show_progress, dynamic_ncols=True)
        stopped_early = False
        for epoch in bar:
            record = self._run_epoch(spec, epoch, optimizer, loss_name, state)
            is_last = epoch == spec.epochs - 1
            if (epoch + 1) % self.cfg.eval_every == 0 or is_last:
                t0 = time.perf_counter()
                result = self.evaluator.evaluate(self.model, "valid")
                record["eval_seconds"] = time.perf_counter() - t0
                valid = result.means
                record["valid"] = valid
                metric = valid[self.evaluator.valid_metric]
                if metric > state["best_metric"]:
                    state.update(best_metric=metric, best_epoch=epoch, best_valid=valid, bad_evals=0)
                    self._save(stage_dir / self.context.checkpoint_name("best"), spec, optimizer, epoch, state)
                else:
                    state["bad_evals"] += 1
                bar.set_postfix(loss=f"{record['loss']:.4f}", **{self.evaluator.valid_metric: f"{metric:.4f}"})
                patience = self.cfg.patience if spec.patience is None else spec.patience
                stopped_early = state["bad_evals"] >= patience
            self._save(stage_dir / self.context.checkpoint_name("last"), spec, optimizer, epoch, state)
            if self.context.is_main:
                self.run_dir.append_metrics(record)
            self.context.epoch_done(spec.name, epoch, stage_dir, record)
            for callback in self.epoch_callbacks:
                callback(record, spec.sampler)
            self._maybe_fail(epoch)
            if stopped_early:
                break
        bar.close()
        if state["best_epoch"] < 0:
            # No epoch ran (epochs=0): the initial model is the stage's result.
            result = self.evaluator.evaluate(self.model, "valid")
            state.update(best_epoch=-1, best_valid=result.means)
            self._save(stage_dir / self.context.checkpoint_name("best"), spec, optimizer, -1, state)
        outcome = StageOutcome(
            stage=spec.name, best_epoch=state["best_epoch"], best_valid=state["best_valid"],
            epochs_run=len(state["epoch_seconds"]), stopped_early=stopped_early,
            epoch_seconds=state["epoch_seconds"], sampling_seconds=state["sampling_seconds"],
            step_seconds=state["step_seconds"], draws=state["draws"], memory=state.get("memory", {}),
        )
        if self.context.is_main:
            write_json_atomic(done, {**outcome.to_dict(), "epoch_seconds": outcome.epoch_seconds,
                                     "sampling_seconds": outcome.sampling_seconds,
                                     "step_seconds": outcome.step_seconds})
        self.load_best(spec)
        return outcome

    def load_best(self, spec: StageSpec) -> None:
        """Put the stage's best-validation weights (and sampler state) into the model."""
        path = self.run_dir.stage_dir(spec.name) / self.context.checkpoint_name("best")
        self._restore(path, load_checkpoint(path, self.device, keys=CHECKPOINT_KEYS), spec)

    def _restore(self, path: Path, ckpt: dict[str, Any], spec: StageSpec, optimizer=None) -> None:
        """Load a checkpoint's model, sampler (and optimiser) state; a state that does not fit this run
        (another model's shapes, another sampler's arrays) is one ``RunStateError`` naming the file."""
        parts = [("model", self.model), ("sampler", spec.sampler)]
        if optimizer is not None:
            parts.insert(1, ("optimizer", optimizer))
        for key, target in parts:
            try:
                target.load_state_dict(ckpt[key])
            except (RuntimeError, ValueError, KeyError, TypeError, RaysearchError) as err:
                brief = " ".join(str(err).split())
                brief = brief if len(brief) <= 200 else brief[:200] + "..."
                raise RunStateError(f"the {key} state does not fit this run ({brief})", where=str(path)) from None

    # ------------------------------------------------------------------ internals
    def _save(self, path: Path, spec: StageSpec, optimizer, epoch: int, state: dict) -> None:
        # Every process saves its own file (its shard of the tables and their optimiser state).
        save_checkpoint(path, {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sampler": spec.sampler.state_dict(),
            "trainer": state,
        })

    def _maybe_fail(self, epoch: int) -> None:
        if self.cfg.fail_after_epoch is None or epoch != self.cfg.fail_after_epoch:
            return
        marker = self.run_dir.path / ".injected-failure"
        fired = marker.exists()
        self.context.sum(np.zeros(1))  # a barrier: every process has looked before the marker is written
        if fired:
            return
        if self.context.is_main:
            marker.touch()
        raise InjectedFailure(f"injected failure after epoch {epoch} (trainer.fail_after_epoch)")

    def _run_epoch(self, spec: StageSpec, epoch: int, optimizer, loss_name: str, state: dict) -> dict:
        """One epoch of steps: draw the batch's negatives, score it with the model, sum the ranking loss
        and the model's own terms, step; then the epoch's record (loss and its terms, costs)."""
        cfg = self.cfg
        seed = cfg.seed
        torch.manual_seed(torch_seed(seed, spec.name, "torch", epoch))
        rng = make_rng(seed, spec.name, "epoch", epoch, self.context.rank)
        sampler = spec.sampler
        sampler.start_epoch(epoch, rng)
        self.model.train()
        loss = LOSSES.get(loss_name)
        settings = LossSettings(margin=float(getattr(getattr(sampler, "params", None), "margin", cfg.margin)),
                                temperature=cfg.temperature)
        ahead, slicing = 0.0, [0.0]  # trainer.epoch_draws: seconds drawing ahead, and the steps slicing them
        if loss.group_wise:
            counts = self.dataset.train.user_counts()
            active = self.my_users[counts[self.my_users] > 0]
            n_steps = self.context.n_steps(active.size, cfg.batch_size)
            batches = user_batches(active, n_steps, rng)
        elif cfg.epoch_draws:
            # The epoch's negatives drawn ahead (after start_epoch: ICPNS re-clusters there) in a few large
            # calls keyed by the global row, the steps slicing them (raysearch/train/epoch_draws.py). Their time
            # counts as sampling and as step time (the steps' drawing, done up front), so sampling_share and
            # draws_per_second (draws the steps use) compare with per-batch draws. A worker sharing a user
            # class with another draws that class's other rows too: a knowledge sampler's stats count them.
            users_all, items_all = pair_rows(self.dataset.train, self.my_users)
            n_steps = self.context.n_steps(users_all.size, cfg.batch_size)
            t_ahead = time.perf_counter()
            if self._draw_plan is None:
                self._draw_plan = plan_draws(self.dataset.train, self.my_users, cfg.num_negatives)
            negatives, _ = draw_epoch(sampler, self._draw_plan, seed, spec.name, epoch)
            ahead = time.perf_counter() - t_ahead
            batches = self._sliced(users_all, items_all, negatives, pair_batch_indices(users_all.size, n_steps, rng),
                                   slicing)
        else:
            users_all, items_all = pair_rows(self.dataset.train, self.my_users)
            n_steps = self.context.n_steps(users_all.size, cfg.batch_size)
            batches = pair_batches(users_all, items_all, n_steps, rng)

        sampling = steps = ahead
        loss_sum = 0.0
        term_sums: dict[str, Any] = {}  # name -> float64 tensor: sum over rows of the term
        rows = draws = 0
        comm = getattr(self.model.tables, "stats", None)  # sharded tables count the bytes they send
        comm_before = comm.bytes_sent if comm is not None else 0
        t_epoch = time.perf_counter()
        inner = tqdm(batches, total=n_steps, desc=f"epoch {epoch}", leave=False, unit="batch",
                     disable=not self.show_progress, dynamic_ncols=True)
        for rows_of_step in inner:
            t_step = time.perf_counter()
            step = self.train_step(sampler, rows_of_step, optimizer, loss, settings, rng)
            steps += time.perf_counter() - t_step
            sampling += step.sampling_seconds
            draws += step.draws
            loss_sum += float(step.loss) * step.rows
            for name, value in step.terms.items():  # summed on the device, read once
                term_sums[name] = term_sums.get(name, 0.0) + value.double() * step.rows
            rows += step.rows
        inner.close()
        sampling += slicing[0]  # the steps' slices of the negatives drawn ahead (0 without)
        steps += slicing[0]
        if sampler.dynamic and not sampler.synthesises:  # synthesising samplers keep no epoch state
            sampler.end_epoch(epoch, self.model.frozen_scorer())
        epoch_seconds = time.perf_counter() - t_epoch
        term_names = sorted(term_sums)
        totals = self.context.sum(np.array([loss_sum, rows, *(float(term_sums[n]) for n in term_names)],
                                           dtype=np.float64))
        state["epoch_seconds"].append(epoch_seconds)
        state["sampling_seconds"].append(sampling)
        state["step_seconds"].append(steps)
        state["draws"] += draws
        if not np.isfinite(totals[0]):
            raise RaysearchError(f"stage {spec.name}, epoch {epoch}: the loss is not finite "
                                 f"(learning rate {spec.lr} too high?)")
        record = {
            "stage": spec.name,
            "epoch": epoch,
            "loss": float(totals[0] / max(totals[1], 1)),
            # the loss's parts, each a mean over rows: the ranking loss and the model's own terms
            "loss_terms": {n: float(v / max(totals[1], 1)) for n, v in zip(term_names, totals[2:], strict=True)},
            "epoch_seconds": epoch_seconds,
            "sampling_seconds": sampling,
            "sampling_share": sampling / steps if steps else None,
            "draws_per_second": draws / sampling if sampling else None,
            "steps": n_steps,
            "draws": draws,
        }
        stats = sampler.epoch_stats()
        if stats:  # (total, count) pairs summed over processes, recorded as means
            names = sorted(stats)
            summed = self.context.sum(np.array([stats[n] for n in names], dtype=np.float64).reshape(-1, 2))
            record["sampler_stats"] = {n: float(t / c) if c else None for n, (t, c) in zip(names, summed, strict=True)}
        if comm is not None:
            record["comm_bytes_per_step"] = (comm.bytes_sent - comm_before) / n_steps
        if epoch == 0 or "memory" not in state:
            state["memory"] = self._memory_per_process(optimizer)
        return record

    @staticmethod
    def _sliced(users: np.ndarray, items: np.ndarray, negatives: np.ndarray, batches: Any,
                seconds: list[float]) -> Any:
        """(users, positives, negatives) of each batch of row indices, the seconds spent slicing the
        negatives drawn ahead added to ``seconds[0]``."""
        for idx in batches:
            t0 = time.perf_counter()
            neg = negatives[idx]
            seconds[0] += time.perf_counter() - t0
            yield users[idx], items[idx], neg

    def train_step(self, sampler: Any, rows_of_step: Any, optimizer: torch.optim.Optimizer, loss: Loss,
                   settings: LossSettings, rng: np.random.Generator) -> StepOutcome:
        """One step on ``rows_of_step`` ((users, positives) rows, with their negatives when drawn ahead, or
        users for a group-wise loss): draw the negatives (unless drawn ahead), score the batch with the
        model, sum the ranking loss and the model's own terms, backward, step."""
        model = self.model
        # Graph models propagate once per step; the sampler's scorer reuses those representations.
        reps = model.propagate() if model.propagates else None
        score_fn = model.frozen_scorer(reps) if sampler.dynamic and not sampler.synthesises else None
        t_sample = time.perf_counter()
        batch = self._draw(sampler, rows_of_step, loss.group_wise, rng, score_fn, reps)
        sampling = time.perf_counter() - t_sample

        scores = model.batch_scores(batch, reps, self.cfg.reg)
        log_q = None if batch.log_q is None else torch.as_tensor(
            batch.log_q, dtype=scores.negative.dtype, device=scores.negative.device)
        positive = scores.positive if loss.group_wise else scores.positive[:, 0]
        ranking = loss.compute(positive, scores.negative, settings, log_q)
        own_terms = {**scores.terms, **(batch.sampler_terms or {})}
        total = ranking
        for term in own_terms.values():
            total = total + term
        optimizer.zero_grad(set_to_none=True)
        # Each process averages over its rows; the objective is the mean over processes, whose
        # gradient for sharded rows is summed by the tables' collectives and for replicated
        # parameters by context.reduce_gradients.
        (total / self.context.world_size).backward()
        self.context.reduce_gradients(model)
        optimizer.step()
        terms = {name: value.detach() for name, value in (("ranking", ranking), *own_terms.items())}
        return StepOutcome(rows=batch.size, draws=batch.size * batch.n_negatives, sampling_seconds=sampling,
                           loss=total.detach(), terms=terms)

    def _draw(self, sampler: Any, rows_of_step: Any, group_wise: bool, rng: np.random.Generator,
              score_fn: Any, reps: Any) -> Batch:
        """The step's typed batch: a group sampler's (users, positive groups, negative groups), or
        (user, positive) rows with their negatives (item ids, or synthesised representations for a
        sampler that synthesises them from this step's propagation), and log q(j | u) when logQ
        correction is on."""
        if sampler.synthesises:
            users, pos = rows_of_step
            model = self.model
            user_layers, item_layers = model.layer_representations(reps if reps is not None else model.propagate())
            made = sampler.synthesise(users, pos, self.cfg.num_negatives, rng, user_layers, item_layers,
                                      model.layer_pool, model.query)
            return Batch.of(users, pos, negative_vectors=made.vectors, negative_rows0=made.rows0,
                            sampler_terms=dict(made.terms))
        if group_wise:
            users = rows_of_step
            pos, neg = sampler.sample_groups(users, rng=rng, score_fn=score_fn)
        else:
            users, pos, *ahead = rows_of_step  # (users, positives[, negatives drawn ahead: trainer.epoch_draws])
            neg = ahead[0] if ahead else sampler.sample(users, pos, num_negatives=self.cfg.num_negatives, rng=rng,
                                                        score_fn=score_fn)
        log_q = sampler.log_q(users, pos, neg) if self.cfg.logq_correction else None
        return Batch.of(users, pos, neg, log_q=log_q, groups=group_wise)

    def _memory_per_process(self, optimizer) -> dict[str, list[int]]:
        """Bytes of parameters and of optimiser state held by each process (lists indexed by rank)."""
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        opt = sum(t.numel() * t.element_size() for st in optimizer.state.values() for t in st.values()
                  if torch.is_tensor(t))
        mine = np.zeros((2, self.context.world_size))
        mine[:, self.context.rank] = (params, opt)
        everyone = self.context.sum(mine)
        return {"param_bytes": everyone[0].astype(int).tolist(), "optimizer_bytes": everyone[1].astype(int).tolist()}
