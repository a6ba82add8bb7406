"""Shared fixtures. Ray-dependent fixtures start one local cluster per test session."""

import os

# Set before ray is imported anywhere: loopback-only tests need no token file and no usage stats.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
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

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=512 * 2**20)
    yield {"storage": str(tmp_path_factory.mktemp("ray").resolve())}
    ray.shutdown()
