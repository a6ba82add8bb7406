"""`ray job submit` against a local `ray start --head`, as README documents it (runs once, slow)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from listening import is_loopback, sampled_sockets

from raysearch.distributed.local_ray import loopback_interface
from raysearch.distributed.process_group import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _wait_for_dashboard(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as err:
            if err.code == 401:  # up, and asking for the token (Ray's token authentication)
                return
            time.sleep(1)
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no Ray dashboard at {url} after {timeout} s")


def _submit(url: str, env: dict, out: Path) -> subprocess.CompletedProcess:
    """The README's `ray job submit` of a two-worker training; retried while the job agent comes up (a few
    seconds after the dashboard, more on a busy machine)."""
    for _ in range(60):
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", str(ROOT), "--",
             "raysearch", "train", "trainer.epochs=2", "trainer.workers=2", "trainer.progress=false",
             f"--out={out}"],
            env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in job.stderr + job.stdout:
            break
        time.sleep(3)
    return job


@pytest.mark.slow
@pytest.mark.ray
def test_ray_job_submit_runs_a_distributed_training(tmp_path):
    # The README's loopback-only recipe: Ray's single-machine mode (node address 127.0.0.1), gloo on the
    # loopback interface; the suite's token authentication (conftest) for `ray start` and the submit.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "GLOO_SOCKET_IFNAME": loopback_interface() or "lo"}
    gcs_port, dash_port = free_port(), free_port()
    # Its own (short: socket paths are length-limited) temp dir, so that the cluster file it leaves
    # behind is not picked up by later ray.init() calls.
    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", f"--port={gcs_port}",
         "--node-ip-address=127.0.0.1",
         f"--temp-dir={temp_dir}",
         # Free ports for the node's agents: the defaults (e.g. 52365) may be held by another Ray on this
         # machine (the test session's own cluster), and a job server whose agent cannot bind never
         # accepts a job ("No available agent").
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--ray-client-server-port={free_port()}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{dash_port}"
    out = tmp_path / "run"
    try:
        _wait_for_dashboard(url, head)
        with sampled_sockets(psutil.Process(head.pid), every=0.25) as seen:
            job = _submit(url, env, out)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        names = " ".join(name for name, _, _ in seen)
        assert "gcs_server" in names and "RayTrainWorker" in names, sorted(seen)
        exposed = sorted(s for s in seen if not is_loopback(s[1]))
        assert not exposed, f"listening beyond loopback: {exposed}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever of the cluster is still up
        except ProcessLookupError:
            pass
        shutil.rmtree(temp_dir, ignore_errors=True)
    results = json.loads((out / "results.json").read_text())
    assert results["timings"]["workers"] == 2
    assert results["test_evaluated_once"]
