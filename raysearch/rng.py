"""One seed, many independent streams.

Every random draw in raysearch comes from a ``numpy.random.Generator`` made here. A stream is named by a
path of integers or strings (e.g. ``("negatives", trial, epoch)``); the same seed and path always give the
same stream, different paths give statistically independent streams (``SeedSequence`` spawn keys), so
adding a consumer never shifts the draws of another.
"""

from __future__ import annotations

import zlib

import numpy as np

StreamKey = int | str


def _key_to_int(key: StreamKey) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("stream keys are ints or strings, not bools")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"stream keys must be non-negative, got {key}")
        return int(key)
    if isinstance(key, str):
        # crc32 is stable across processes and Python versions (unlike hash()).
        return zlib.crc32(key.encode("utf-8"))
    raise TypeError(f"stream keys are ints or strings, got {type(key).__name__}")


def seed_sequence(seed: int, *path: StreamKey) -> np.random.SeedSequence:
    """The ``SeedSequence`` of stream ``path`` under ``seed``."""
    return np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_key_to_int(k) for k in path))


def make_rng(seed: int | np.random.SeedSequence | np.random.Generator, *path: StreamKey) -> np.random.Generator:
    """A ``Generator`` for stream ``path``. A ``Generator`` passed in is returned as is (``path`` must be empty)."""
    if isinstance(seed, np.random.Generator):
        if path:
            raise ValueError("cannot derive a named stream from a Generator; pass a seed or SeedSequence")
        return seed
    if isinstance(seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(
            entropy=seed.entropy, spawn_key=tuple(seed.spawn_key) + tuple(_key_to_int(k) for k in path)
        )
    else:
        ss = seed_sequence(seed, *path)
    return np.random.Generator(np.random.PCG64(ss))


def torch_seed(seed: int, *path: StreamKey) -> int:
    """A 63-bit integer seed for ``torch.Generator.manual_seed`` derived from the same stream scheme."""
    return int(seed_sequence(seed, *path).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
