"""``raysearch ui`` killed by its PID takes the MLflow UI's whole process tree with it (issue 21).

The fast tests run ``raysearch ui`` against a stand-in ``mlflow`` package (first on PYTHONPATH) shaped like
the real one: ``python -m mlflow ui`` starts a server process that binds the port and starts a worker,
and neither dies with its parent; the worker even ignores SIGTERM, as a hung worker would. The slow test
runs the real MLflow UI (its start-up alone takes from seconds to a minute on a loaded machine).
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

FAKE_MLFLOW_MAIN = textwrap.dedent('''
    import subprocess, sys
    SERVER = """
    import signal, socket, subprocess, sys, time
    s = socket.socket()
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen()
    worker = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "open(os.environ['FAKE_WORKER_READY'], 'w').close(); time.sleep(600)")
    subprocess.Popen([sys.executable, "-c", worker])
    time.sleep(600)
    """
    port = sys.argv[sys.argv.index("--port") + 1]
    subprocess.Popen([sys.executable, "-c", SERVER, port]).wait()
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT does not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(" ".join(p.cmdline())[:120])
        except psutil.NoSuchProcess:
            pass
    return out


def start_ui(tmp_path: Path, port: int, env: dict, startup_s: float) -> tuple[subprocess.Popen, list]:
    """``raysearch ui`` on ``port``, once the port listens (and the stand-in's worker, if any, is ready):
    (its process, every process under it)."""
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 (closed with the test's tmp dir)
    proc = subprocess.Popen([sys.executable, "-m", "raysearch.cli", "ui", "--port", str(port),
                             "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + startup_s
    ready = Path(env.get("FAKE_WORKER_READY", tmp_path))
    while not listening(port) or not ready.exists():
        assert proc.poll() is None, (tmp_path / "ui.log").read_text()
        assert time.monotonic() < deadline, f"the UI did not listen on {port} in {startup_s} s"
        time.sleep(0.2)
    return proc, psutil.Process(proc.pid).children(recursive=True)


def stop_and_check(proc: subprocess.Popen, tree: list, port: int, sig: int) -> None:
    try:
        _stop_and_check(proc, tree, port, sig)
    finally:  # leave nothing running, whatever the outcome
        for p in tree:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def _stop_and_check(proc: subprocess.Popen, tree: list, port: int, sig: int) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGTERM:  # raysearch waits for the group: nothing is left once it has returned
        assert proc.returncode == 0
        assert alive(tree) == [] and port_free(port)
        return
    deadline = time.monotonic() + 20  # SIGKILL: the guard notices, SIGTERMs the group, SIGKILLs after 5 s
    while (alive(tree) or not port_free(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(tree) == [], "survived raysearch ui"
    assert port_free(port)


@pytest.fixture
def fake_mlflow_env(tmp_path) -> dict:
    package = tmp_path / "fake" / "mlflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MLFLOW_MAIN)
    root = Path(__file__).resolve().parent.parent
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(package.parent), str(root)]),
            "FAKE_WORKER_READY": str(tmp_path / "worker-ready")}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_raysearch_ui_ends_the_servers_and_workers_and_frees_the_port(tmp_path, fake_mlflow_env, sig):
    port = free_port()
    proc, tree = start_ui(tmp_path, port, fake_mlflow_env, startup_s=20)
    commands = [" ".join(p.cmdline()) for p in tree]
    assert any("-m mlflow ui" in c for c in commands) and any("SIG_IGN" in c for c in commands), commands
    stop_and_check(proc, tree, port, sig)


@pytest.mark.slow
def test_killing_raysearch_ui_ends_the_real_mlflow_ui(tmp_path):
    port = free_port()
    proc, tree = start_ui(tmp_path, port, dict(os.environ), startup_s=150)
    assert any("uvicorn" in " ".join(p.cmdline()) or "gunicorn" in " ".join(p.cmdline()) for p in tree)
    stop_and_check(proc, tree, port, signal.SIGKILL)
