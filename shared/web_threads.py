"""How many threads a web process runs, and how many of them may wait on a third party.

Threads let a gunicorn process overlap its requests' waits on PostgreSQL. With the
database on another machine every statement is a network round trip, and 4 threads keep
the process's core busy through them. With PostgreSQL on the web machine's own cores
(one machine running everything, as ``make run`` does) a wait is short and the database
needs those cores itself: more threads then mostly contend, for the GIL and for the CPU
PostgreSQL's backends run on. The inbox mix on 2 cores (``bench/inbox_mix.py``, three
alternating pairs of runs, bench/RESULTS.md 2026-12-07): 2 threads served 28 % more of
bare's rate than 4, PostgreSQL spent 17 % less CPU per request, and every paced p99 was
under 50 ms in 2 runs of 3 (with 4 threads, in none). So unless ``WEB_THREADS`` says, a
process runs 2 threads when ``DATABASE_URL`` names this machine and 4 otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import threading
from collections.abc import Iterator, Mapping

from sqlalchemy.engine import make_url

from shared.config import Settings, get_settings
from shared.errors import RateLimited

#: Threads per web process when PostgreSQL runs on the same machine, and elsewhere.
LOCAL_DATABASE_THREADS = 2
REMOTE_DATABASE_THREADS = 4
#: Agent tests a web process runs at once unless AI_MAX_CONCURRENT_TESTS says.
DEFAULT_AI_TESTS = 2
#: Seconds a request refused for want of a waiting slot is told to wait (``Retry-After``).
BUSY_RETRY_AFTER = 5


def web_threads(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """``WEB_THREADS``, else 2 with PostgreSQL on this machine and 4 without (see above)."""
    env = os.environ if env is None else env
    configured = env.get("WEB_THREADS", "").strip()
    if configured:
        return int(configured)
    return LOCAL_DATABASE_THREADS if database_is_local(settings, env) else REMOTE_DATABASE_THREADS


def database_is_local(settings: Settings, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``DATABASE_URL`` reaches PostgreSQL on this machine.

    A loopback address, ``localhost`` or a Unix socket (a host that is a directory, or no
    host at all and no ``PGHOST``) is this machine. Through PgBouncer it is not: the pooler
    often runs beside the web process while the database it lends runs elsewhere.
    """
    if settings.database_pgbouncer:
        return False
    env = os.environ if env is None else env
    url = make_url(settings.database_url)
    named = url.host or url.query.get("host") or env.get("PGHOST") or ""
    hosts = named if isinstance(named, tuple) else named.split(",")
    return all(_is_local_host(host.strip()) for host in hosts)


def _is_local_host(host: str) -> bool:
    if not host or host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def ai_test_slots(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Agent tests one web process runs at once: ``AI_MAX_CONCURRENT_TESTS``, else 2 but
    always one fewer than its threads, so a slow model leaves a thread to the inbox."""
    if settings.ai_max_concurrent_tests is not None:
        return settings.ai_max_concurrent_tests
    return max(1, min(DEFAULT_AI_TESTS, web_threads(settings, env) - 1))


def third_party_wait_slots(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Requests one web process lets wait on a third party at once: one fewer than its
    threads (at least one), so such waits always leave a thread to the inbox, unless
    ``AI_MAX_CONCURRENT_TESTS`` asks for more (the start warns of that)."""
    return max(1, web_threads(settings, env) - 1, settings.ai_max_concurrent_tests or 0)


@functools.cache
def _wait_slots(size: int) -> threading.BoundedSemaphore:
    """The process's waiting slots (one semaphore per size: settings may change in tests)."""
    return threading.BoundedSemaphore(size)


@contextlib.contextmanager
def waiting_on_third_party() -> Iterator[None]:
    """Hold one of the process's waiting slots while a request waits on a third party, or
    raise :class:`RateLimited` (429 with ``Retry-After``) when none is free.

    WHY: an agent test waits for the model and a test send for the tenant's receiver, each
    in a web thread, for as long as the other side takes (a test send's timeout is up to
    15 s, a model's retries minutes). Unbounded, one tenant's admin clicking "test"
    against a black-holed URL held every thread of a process (2 by default) and every
    tenant's inbox requests queued behind it. Whatever kind of wait and whichever tenant,
    at most :func:`third_party_wait_slots` of them hold a process's threads at once.
    """
    slots = _wait_slots(third_party_wait_slots(get_settings()))
    if not slots.acquire(blocking=False):
        raise RateLimited(
            "Too many tests are waiting on a model or a receiver on this server;"
            " try again in a few seconds",
            retry_after=BUSY_RETRY_AFTER,
        )
    try:
        yield
    finally:
        slots.release()
