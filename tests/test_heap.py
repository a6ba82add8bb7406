"""Freed buffers stay in the heap (raysearch/heap.py): a large buffer allocated again after it was freed
does not page-fault again, in the main thread and, with the workers' environment, in another thread.

Counted, not timed: the minor page faults of this process (``getrusage``) while a 64 MiB buffer is
allocated, written and freed three times, each case in a fresh interpreter (the setting is process-wide).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from raysearch.heap import WORKER_HEAP_ENVIRONMENT, keep_freed_memory

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                                reason="the setting is glibc's")

BUFFER = 64 * 2**20
# The fewest faults that touching a fresh 64 MiB mapping takes: one a 2 MiB huge page (transparent huge
# pages; 16,384 with 4 KiB pages). Half of that: the buffer was mapped anew.
FRESH = BUFFER // 2**21 // 2

_PROBE = textwrap.dedent("""
    import json, resource, sys, threading
    import numpy as np
    from raysearch.heap import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    faults = []
    def rounds():
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            buffer = np.empty({n} // 4, dtype=np.float32)
            buffer.fill(1.0)  # touch every page
            del buffer
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    if sys.argv[2] == "thread":
        worker = threading.Thread(target=rounds)
        worker.start()
        worker.join()
    else:
        rounds()
    print(json.dumps({{"kept": kept, "faults": faults}}))
""").format(n=BUFFER)


def _faults(mode: str, where: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra_env or {})
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, where], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout)


@glibc_only
def test_without_the_setting_every_allocation_of_a_large_buffer_faults_its_pages_anew():
    faults = _faults("default", "main")["faults"]
    assert all(f >= FRESH for f in faults), faults


@glibc_only
def test_with_the_setting_a_freed_large_buffer_is_reused_without_faults():
    probe = _faults("keep", "main")
    assert probe["kept"] is True
    first, *again = probe["faults"]
    assert first >= FRESH  # the heap grows once
    assert all(f <= 2 for f in again), probe["faults"]


@glibc_only
def test_another_thread_reuses_freed_buffers_only_with_the_workers_environment():
    """Ray Tune and Ray Train train in a thread: its own arena maps large buffers afresh whatever the
    setting; ``WORKER_HEAP_ENVIRONMENT`` (given to the Ray processes raysearch starts) fixes that."""
    alone = _faults("keep", "thread")["faults"]
    assert all(f >= FRESH for f in alone), alone
    shared = _faults("keep", "thread", WORKER_HEAP_ENVIRONMENT)["faults"]
    assert shared[0] >= FRESH and all(f <= 2 for f in shared[1:]), shared


def test_without_glibc_the_setting_is_a_no_op(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False


@pytest.mark.ray
def test_the_ray_workers_raysearch_starts_get_the_heap_environment(ray_session):
    import ray

    @ray.remote
    def environment() -> dict[str, str | None]:
        return {key: os.environ.get(key) for key in WORKER_HEAP_ENVIRONMENT}

    assert ray.get(environment.remote()) == WORKER_HEAP_ENVIRONMENT
