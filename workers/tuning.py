"""Worker settings Dramatiq's command line does not expose."""

from __future__ import annotations

import gc

import dramatiq


class WorkerTimeout(dramatiq.Middleware):
    """Set how long an idle consumer sleeps between polls (``WORKER_TIMEOUT_MS``).

    Dramatiq's Redis consumer backs off up to this bound when its queue is empty,
    which is also the worst-case enqueue-to-start latency. The CLI has no flag for
    it, so this sets ``Worker.worker_timeout`` before the worker builds consumers.
    """

    def __init__(self, timeout_ms: int):
        self.timeout_ms = timeout_ms

    def before_worker_boot(self, broker, worker):
        worker.worker_timeout = self.timeout_ms


class FreezeStartupHeap(dramatiq.Middleware):
    """Move everything loaded at start-up out of the garbage collector's reach.

    PERF: the same reason as the web workers' ``gc.freeze()`` (``api/gunicorn_conf.py``):
    every older-generation collection walked the modules, tables and compiled
    statements loaded at boot. In the 1,000-rule automation run, whose evaluation
    allocates a trace per rule and event, collections cost ~0.5 ms of ~3.5 ms of the
    worker's CPU per event; frozen, ~0.08 ms.
    """

    def after_worker_boot(self, broker, worker):
        gc.freeze()
