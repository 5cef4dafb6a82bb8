"""Deterministic CPU profile of a worker process's Dramatiq threads (a diagnosis aid).

Loaded as an extra module of the worker with ``WORKER_CPROFILE_OUT`` a path prefix: each
worker and consumer thread runs under its own ``cProfile.Profile`` timed by the thread's
CPU clock (waits cost nothing) and writes ``<prefix>.<pid>.<thread id>.prof`` when it ends
(the worker stopping), to merge with ``pstats``. The profiler slows the process down: read
the shares, not the absolute times.
"""

from __future__ import annotations

import cProfile
import os
import threading
import time

from dramatiq import worker as _worker


def _profiled(run, prefix: str):
    def wrapper(self):
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()
            profile.dump_stats(f"{prefix}.{os.getpid()}.{threading.get_ident()}.prof")

    return wrapper


if prefix := os.environ.get("WORKER_CPROFILE_OUT"):
    _worker._WorkerThread.run = _profiled(_worker._WorkerThread.run, prefix)
    _worker._ConsumerThread.run = _profiled(_worker._ConsumerThread.run, prefix)
