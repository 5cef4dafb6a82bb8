"""``python -m scheduler``: run the scheduled jobs while this process leads.

Run one per deployment, or more as hot standbys (see :mod:`scheduler.leader`).
SIGTERM or SIGINT stops the jobs, releases the lock and exits 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from scheduler import jobs
from scheduler.leader import Leadership
from shared import logs
from shared.preflight import enforce_connection_budget
from workers import publisher

log = logging.getLogger("scheduler")


def main() -> int:
    # NOTE: before anything reads the settings, so that even their warnings are in LOG_FORMAT.
    logs.configure()
    import workers.main  # noqa: F401  (declares every actor on the broker workers.broker built)

    # NOTE: APScheduler logs every run at INFO; ours log what matters (re-drives, failures).
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Events emitted by jobs publish after their commit, like everywhere else.
    publisher.install()

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    enforce_connection_budget("the scheduler", report=True)
    leadership = Leadership()
    running: list[BackgroundScheduler] = []

    def start_jobs() -> None:
        # NOTE: a fresh scheduler per term: APScheduler 3 keeps no state worth reusing.
        scheduler = BackgroundScheduler(timezone=dt.UTC)
        jobs.schedule(scheduler, guard=leadership.still_leads)
        scheduler.start()
        running.append(scheduler)

    def stop_jobs(graceful: bool) -> None:
        # A clean stop lets a running job finish; a lost lead does not wait for one
        # whose connection may be as dead as the lock's (the guard already stops new runs).
        running.pop().shutdown(wait=graceful)

    leadership.run(stop, on_elected=start_jobs, on_deposed=stop_jobs)
    log.info("scheduler stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
