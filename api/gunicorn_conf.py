"""Gunicorn settings for the ``web`` process (``gunicorn -c python:api.gunicorn_conf``).

Threads, not processes, carry concurrency: requests spend most of their time
waiting on PostgreSQL, and each process holds its own connection pool.
"""

import logging
import multiprocessing
import os

from shared import logs


def _threads() -> int:
    from shared.config import get_settings
    from shared.web_threads import REMOTE_DATABASE_THREADS, web_threads

    try:
        settings = get_settings()
    except Exception:  # on_starting reports bad settings, as for every other start
        return int(os.environ.get("WEB_THREADS") or REMOTE_DATABASE_THREADS)
    return web_threads(settings)


bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# gthread, except that a new connection waits for its request in the poller, not in a
# thread (api/gunicorn_worker.py says why).
worker_class = "api.gunicorn_worker.ThreadWorker"
# WEB_THREADS, else 2 with PostgreSQL on this machine and 4 without (shared/web_threads.py).
threads = _threads()
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# NOTE: the app is built in each worker after fork; nothing opens a socket before then.
preload_app = False
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# LOG_FORMAT=json: gunicorn's own lines (boot, worker exits, access log) as JSON too.
logconfig_dict = logs.gunicorn_logconfig()
# NOTE: gunicorn 25+ opens a control socket at a fixed per-user path by default, so two
# instances on one host (web + a benchmark, two deployments) would fight over it.
# Set WEB_CONTROL_SOCKET to a path to get it back for `gunicornc`.
control_socket = os.environ.get("WEB_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


def post_worker_init(worker):
    """Move everything loaded at start-up out of the garbage collector's reach.

    PERF: a full collection walks every live object while holding the GIL; with
    the app's ~150k start-up objects that stalled a worker (and every request in
    it) for 60-120 ms and set the inbox list's p99. Frozen objects are never
    scanned again; they are the app's modules and tables, alive for the process's
    life anyway (Python's gc.freeze() is made for exactly this in forking servers).
    """
    import gc

    gc.collect()
    gc.freeze()


def post_fork(server, worker):
    """Set the app's logging up in each worker before the app is imported.

    Importing it reads the settings; any line logged then must be in LOG_FORMAT like
    every other (create_app's own call then changes nothing).
    """
    logs.configure()


def on_starting(server):
    """Once per start, from the master: warn of the development SECRET_KEY and of agent
    tests that may take every thread, and refuse a fleet over its PostgreSQL connection
    budget in production."""
    from shared.config import get_settings, warn_if_insecure
    from shared.preflight import enforce_connection_budget
    from shared.web_threads import ai_test_slots

    logs.configure()
    settings = get_settings()
    warn_if_insecure(settings)
    warn_if_tests_take_every_thread(ai_test_slots(settings), server.cfg.threads)
    enforce_connection_budget("the web server")


def warn_if_tests_take_every_thread(tests: int, threads: int) -> None:
    """Say so when AI agent tests, which wait for the model in the request, may hold every
    thread of a web process (see ``shared.ai.trial``)."""
    if tests >= threads:
        logging.getLogger("api.gunicorn_conf").warning(
            "AI_MAX_CONCURRENT_TESTS (%d) is not below WEB_THREADS (%d): agent tests waiting"
            " for a slow model can hold every thread of a web process",
            tests,
            threads,
        )
