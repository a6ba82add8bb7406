"""Shared fixtures. Ray-dependent fixtures start one local cluster per test session."""

import os
import secrets
import tempfile
from pathlib import Path

# Set before ray is imported anywhere. Ray's token authentication stays on (unless you turned it off
# yourself): the suite's clusters, and the `ray start` / `ray job submit` / `raysearch` processes its
# tests launch (they inherit this environment), share one token kept in a file of the suite's own, so
# nothing is written to ~/.ray.
if "RAY_AUTH_MODE" not in os.environ:
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        token_path = Path(tempfile.mkdtemp(prefix="raysearch-tests-")) / "auth_token"
        token_path.write_text(secrets.token_hex(32))
        token_path.chmod(0o600)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import numpy as np
import pytest

from raysearch.data.interactions import Interactions


@pytest.fixture
def toy_train() -> Interactions:
    """4 users x 6 items; user 3 has no items."""
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([0, 2, 5, 1, 2, 4])
    return Interactions.from_pairs(users, items, 4, 6)


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray cluster (2 CPUs) shared by every test that needs Ray."""
    import ray

    from raysearch.distributed.local_ray import init_ray

    init_ray(num_cpus=2, object_store_memory=512 * 2**20)  # raysearch's own start: loopback only
    yield {"storage": str(tmp_path_factory.mktemp("ray").resolve())}
    ray.shutdown()
