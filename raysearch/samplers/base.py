"""The sampler contract: ``Sampler``, the ``SAMPLERS`` registry and ``make_sampler``.

``s = make_sampler(name, train, **params)`` builds a sampler from the training split (a
``scipy.sparse`` users x items matrix, an ``Interactions`` or a ``Dataset``); every statistic a sampler
uses comes from that split only. ``s.sample(users, pos_items, num_negatives, rng=..., score_fn=...)``
returns int64 (B, num_negatives) negatives, none of them a training positive of the row's user.

Parameters are a frozen dataclass ``Params`` per sampler, validated by ``raysearch.config.from_mapping``
plus ``require`` range checks; an unknown name or a bad value is a ``ConfigError`` naming the sampler,
the parameter and the known ones.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from raysearch.config import from_mapping, unknown_key_message
from raysearch.data.interactions import Interactions
from raysearch.errors import ConfigError, SamplingError
from raysearch.registry import Registry
from raysearch.rng import make_rng
from raysearch.samplers.exclusion import Complement
from raysearch.scorer import ScoreFn, broadcasting  # noqa: F401  (re-exported: the samplers' scorer type)

RngLike = np.random.Generator | np.random.SeedSequence | int

SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


def register(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: add ``cls`` to ``SAMPLERS`` under ``cls.name``."""
    return SAMPLERS.register(cls.name)(cls)


@dataclass(frozen=True)
class NoParams:
    """A sampler without parameters."""


def parse_params(cls: type[Sampler], params: Mapping[str, Any]) -> Any:
    """``cls.Params`` from a mapping; unknown names and bad values raise ``ConfigError``."""
    known = [f.name for f in dataclasses.fields(cls.Params)]
    for key in params:
        if key not in known:
            raise ConfigError(f"sampler {cls.name!r}: {unknown_key_message(str(key), known, 'parameter')}")
    try:
        return from_mapping(cls.Params, params)
    except ConfigError as err:
        raise ConfigError(f"sampler {cls.name!r}: {err}") from None


def log_q_samplers() -> list[str]:
    """Names of the registered samplers whose proposal q(j | u) is known in closed form."""
    return [name for name in SAMPLERS.names() if SAMPLERS.get(name).has_log_q]


def require_log_q(cls: type[Sampler]) -> None:
    """``ConfigError`` (for ``trainer.logq_correction``) unless ``cls`` knows its proposal q(j | u)."""
    if not cls.has_log_q:
        raise ConfigError(f"trainer.logq_correction: sampler {cls.name!r} has no closed-form proposal "
                          f"q(j | u) (samplers with one: {', '.join(log_q_samplers())})")


def make_sampler(name: str, train: Any, **params: Any) -> Sampler:
    """The sampler registered as ``name``, built on ``train`` with ``params`` (see each ``Params``)."""
    cls = SAMPLERS.get(name)
    return cls(train, parse_params(cls, params))


