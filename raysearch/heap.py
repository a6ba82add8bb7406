"""Keep freed tensor buffers in the process heap, so that a training step does not page-fault its memory anew.

glibc's ``malloc`` serves every request above its mmap threshold (at most 32 MiB on 64-bit Linux) with a
fresh ``mmap`` and gives it back to the kernel at ``free``. A CPU step whose temporaries exceed that size
(a sampled softmax over 64 negatives at 4,096 rows: (4,096 x 65 x 64) floats, 68 MB a tensor; MixGCF's
mixed candidates; LightGCL's contrastive logits) therefore touches every page of every temporary for the
first time, each step: a minor page fault per page (4 KiB, or 2 MiB with transparent huge pages). That, not arithmetic, was three quarters of such a
step (BENCHMARKS.md, "Freed memory kept in the heap"). ``keep_freed_memory`` turns the mmap path off and the
heap's trimming down, so freed buffers are reused by the next step at no fault. Arithmetic is untouched:
the same floats come out, only faster.

A thread other than the main one allocates from its own arena, whose heaps cannot grow past 64 MiB and
fall back to ``mmap`` above that whatever the setting; Ray Tune and Ray Train run the training function in
such a thread, so the Ray processes raysearch starts get ``WORKER_HEAP_ENVIRONMENT`` (one arena a process:
every thread allocates from the main heap). The cost: a process keeps its peak heap (the next step needs
it again) instead of returning it between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

# For processes started with it (Ray's workers): threads share the main arena, whose heap grows without
# the 64 MiB cap of a thread's arena, so large buffers are reused in every thread too.
WORKER_HEAP_ENVIRONMENT = {"MALLOC_ARENA_MAX": "1"}


def _glibc_mallopt():
    """glibc's ``mallopt``, or None where the C library is another (macOS, musl) or cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # glibc alone has gnu_get_libc_version; musl's mallopt is a stub that does nothing
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """Serve large allocations of this process from the heap and never trim it (glibc); process-wide.

    Returns True when glibc took both settings, False where there is no glibc (nothing changes: the run is
    as fast as before, no slower).
    """
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _INT_MAX))
