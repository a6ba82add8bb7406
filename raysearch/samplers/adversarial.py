"""Adversarial negatives: an IRGAN generator (Wang et al., "IRGAN: A Minimax Game for Unifying Generative and
Discriminative Information Retrieval Models", SIGIR 2017, item recommendation; official code
``geek-ai/irgan``, ``item_recommendation/cf_gan.py``). The survey's sampling-based adversarial generation.

The backbone is IRGAN's discriminator D (it trains on the run's loss with these negatives); the generator G
is a small recommender of its own:

    g(u, j) = <p_u, q_j> + b_j   (``dim``-dimensional embeddings, uniform(-0.05, 0.05), biases 0),
    p_G(j | u) = softmax over j not in P_u of g(u, j) / ``temperature``.

Negatives for D are drawn from p_G. Draws: the **full softmax over the catalogue, chunked** (exact,
always the current generator), inverted by one ``searchsorted`` for all rows: no Python loop per row or
draw. Why not an alias table rebuilt every ``refresh`` epochs: the policy is personal, so the tables would
be one per user, n_users x n_items entries (1.2e9 on Gowalla) to build and hold, and they would be stale
between rebuilds. Since G changes only in its training phases, the CDFs of every user's policy are
computed once per generator version (chunks of users, ``CHUNK_ENTRIES`` entries at a time) and kept while
n_users x n_items <= ``TABLE_ENTRIES`` (ML-100K: 1e6 entries, LastFM: 8.4e6); larger catalogues compute
the policy of each batch's distinct users per batch, in chunks (one (users x dim) @ (dim x items) product
and a cumulative sum a chunk), so memory stays bounded.

G learns by REINFORCE on D's reward (the paper's eq. (5) and its advantage form): at the end of every
``refresh``-th epoch, ``steps`` updates (Adam, ``lr``), each on ``batch_users`` users drawn without
replacement from the users with training items; per user ``samples`` = K items drawn from p_G; reward

    r(u, j) = log(1 + exp(f_D(u, j)))   (``reward: softplus``, the paper's: G minimises
              E[log(1 - sigmoid(f_D))] = -E[log(1 + exp(f_D))]),
    or  2 sigmoid(f_D(u, j)) - 1        (``reward: sigmoid``, the official item-recommendation code),

f_D = D's score frozen at the end of the epoch; advantage = r - b, b the mean reward of the user's other
K - 1 samples (``baseline``: the paper replaces the reward by r - E_{p_G}[r]; the leave-one-out mean
estimates that expectation without biasing the gradient; no baseline when K = 1); loss
-mean(advantage * log p_G(j | u)) + ``reg`` * (|p_u|^2 + |q_j|^2 + b_j^2) / 2 / batch
(``policy_gradient_loss``; the official G uses reg 0).

Departures from the paper and its code, on purpose:
- G's policy excludes the user's training positives (every raysearch sampler does: a negative is never a
  training positive); the official G ranges over all items and trains with importance sampling from a
  mixture that puts 20% of the mass on the positives. Here G is on-policy and needs no such weights.
- One temperature for the draws and for the policy G trains: the official code draws D's negatives at
  temperature 0.2 but trains G's softmax at temperature 1.
- D and G start from random weights (the official code starts both from a pre-trained MF); D trains on
  ``trainer.loss`` (BPR by default; the official D is pointwise, ``trainer.loss=bce``), one epoch of D
  between G phases (the official schedule: 100 D epochs with negatives regenerated every 5, then 50 G
  epochs of one update per user, repeated).

Costs (``epoch_stats``, the epoch record's ``sampler_stats``): ``generator_seconds`` (G's training this
epoch, its draws and D's scoring included), ``generator_sampling_seconds`` (its draws), ``generator_updates``,
``generator_reward`` (mean reward of its samples) and ``generator_entropy`` (mean entropy of the policy of
the trained users, nats: a collapsing generator shows here). The draws of D's negatives are the trainer's
own ``sampling_seconds``.

Workers: G's updates draw from a stream of the run's seed and the epoch only (not the rank) and read D's
frozen scorer, so under Ray Train every worker makes the same updates and the generators stay identical
without communication (each pays the cost). G's weights and Adam's moments are checkpointed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from raysearch.config import require
from raysearch.errors import SamplingError
from raysearch.rng import make_rng
from raysearch.samplers.base import RngLike, Sampler, ScoreFn, call_scorer, register

CHUNK_ENTRIES = 1 << 22  # (user, item) entries of the policy computed at once
TABLE_ENTRIES = 1 << 24  # catalogues up to this many (user, item) entries keep the policy's CDFs between updates
INIT_RANGE = 0.05  # the official generator's uniform init without pretraining (``initdelta``)
REWARDS = ("softplus", "sigmoid")


class Generator(nn.Module):
    """IRGAN's generator: g(u, j) = <p_u, q_j> + b_j. ``user`` (n_users, dim), ``item`` (n_items, dim),
    ``bias`` (n_items,), initialised from ``seed`` (torch's CPU generator, forked)."""

    def __init__(self, n_users: int, n_items: int, dim: int, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.user = nn.Parameter(torch.empty(n_users, dim).uniform_(-INIT_RANGE, INIT_RANGE))
            self.item = nn.Parameter(torch.empty(n_items, dim).uniform_(-INIT_RANGE, INIT_RANGE))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def logits(self, users: Tensor) -> Tensor:
        """(B, n_items) g(u, j) for int64 ``users`` (B,)."""
        return self.user[users] @ self.item.T + self.bias


def policy_gradient_loss(logits: Tensor, excluded: Tensor | None, actions: Tensor, advantages: Tensor,
                         temperature: float) -> Tensor:
    """REINFORCE surrogate -mean_{b,k} A_bk log p(a_bk | b), p = softmax(logits / temperature) over the
    entries not ``excluded``: its gradient is the policy-gradient estimate of -E_p[reward].

    ``logits`` (B, n) float (differentiable), ``excluded`` bool (B, n) or None, ``actions`` int64 (B, K),
    ``advantages`` (B, K) (constants). d loss / d logits[b, j] = -sum_k A_bk (1[j = a_bk] - p_bj) /
    (temperature B K).
    """
    z = logits / temperature
    if excluded is not None:
        z = z.masked_fill(excluded, -math.inf)
    log_p = z.gather(1, actions) - torch.logsumexp(z, dim=1, keepdim=True)
    return -(advantages.detach() * log_p).mean()


def rewards(scores: np.ndarray, form: str) -> np.ndarray:
    """float64 rewards of D's scores: ``softplus`` log(1 + exp(f)) (the paper) or ``sigmoid`` 2 sigmoid(f) - 1."""
    f = np.asarray(scores, dtype=np.float64)
    if form == "softplus":
        return np.logaddexp(0.0, f)
    return 2.0 / (1.0 + np.exp(-f)) - 1.0


def advantages(reward: np.ndarray, baseline: bool) -> np.ndarray:
    """(B, K): reward minus the mean of the row's other K - 1 rewards (leave-one-out), or the reward as is
    (``baseline`` false, or K = 1)."""
    k = reward.shape[1]
    if not baseline or k == 1:
        return reward
    return reward - (reward.sum(axis=1, keepdims=True) - reward) / (k - 1)


def cdf_rows(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat float64 (C n,), last int64 (C,)) of distributions ``p`` (C, n) (non-negative rows, each with a
    positive entry): row c's CDF, ending at exactly 1, shifted by c and laid end to end (non-decreasing
    overall), and each row's last entry of positive probability."""
    c, n = p.shape
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    cdf += np.arange(c, dtype=np.float64)[:, None]
    return cdf.ravel(), (n - 1 - np.argmax(p[:, ::-1] > 0, axis=1)).astype(np.int64)


def invert(flat: np.ndarray, last: np.ndarray, n: int, local: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """int64 (R, K): for row r, the item of each uniform of ``uniforms[r]`` in [0, 1) under CDF row
    ``local[r]`` of ``cdf_rows``' (``flat``, ``last``): one ``searchsorted`` for all rows. An entry of zero
    probability repeats its predecessor's value and is never the first one above a target; a rounding past
    a row's end lands on its last item of positive probability."""
    target = local[:, None] + uniforms
    idx = np.searchsorted(flat, target.ravel(), side="right").reshape(target.shape) - local[:, None] * n
    return np.minimum(idx, last[local][:, None])


def draw_rows(p: np.ndarray, local: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """int64 (R, K): for each row r one item per uniform of ``uniforms[r]`` from distribution ``p[local[r]]``
    (``p`` (C, n) float64, rows summing to 1; zero entries are never returned; inverse CDF, ``invert``)."""
    return invert(*cdf_rows(p), p.shape[1], local, uniforms)


@register
class Adversarial(Sampler):
    """IRGAN: negatives from a generator trained by policy gradient on the backbone's reward."""

    name = "adversarial"
    dynamic = True  # the generator learns from the model's scores (``end_epoch``)

    @dataclass(frozen=True)
    class Params:
        dim: int = 64  # generator embedding dimension
        lr: float = 0.001  # generator Adam learning rate (the official 0.001)
        temperature: float = 0.2  # softmax temperature of the policy (the official draw temperature)
        steps: int = 5  # generator updates per training phase
        batch_users: int = 256  # users per generator update
        samples: int = 32  # items drawn per user and update (the official code: 2 |P_u|)
        refresh: int = 1  # a generator training phase after every this many epochs
        reward: str = "softplus"  # softplus: log(1 + exp(f_D)) (the paper); sigmoid: 2 sigmoid(f_D) - 1 (its code)
        baseline: bool = True  # advantage = reward - the mean of the user's other samples' rewards
        reg: float = 0.0  # L2 weight on the generator rows of an update (the official 0)

        def __post_init__(self) -> None:
            for key in ("dim", "steps", "batch_users", "samples", "refresh"):
                value = getattr(self, key)
                require(value >= 1, key, f"must be an integer >= 1, got {value}")
            require(math.isfinite(self.lr) and self.lr > 0, "lr", f"must be > 0, got {self.lr}")
            require(math.isfinite(self.temperature) and self.temperature > 0, "temperature",
                    f"must be > 0, got {self.temperature}")
            require(self.reward in REWARDS, "reward", f"must be one of {', '.join(REWARDS)}, got {self.reward!r}")
            require(math.isfinite(self.reg) and self.reg >= 0, "reg", f"must be >= 0, got {self.reg}")

    def __init__(self, train: Any, params: Any = None, **kwargs: Any):
        super().__init__(train, params, **kwargs)
        # users G trains on: with training items and with non-positives
        self.active = np.flatnonzero((self.complement.degree > 0) & (self.complement.n_free > 0))
        self._build(seed=0, device=torch.device("cpu"))  # prepare() rebuilds it from the run's seed
        self._reset_stats()

    def _build(self, seed: int, device: torch.device) -> None:
        self.seed = int(seed)
        self.generator = Generator(self.n_users, self.n_items, self.params.dim, self.seed).to(device)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.params.lr)
        self._table: tuple[np.ndarray, np.ndarray] | None = None  # every user's CDF while G is unchanged

    def _reset_stats(self) -> None:
        self._stats = {"generator_seconds": [0.0, 1.0], "generator_sampling_seconds": [0.0, 1.0],
                       "generator_updates": [0.0, 1.0], "generator_reward": [0.0, 0.0],
                       "generator_entropy": [0.0, 0.0]}

    # ----------------------------------------------------------------- hooks
    def prepare(self, model: Any, seed: int) -> None:
        """A fresh generator from ``seed`` (the stage's sampler seed), on the model's device."""
        self._build(seed, next(model.parameters()).device)

    def start_epoch(self, epoch: int, rng: RngLike) -> None:
        self._reset_stats()

    def end_epoch(self, epoch: int, snapshot_score_fn: ScoreFn) -> None:
        """The generator's training phase (every ``refresh``-th epoch) against D frozen at the end of ``epoch``."""
        if (epoch + 1) % self.params.refresh or self.active.size == 0:
            return
        t0 = time.perf_counter()
        rng = make_rng(self.seed, "generator", epoch)
        for _ in range(self.params.steps):
            self.update(snapshot_score_fn, rng)
        self._stats["generator_seconds"][0] += time.perf_counter() - t0

    def epoch_stats(self) -> dict[str, tuple[float, float]]:
        return {name: (float(total), float(count)) for name, (total, count) in self._stats.items()}

    # ----------------------------------------------------------------- the policy
    def _masked_logits(self, users: np.ndarray, logits: Tensor) -> np.ndarray:
        """float64 (C, n): ``logits`` / temperature as numpy, -inf at the users' training positives."""
        z = logits.detach().double().cpu().numpy() / self.params.temperature
        row, items = self.complement.rows(users)
        z[row, items] = -np.inf
        return z

    def policy(self, users: np.ndarray, logits: Tensor | None = None) -> np.ndarray:
        """float64 (C, n_items): p_G(. | u) of each of ``users`` (rows sum to 1, 0 at the user's positives)."""
        users = np.asarray(users, dtype=np.int64)
        if logits is None:
            with torch.no_grad():
                logits = self.generator.logits(torch.as_tensor(users, device=self.generator.item.device))
        z = self._masked_logits(users, logits)
        z[~np.isfinite(z).any(axis=1)] = 0.0  # a user with every item (never drawn for): any distribution
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def policy_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``cdf_rows`` of every user's policy, built chunk by chunk once per generator version (kept
        while n_users x n_items <= ``TABLE_ENTRIES``; every update, restore or rebuild drops it)."""
        if self._table is None:
            chunk = max(1, CHUNK_ENTRIES // max(self.n_items, 1))
            parts = [cdf_rows(self.policy(np.arange(lo, min(lo + chunk, self.n_users))))
                     for lo in range(0, self.n_users, chunk)]  # a loop over chunks of users
            flat = np.concatenate([f + lo for (f, _), lo in zip(parts, range(0, self.n_users, chunk), strict=True)])
            self._table = (flat, np.concatenate([last for _, last in parts]))
        return self._table

    def draw(self, users: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """int64 (R, k): k draws from p_G(. | u) per row of ``users`` (R,): from the kept CDFs of every
        user (small catalogues), else chunk by chunk of the batch's distinct users."""
        uniforms = rng.random((users.size, k))  # drawn up front: the chunking never changes the draws
        if self.n_users * self.n_items <= TABLE_ENTRIES:
            return invert(*self.policy_table(), self.n_items, users, uniforms)
        distinct, inverse = np.unique(users, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.searchsorted(inverse[order], np.arange(distinct.size + 1))
        out = np.empty((users.size, k), dtype=np.int64)
        chunk = max(1, CHUNK_ENTRIES // max(self.n_items, 1))
        for lo in range(0, distinct.size, chunk):  # a loop over chunks of users, not over rows or draws
            hi = min(lo + chunk, distinct.size)
            rows = order[starts[lo]:starts[hi]]
            out[rows] = draw_rows(self.policy(distinct[lo:hi]), inverse[rows] - lo, uniforms[rows])
        return out

    def _sample(self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator,
                score_fn: ScoreFn | None) -> np.ndarray:
        return self.draw(users, k, rng)

    # ----------------------------------------------------------------- training
    def update(self, score_fn: ScoreFn, rng: np.random.Generator) -> float:
        """One REINFORCE update on ``batch_users`` users against D's ``score_fn``; returns the loss."""
        p = self.params
        users = np.sort(rng.choice(self.active, size=min(p.batch_users, self.active.size), replace=False))
        device = self.generator.item.device
        users_t = torch.as_tensor(users, device=device)
        logits = self.generator.logits(users_t)  # (B, n), differentiable
        t0 = time.perf_counter()
        probs = self.policy(users, logits)
        actions = draw_rows(probs, np.arange(users.size), rng.random((users.size, p.samples)))
        self._stats["generator_sampling_seconds"][0] += time.perf_counter() - t0
        reward = rewards(call_scorer(score_fn, users[:, None], actions), p.reward)
        excluded = torch.zeros(logits.shape, dtype=torch.bool, device=device)
        row, items = self.complement.rows(users)
        excluded[torch.as_tensor(row, device=device), torch.as_tensor(items, device=device)] = True
        actions_t = torch.as_tensor(actions, device=device)
        adv = torch.as_tensor(advantages(reward, p.baseline), dtype=logits.dtype, device=device)
        loss = policy_gradient_loss(logits, excluded, actions_t, adv, p.temperature)
        if p.reg > 0:
            g = self.generator
            rows = [g.user[users_t], g.item[actions_t], g.bias[actions_t]]
            loss = loss + p.reg * sum(r.pow(2).sum() for r in rows) / 2 / users.size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._table = None
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)
        for name, total, count in (("generator_updates", 1.0, 0.0), ("generator_reward", reward.sum(), reward.size),
                                   ("generator_entropy", entropy.sum(), entropy.size)):
            self._stats[name][0] += float(total)
            self._stats[name][1] += float(count)
        return float(loss.detach())

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The generator's weights and Adam's state (numpy arrays)."""
        out = {f"generator.{k}": v.detach().cpu().numpy().copy() for k, v in self.generator.state_dict().items()}
        for index, state in self.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                out[f"adam.{index}.{name}"] = np.array(value.detach().cpu().numpy() if torch.is_tensor(value) else value)
        return out

    def load_state_dict(self, state: Any) -> None:
        own = self.generator.state_dict()
        names = set(state)
        unknown = sorted(k for k in names if not (k.startswith("adam.") or k.removeprefix("generator.") in own))
        missing = sorted(f"generator.{k}" for k in own if f"generator.{k}" not in names)
        if unknown or missing:
            raise SamplingError(f"sampler 'adversarial': state has unexpected {', '.join(unknown) or 'nothing'}, "
                                f"lacks {', '.join(missing) or 'nothing'}")
        with torch.no_grad():
            for key, value in own.items():
                given = torch.as_tensor(np.asarray(state[f"generator.{key}"]))
                if given.shape != value.shape:
                    raise SamplingError(f"sampler 'adversarial': state generator.{key} has shape "
                                        f"{tuple(given.shape)}, expected {tuple(value.shape)}")
                value.copy_(given)
        adam: dict[int, dict[str, Tensor]] = {}
        for key in names - {f"generator.{k}" for k in own}:
            _, index, name = key.split(".", 2)
            adam.setdefault(int(index), {})[name] = torch.as_tensor(np.asarray(state[key]))
        saved = self.optimizer.state_dict()
        self.optimizer.load_state_dict({"state": adam, "param_groups": saved["param_groups"]})
        self._table = None
