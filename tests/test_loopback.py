"""A Ray cluster that raysearch starts listens on loopback only (issue: hardening).

The sockets are read from the processes themselves (psutil), not from Ray's settings: every listening
socket of this process and of every process under it (GCS, raylet, agents, workers, Ray Train workers
and their gloo process group, ICPNS table actors), sampled while a two-worker ICPNS run trains.
"""

import re
from pathlib import Path

import pytest
from listening import is_loopback, sampled_sockets

from raysearch.distributed.local_ray import loopback_environment
from raysearch.run import train

ROOT = Path(__file__).resolve().parent.parent
BASE = ["trainer.progress=false", "model.dim=16", "trainer.batch_size=256", "trainer.threads=1"]


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.2", False), ("::ffff:192.0.2.2", False),
])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_the_loopback_environment_names_the_switches_ray_and_gloo_read():
    env = loopback_environment()
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env.get("GLOO_SOCKET_IFNAME") in ("lo", "lo0", None)


@pytest.mark.ray
def test_every_socket_of_the_ray_cluster_raysearch_starts_is_on_loopback(ray_session, tmp_path):
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    with sampled_sockets() as seen:
        train([*BASE, "sampler=icpns", "sampler.n_communities=2", "sampler.pretrain_epochs=1",
               "sampler.finetune_epochs=2", "trainer.workers=2"], out=tmp_path / "run")
    names = " ".join(name for name, _, _ in seen)
    assert "gcs_server" in names and "raylet" in names and "RayTrainWorker" in names, sorted(seen)
    exposed = sorted(s for s in seen if not is_loopback(s[1]))
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_nothing_in_the_project_turns_ray_token_authentication_off():
    """Ray's token authentication stays as the user configured it: no code, test or CI script sets
    RAY_AUTH_MODE to "disabled" (the suite runs with a token of its own, tests/conftest.py)."""
    files = [*ROOT.glob("raysearch/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob(".ci/*"), ROOT / "pyproject.toml"]
    pattern = re.compile(r"RAY_AUTH_MODE\W{1,8}disabled")
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if p.name != Path(__file__).name and pattern.search(p.read_text())]
    assert offenders == []
