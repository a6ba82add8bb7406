"""``raysearch ui``: the MLflow UI as a process group that never outlives the ``raysearch`` that started it.

``mlflow ui`` starts a server (uvicorn or gunicorn) and its workers, and forwards only the signals it gets
itself: a ``raysearch ui`` killed by its PID (``kill``, ``kill -9``, a closed terminal) used to leave them
holding the port. Here the UI runs under a small guard (``python -m raysearch.ui``, below) that starts
``mlflow ui`` in a process group of its own and watches a pipe from ``raysearch``. ``raysearch`` alone holds
the pipe's write end, so however it ends (Ctrl-C, SIGTERM, SIGHUP or SIGKILL) the guard reads end-of-file,
sends SIGTERM to the whole group, waits up to ``GRACE_SECONDS`` and then SIGKILLs whatever is left. POSIX
only (pipes and process groups; no Linux-only ``prctl``). ``raysearch`` itself waits for the guard when it
is stopped by a signal it can catch, so the port is free when it returns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

GRACE_SECONDS = 5.0  # SIGTERM, then this long for the group to exit, then SIGKILL
_POLL = 0.1


def mlflow_ui_command(uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


class _Stop(Exception):
    """A catchable signal asked ``raysearch ui`` to stop."""


def serve(command: Sequence[str]) -> int:
    """Run ``command`` (the MLflow UI) under the guard until it exits or this process is stopped; returns
    its exit status (0 when stopped by Ctrl-C, SIGTERM or SIGHUP)."""
    read_end, write_end = os.pipe()  # not inheritable: only this process holds the write end
    guard = subprocess.Popen([sys.executable, "-m", "raysearch.ui", *command], stdin=read_end)
    os.close(read_end)

    def stop(signum, _frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return guard.wait()
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # a second signal ends raysearch at once; the guard still cleans up
        os.close(write_end)  # the guard stops the UI's group now
        try:
            guard.wait(timeout=2 * GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            guard.kill()


# --------------------------------------------------------------------------- the guard (python -m raysearch.ui)
def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM every process of ``child``'s group, SIGKILL what is left after ``GRACE_SECONDS``, and wait
    until the group is empty (the child reaped; its descendants are reaped by init)."""
    pgid = child.pid  # the child leads its own group (start_new_session)
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, GRACE_SECONDS)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            child.poll()  # reap it: a zombie still counts as a member of the group
            if not _group_alive(pgid):
                return
            time.sleep(_POLL)


def _guard(command: Sequence[str]) -> int:
    """Start ``command`` in a new process group; stop the group when stdin reaches end-of-file (the
    ``raysearch`` that started this guard has ended) or on SIGTERM/SIGINT/SIGHUP; exit with its status."""
    # Started before any handler is set here: an ignored signal would stay ignored in the child.
    child = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, start_new_session=True)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches raysearch, which closes the pipe

    def watch_parent() -> None:
        while os.read(0, 4096):
            pass
        stopping.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.is_set() and child.poll() is None:
        stopping.wait(_POLL)
    _stop_group(child)  # also when the UI ended on its own: its server and workers go with it
    code = child.poll()
    return 0 if stopping.is_set() or code is None else code


if __name__ == "__main__":
    sys.exit(_guard(sys.argv[1:]))
