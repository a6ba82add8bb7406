"""The synthetic generator: implicit feedback with planted user communities and a known exposure model.

The model, per user ``u`` of community ``c(u)``:

1. communities: ``c(u)`` drawn with mildly unequal probabilities (``1 + 0.5 * U(0, 1)``, normalised, so
   expected community sizes differ by at most 1.5x);
2. exposure: ``n_u ~ Poisson(mean_exposures)`` (clipped to [3, n_items]) distinct items drawn without
   replacement from the community's popularity, a Zipf law ``rank^-zipf_exponent`` over a
   community-specific random permutation of the items (communities prefer different items). Drawing is
   successive sampling: iid draws from the popularity with repeats discarded;
3. preference: user factors = community centre + noise, item factors ~ N(0, 1) (``preference_dim``); the
   standardised score ``z`` of an exposed pair gives ``P(like) = sigmoid(2 z + b)`` with ``b`` calibrated
   (bisection) so that about ``like_rate`` of exposures are liked;
4. observation: each liked item is observed with probability ``1 - false_negative_rate``; liked but
   unobserved items are the known false negatives (they are not in the table);
5. minimum activity: a user with fewer than 3 observed items gets its best-scoring exposed items promoted
   to observed likes until it has 3 (so every split has something to hold out); this slightly inflates
   the like rate of the lightest users.

Timestamps are uniform random event times (so time-based splits of synthetic data are random splits).
Everything is vectorised (loops only over communities and a few retry rounds) and deterministic by seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysearch.config import DatasetConfig, SyntheticConfig, from_mapping, load_group
from raysearch.data.dataset import Dataset
from raysearch.data.loader import load_dataset
from raysearch.data.readers import READERS, RawData, Reader
from raysearch.data.table import InteractionTable
from raysearch.errors import ConfigError
from raysearch.rng import make_rng

MIN_OBSERVED = 3  # observed interactions every user ends with
PREFERENCE_SHARPNESS = 2.0  # slope of P(like) in the standardised preference score
_DRAW_FACTOR = 1.5  # draws per still-needed exposure in each round of successive sampling
_DRAW_ROUNDS = 4  # rounds before the exact (Gumbel top-k) fallback for the few short users


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """What the generator planted, in the generator's ids (users 0..n_users-1, items 0..n_items-1).

    ``communities``: int64 (n_users,); ``false_negative_users``/``false_negative_items``: int64 (m,) pairs
    that the user likes but that were left unobserved; ``popularity``: float64 (n_communities, n_items)
    exposure probabilities of each community.
    """

    communities: np.ndarray
    false_negative_users: np.ndarray
    false_negative_items: np.ndarray
    popularity: np.ndarray


def community_popularity(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """float64 (n_communities, n_items): Zipf(``zipf_exponent``) over a random item permutation per community."""
    rank_weight = np.arange(1, config.n_items + 1, dtype=np.float64) ** -config.zipf_exponent
    rank_weight /= rank_weight.sum()
    order = np.argsort(rng.random((config.n_communities, config.n_items)), axis=1)  # item at each rank
    popularity = np.empty((config.n_communities, config.n_items))
    popularity[np.arange(config.n_communities)[:, None], order] = rank_weight
    return popularity


def inverse_cdf(cdf: np.ndarray, query: np.ndarray, buckets_per_unit: int) -> np.ndarray:
    """int64: for each query, the first index whose ``cdf`` value is > query (``searchsorted(side="right")``)
    found through a guide table of ``buckets_per_unit`` buckets per unit of ``cdf`` (random-order binary
    search over millions of queries is cache-bound; this walks a few steps from the bucket's start)."""
    n_buckets = int(np.ceil(cdf[-1] * buckets_per_unit)) + 1
    guide = np.searchsorted(cdf, np.arange(n_buckets) / buckets_per_unit, side="right")
    # One bucket back, so that rounding in query * buckets_per_unit never starts past the answer.
    idx = guide[np.clip((query * buckets_per_unit).astype(np.int64) - 1, 0, n_buckets - 1)]
    active = np.flatnonzero(cdf[idx] <= query)
    while active.size:
        idx[active] += 1
        active = active[cdf[idx[active]] <= query[active]]
    return idx


def _first_distinct(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted positions of the first occurrence of each (user, item) pair in the flat draw arrays."""
    pair = users * np.int64(n_items) + items
    index_bits = int(users.size).bit_length()
    if int(pair.max()).bit_length() + index_bits <= 62:
        # one int sort of (pair, position) instead of a stable argsort
        ordered = np.sort((pair << np.int64(index_bits)) | np.arange(users.size, dtype=np.int64))
        pair = ordered >> np.int64(index_bits)
        first = ordered[np.concatenate(([True], pair[1:] != pair[:-1]))] & np.int64((1 << index_bits) - 1)
    else:
        first = np.unique(pair, return_index=True)[1]
    return np.sort(first)


def _gumbel_top(
    popularity: np.ndarray,
    communities: np.ndarray,
    users: np.ndarray,
    need: np.ndarray,
    taken_users: np.ndarray,
    taken_items: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``users`` (with ``need`` > 0), ``need`` more items by Gumbel top-k over the items it has
    not taken yet, weighted by its community's popularity: the exact continuation of successive sampling.
    Rows are processed in chunks of about 4M keys."""
    n_items = popularity.shape[1]
    out_users, out_items = [], []
    row_of = np.full(int(max(users.max(), taken_users.max(initial=0))) + 1, -1, dtype=np.int64)
    chunk = max(1, (1 << 22) // n_items)
    for start in range(0, users.size, chunk):
        part, part_need = users[start : start + chunk], need[start : start + chunk]
        keys = np.log(popularity[communities[part]]) + rng.gumbel(size=(part.size, n_items))
        row_of[part] = np.arange(part.size)
        mine = row_of[taken_users] >= 0
        keys[row_of[taken_users[mine]], taken_items[mine]] = -np.inf
        row_of[part] = -1
        top = int(part_need.max())
        best = np.argpartition(-keys, top - 1, axis=1)[:, :top]
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(keys, best, axis=1), axis=1), axis=1)
        rows, cols = np.nonzero(np.arange(top)[None, :] < part_need[:, None])
        out_users.append(part[rows])
        out_items.append(best[rows, cols])
    return np.concatenate(out_users), np.concatenate(out_items)


def draw_exposures(
    popularity: np.ndarray, communities: np.ndarray, n_exposed: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) int64: ``n_exposed[u]`` distinct items for each user, drawn without replacement from
    ``popularity[communities[u]]`` by successive sampling (iid draws, repeats discarded, the first
    ``n_exposed[u]`` distinct kept). Rows are grouped by user.

    Each round draws, per short user, about ``1.5 x missing / remaining popularity mass`` items; users that
    would need more than ``n_items`` draws (steep popularity) and those still short after the rounds
    finish with the exact Gumbel top-k continuation."""
    n_users, n_items = communities.size, popularity.shape[1]
    n_comm = popularity.shape[0]
    # Rows of community c live in (c, c + 1]: one inverse-cdf search serves every community.
    cdf = np.cumsum(popularity, axis=1)
    cdf[:, -1] = 1.0
    cdf = (cdf + np.arange(n_comm)[:, None]).ravel()
    acc_users: list[np.ndarray] = []
    acc_items: list[np.ndarray] = []
    have = np.zeros(n_users, dtype=np.int64)
    mass_left = np.ones(n_users)
    pending = np.arange(n_users)
    for round_ in range(_DRAW_ROUNDS):
        missing = n_exposed[pending] - have[pending]
        draws = np.ceil(missing * _DRAW_FACTOR / np.maximum(mass_left[pending], 1e-12)) + 4
        cheap = draws <= n_items
        pending, draws = pending[cheap], draws[cheap].astype(np.int64)
        if pending.size == 0:
            break
        users = np.repeat(pending, draws)
        comm = communities[users]
        items = np.minimum(
            inverse_cdf(cdf, rng.random(users.size) + comm, 4 * n_items) - comm * n_items, n_items - 1
        )
        if round_ > 0:  # drop items accepted in earlier rounds
            taken = np.sort(np.concatenate(acc_users) * np.int64(n_items) + np.concatenate(acc_items))
            pair = users * np.int64(n_items) + items
            at = np.minimum(np.searchsorted(taken, pair), taken.size - 1)
            fresh = taken[at] != pair
            users, items = users[fresh], items[fresh]
        first = _first_distinct(users, items, n_items)
        users, items = users[first], items[first]
        count = np.bincount(users, minlength=n_users)
        rank = np.arange(users.size) - (np.cumsum(count) - count)[users]
        keep = rank < (n_exposed - have)[users]
        users, items = users[keep], items[keep]
        acc_users.append(users)
        acc_items.append(items)
        have += np.bincount(users, minlength=n_users)
        mass_left -= np.bincount(users, weights=popularity[communities[users], items], minlength=n_users)
        pending = np.flatnonzero(have < n_exposed)
    short = np.flatnonzero(have < n_exposed)
    if short.size:
        taken_users = np.concatenate(acc_users) if acc_users else np.zeros(0, dtype=np.int64)
        taken_items = np.concatenate(acc_items) if acc_items else np.zeros(0, dtype=np.int64)
        users, items = _gumbel_top(
            popularity, communities, short, n_exposed[short] - have[short], taken_users, taken_items, rng
        )
        acc_users.append(users)
        acc_items.append(items)
    users, items = np.concatenate(acc_users), np.concatenate(acc_items)
    if len(acc_users) > 1:  # group rows by user, keeping each user's draw order
        order = np.sort(users * np.int64(users.size) + np.arange(users.size)) % users.size
        users, items = users[order], items[order]
    return users, items


def _like_offset(z: np.ndarray, like_rate: float) -> float:
    """``b`` with mean(sigmoid(PREFERENCE_SHARPNESS * z + b)) = like_rate (bisection on a fixed subsample)."""
    sample = z[:: max(1, z.size // 100_000)]
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(PREFERENCE_SHARPNESS * sample + mid)))) < like_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _promote_to_minimum(
    users: np.ndarray, observed: np.ndarray, liked: np.ndarray, score: np.ndarray, n_users: int
) -> None:
    """In place: users with fewer than MIN_OBSERVED observed rows get their best-scoring exposed rows
    (already observed ones first) marked liked and observed until they have MIN_OBSERVED."""
    short = np.bincount(users[observed], minlength=n_users) < MIN_OBSERVED
    rows = np.flatnonzero(short[users])
    if rows.size == 0:
        return
    rows = rows[np.lexsort((-score[rows], ~observed[rows], users[rows]))]
    count = np.bincount(users[rows], minlength=n_users)
    start = np.cumsum(count) - count
    rank = np.arange(rows.size) - start[users[rows]]
    promote = rows[rank < MIN_OBSERVED]
    observed[promote] = True
    liked[promote] = True


def generate(config: SyntheticConfig) -> tuple[InteractionTable, SyntheticTruth]:
    """Observed interactions (a pooled table: int64 users 0..n_users-1, items 0..n_items-1, int64 random
    timestamps) and the planted truth. Deterministic by ``config.seed``."""
    if config.n_items < MIN_OBSERVED:
        raise ConfigError(
            f"synthetic.n_items: must be >= {MIN_OBSERVED} (every user gets {MIN_OBSERVED} items)"
        )
    n_users, n_items, k, seed = config.n_users, config.n_items, config.n_communities, config.seed

    rng = make_rng(seed, "synthetic", "communities")
    weights = 1.0 + 0.5 * rng.random(k)
    communities = rng.choice(k, size=n_users, p=weights / weights.sum()).astype(np.int64)

    popularity = community_popularity(config, make_rng(seed, "synthetic", "popularity"))

    rng = make_rng(seed, "synthetic", "exposures")
    n_exposed = np.clip(rng.poisson(config.mean_exposures, size=n_users), MIN_OBSERVED, n_items).astype(
        np.int64
    )
    users, items = draw_exposures(popularity, communities, n_exposed, rng)

    rng = make_rng(seed, "synthetic", "preferences")
    centres = rng.normal(size=(k, config.preference_dim))
    user_factors = centres[communities] + rng.normal(size=(n_users, config.preference_dim))
    item_factors = rng.normal(size=(n_items, config.preference_dim))
    score = np.zeros(users.size)
    for d in range(config.preference_dim):  # a few dimensions; avoids an (n_exposures, dim) temporary
        score += user_factors[users, d] * item_factors[items, d]
    z = (score - score.mean()) / (score.std() + 1e-12)

    rng = make_rng(seed, "synthetic", "likes")
    if config.like_rate >= 1.0:
        liked = np.ones(users.size, dtype=bool)
        rng.random(users.size)  # keep the stream's position independent of like_rate
    else:
        prob = 1.0 / (1.0 + np.exp(-(PREFERENCE_SHARPNESS * z + _like_offset(z, config.like_rate))))
        liked = rng.random(users.size) < prob
    observed = liked & (rng.random(users.size) >= config.false_negative_rate)
    _promote_to_minimum(users, observed, liked, z, n_users)
    false_negative = liked & ~observed

    times = make_rng(seed, "synthetic", "timestamps").integers(0, 2**31, size=users.size)
    table = InteractionTable(
        users=users[observed], items=items[observed], timestamps=times[observed], part="all", source=""
    )
    truth = SyntheticTruth(
        communities=communities,
        false_negative_users=users[false_negative],
        false_negative_items=items[false_negative],
        popularity=popularity,
    )
    return table, truth


def _read_synthetic(files: Mapping[str, Path], config: DatasetConfig) -> RawData:
    table, truth = generate(config.synthetic)
    return RawData(
        {"all": table},
        user_extras={"communities": (np.arange(config.synthetic.n_users), truth.communities)},
        pair_extras={"false_negative": (truth.false_negative_users, truth.false_negative_items)},
    )


READERS.register("synthetic")(Reader(read=_read_synthetic, needs_files=False))


def synthetic_config(**overrides: Any) -> DatasetConfig:
    """``conf/dataset/synthetic.yaml`` with ``overrides``: SyntheticConfig fields (``n_users=200``) go to
    the generator, DatasetConfig fields (``split="loo"``) to the dataset; anything else is a ConfigError."""
    data = load_group("dataset", "synthetic")
    generator = dict(data.get("synthetic") or {})
    generator_keys = {f.name for f in dataclasses.fields(SyntheticConfig)}
    dataset_keys = {f.name for f in dataclasses.fields(DatasetConfig)}
    for key, value in overrides.items():
        if key in generator_keys:
            generator[key] = value
        elif key in dataset_keys:
            data[key] = value
        else:
            known = ", ".join(sorted(generator_keys | dataset_keys))
            raise ConfigError(f"unknown key {key!r} (known: {known})")
    if not isinstance(data.get("synthetic"), SyntheticConfig):
        data["synthetic"] = generator
    return from_mapping(DatasetConfig, data, "dataset")


def synthetic_dataset(**overrides: Any) -> Dataset:
    """The synthetic ``Dataset`` (default: 600 users, 400 items, 4 communities, ratio split 8:1:1), built
    without touching the cache: the fixture of unit tests across the project.

    ``extras``: ``communities`` int64 (n_users,), ``false_negative_users``/``false_negative_items`` int64,
    all in internal ids. Example: ``synthetic_dataset(n_users=200, split="loo", num_negatives=50)``.
    """
    return load_dataset(synthetic_config(**overrides), use_cache=False)