def sigmoid(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Numerically stable logistic function, computed in ``dtype``."""
    return expit(np.asarray(x, dtype=dtype))


def call_scorer(score_fn: ScoreFn, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores float64 of ``items``' shape, for ``users`` broadcastable against ``items``.

    A plain ``score_fn`` gets two 1-d int64 arrays of equal length (the user ids repeated to ``items``'
    shape); one marked with ``broadcasting`` gets the int64 arrays in their own shapes, which saves
    gathering each user's row once per item (the cost of SRNS's and DNS's scoring).
    """
    items = np.asarray(items, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    try:
        fits = np.broadcast_shapes(users.shape, items.shape) == items.shape
    except ValueError:
        fits = False
    if not fits:
        raise SamplingError(
            f"users of shape {users.shape} do not broadcast against items of shape {items.shape}"
        )
    if getattr(score_fn, "broadcasts", False):
        scores = np.asarray(score_fn(users, items), dtype=np.float64)
        expected = items.shape
    else:
        flat_users = np.ascontiguousarray(np.broadcast_to(users, items.shape)).ravel()
        scores = np.asarray(score_fn(flat_users, np.ascontiguousarray(items).ravel()), dtype=np.float64)
        expected = (items.size,)
    if scores.shape != expected:
        raise SamplingError(f"score_fn returned shape {scores.shape} for {items.size} (user, item) pairs")
    return scores.reshape(items.shape)


@dataclass(frozen=True)
class Synthesised:
    """A synthesising sampler's negatives for one step: ``vectors`` (B, k, d') scored by the model's
    ``interaction``, ``rows0`` (B, k, d) their layer-0 part (the L2 term), and the sampler's own loss terms
    by name (weighted scalars, added to the loss and logged like the model's)."""

    vectors: Any
    rows0: Any
    terms: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def as_ids(values: Any, what: str) -> np.ndarray:
    """int64 array of ids; ``SamplingError`` for a non-integer dtype."""
    arr = np.asarray(values)
    if arr.size and arr.dtype.kind not in "iu":
        raise SamplingError(f"{what} must be integer ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class Sampler(ABC):
    """A negative sampler bound to one training split.

    Class attributes: ``name`` (the registry name), ``dynamic`` (needs the model's ``score_fn``),
    ``Params`` (a frozen dataclass of its parameters). Subclasses implement ``_sample``.
    """

    name: ClassVar[str] = ""
    dynamic: ClassVar[bool] = False
    Params: ClassVar[type] = NoParams
    # The proposal q(j | u) of every draw is known in closed form (``log_q``): logQ correction applies.
    has_log_q: ClassVar[bool] = False
    # Training negatives are synthesised representations (``synthesise``), not item ids (MixGCF, DENS).
    synthesises: ClassVar[bool] = False
    # The law of a row's negatives depends only on the row (user, positive) and the sampler's state at the
    # epoch's start: not on the model, nor on the other rows of the call (their values do, through the shared
    # generator: epoch draws key whole chunks of rows). Such a (static) sampler may draw a whole epoch's
    # negatives ahead in a few large calls (``trainer.epoch_draws``, raysearch/train/epoch_draws.py). Never
    # true of dynamic, in-batch (mixed included), synthesising or group samplers.
    batch_independent: ClassVar[bool] = False

    def __init__(self, train: Any, params: Any = None, *, complement: Complement | None = None):
        self.train = Interactions.coerce(train)
        if params is None:
            params = self.Params()
        elif isinstance(params, Mapping):
            params = parse_params(type(self), params)
        self.params = params
        self.n_users, self.n_items = self.train.shape
        self.complement = complement if complement is not None else Complement(self.train)

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> Any:
        """Check ``params`` (names and values) before any data is loaded; returns the ``Params``."""
        return parse_params(cls, params)

    # ----------------------------------------------------------------- the contract
    def sample(
        self,
        users: np.ndarray,
        pos_items: np.ndarray,
        num_negatives: int = 1,
        rng: RngLike | None = None,
        score_fn: ScoreFn | None = None,
    ) -> np.ndarray:
        """Negatives for a batch of (user, positive item) rows.

        ``users``, ``pos_items``: int (B,). ``rng``: a ``numpy.random.Generator`` (or a ``SeedSequence``
        or int seed, turned into one with ``raysearch.rng.make_rng``); required, there is no global RNG.
        ``score_fn(users, items) -> scores``: the current model, needed by dynamic samplers and ignored by
        static ones. It receives two 1-d int64 numpy arrays of equal length and returns numpy float32 (or
        float64) scores of that length, computed without gradients (the trainer wraps its model in
        ``torch.no_grad`` and converts); one marked with ``broadcasting`` receives broadcastable arrays
        and returns scores of the items' shape. Returns int64 (B, num_negatives); no entry is a training
        positive of its row's user.
        """
        users = as_ids(users, "users")
        pos_items = as_ids(pos_items, "pos_items")
        if users.ndim != 1 or pos_items.shape != users.shape:
            raise SamplingError(
                f"users and pos_items must be 1-d arrays of equal length, got shapes {users.shape} "
                f"and {pos_items.shape}"
            )
        k = num_negatives
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"num_negatives: must be an integer >= 1, got {k!r}")
        if rng is None:
            raise SamplingError(f"sampler {self.name!r}: sample() needs rng= (a numpy Generator or a seed)")
        rng = make_rng(rng)
        if self.dynamic and score_fn is None:
            raise SamplingError(
                f"sampler {self.name!r} is dynamic: sample() needs score_fn=(users, items) -> scores"
            )
        if users.size == 0:
            return np.empty((0, int(k)), dtype=np.int64)
        self.check_ids(users, pos_items)
        self.complement.check_users(users)
        return self._sample(users, pos_items, int(k), rng, score_fn)

    @abstractmethod
    def _sample(
        self,
        users: np.ndarray,
        pos_items: np.ndarray,
        k: int,
        rng: np.random.Generator,
        score_fn: ScoreFn | None,
    ) -> np.ndarray:
        """int64 (B, k) negatives for validated rows."""

    def log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """float64 (B, k): log q(j | u) of each negative of ``sample(users, pos_items, k)``, the exact
        probability of drawing it in its slot (the user's positives excluded). Only for samplers with
        ``has_log_q``; the others raise ``ConfigError`` (their q depends on the model's scores)."""
        require_log_q(type(self))
        users = as_ids(users, "users")
        negatives = as_ids(negatives, "negatives").reshape(users.size, -1)
        return self._log_q(users, as_ids(pos_items, "pos_items"), negatives)

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """float64 (B, k) for validated rows (samplers with ``has_log_q``)."""
        raise NotImplementedError

    def check_ids(self, users: np.ndarray, items: np.ndarray | None = None) -> None:
        """Raise ``SamplingError`` for a user or item id outside the training matrix (int64 ids)."""
        for ids, what, n in ((users, "user", self.n_users), (items, "item", self.n_items)):
            if ids is None or ids.size == 0:
                continue
            ids = ids.astype(np.int64, copy=False)
            if ids.view(np.uint64).max() < n:  # one pass: a negative id reads as >= 2^63
                continue
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= n:
                bad = lo if lo < 0 else hi
                raise SamplingError(f"{what} id {bad} is out of range [0, {n})")

    # ----------------------------------------------------------------- hooks and state
    def prepare(self, model: Any, seed: int) -> None:
        """Called once per stage before training, with the backbone: a sampler with trainable parameters
        (DENS's gates) builds them here, initialised from ``seed``. No-op by default."""
        return None

    def parameters(self) -> list[Any]:
        """Trainable tensors the trainer optimises with the model's (none by default)."""
        return []

    def start_epoch(self, epoch: int, rng: RngLike) -> None:
        """Called before the first batch of ``epoch``. No-op unless a sampler keeps per-epoch state."""
        return None

    def end_epoch(self, epoch: int, snapshot_score_fn: ScoreFn) -> None:
        """Called after ``epoch`` with a scorer frozen at the end of it. No-op by default."""
        return None

    def epoch_stats(self) -> dict[str, tuple[float, float]]:
        """What the sampler measured on its draws since ``start_epoch``, by name: (total, count) pairs. The
        trainer sums them over processes and records total / count (None when count is 0) in the epoch's
        record under ``sampler_stats`` (``metrics.jsonl``, MLflow ``sampler/<name>``). None by default; a
        sampler that measures returns the same names every epoch, counts 0 included."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State across batches and epochs: numpy arrays and scalars only (for checkpoints)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; a restored sampler draws exactly as the saved one given the same rng."""
        extra = self._restore(state, {})
        if extra:
            raise SamplingError(f"sampler {self.name!r} keeps no state; unexpected {', '.join(sorted(extra))}")

    def _restore(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Copy ``state``'s arrays into ``arrays`` (checking names, shapes, dtypes); return the scalars."""
        extra = {k: v for k, v in state.items() if k not in arrays}
        missing = sorted(set(arrays) - set(state))
        if missing:
            raise SamplingError(f"sampler {self.name!r}: state is missing {', '.join(missing)}")
        for key, target in arrays.items():
            value = np.asarray(state[key])
            if value.shape != target.shape:
                raise SamplingError(
                    f"sampler {self.name!r}: state {key!r} has shape {value.shape}, expected {target.shape}"
                )
            target[...] = value.astype(target.dtype, copy=False)
        return extra

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params}, train={self.train!r})"
