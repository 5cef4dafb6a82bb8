"""A stack sampler for worker processes: where their busy threads are, counted.

A diagnosis aid (not imported by anything of the product): loaded as an extra module of
the worker (``python -m workers bench.worker_sampler --processes 2``) with
``WORKER_SAMPLER_OUT`` set to a path prefix, each worker process samples every thread's
Python stack every 10 ms and writes ``<prefix>.<pid>`` every 5 s: per (our innermost
frame, the leaf frame) how many samples. Threads waiting in a lock, a queue, a select or
a sleep are left out (leaf frames of ``threading``, ``queue``, ``selectors``...); a
thread blocked inside C (a socket read) shows its last Python frame.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections import Counter

_IDLE_FILES = ("threading.py", "queue.py", "selectors.py")
_OURS = ("/shared/", "/workers/")


def _where(frame) -> tuple[str, str]:
    leaf = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"
    ours = "-"
    walk = frame
    while walk is not None:
        name = walk.f_code.co_filename
        if any(part in name for part in _OURS) and "/.venv/" not in name:
            ours = f"{name.split('/wt-')[-1]}:{walk.f_code.co_name}:{walk.f_lineno}"
            break
        walk = walk.f_back
    return ours, leaf


def _run(prefix: str) -> None:
    counts: Counter = Counter()
    me = threading.get_ident()
    path = f"{prefix}.{os.getpid()}"
    last = time.monotonic()

    def dump() -> None:
        with open(path, "w") as out:
            total = sum(counts.values())
            out.write(f"samples {total}\n")
            for (ours, leaf), n in counts.most_common(80):
                out.write(f"{n:7d} {ours}  <- {leaf}\n")

    atexit.register(dump)
    while True:
        time.sleep(0.01)
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            if os.path.basename(frame.f_code.co_filename) in _IDLE_FILES:
                continue
            counts[_where(frame)] += 1
        if time.monotonic() - last > 5:
            last = time.monotonic()
            dump()


if os.environ.get("WORKER_SAMPLER_OUT"):
    threading.Thread(
        target=_run, args=(os.environ["WORKER_SAMPLER_OUT"],), daemon=True, name="sampler"
    ).start()
