"""Worker settings Dramatiq's command line does not expose."""

from __future__ import annotations

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
