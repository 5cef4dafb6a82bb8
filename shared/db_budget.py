"""How many PostgreSQL connections the whole fleet can open, against ``max_connections``.

Every process has one SQLAlchemy pool (``shared.db``) that opens at most
``DB_POOL_SIZE + DB_MAX_OVERFLOW`` connections; the scheduler adds its leader-lock
connection. Adding machines multiplies those pools, and PostgreSQL refuses the
connection past ``max_connections`` ("too many clients"), at peak load, in
whichever process asked last. The budget adds the fleet up before that happens:

``ceiling``
    What the pools could open: processes x (pool size + overflow), plus one lock
    connection per scheduler. Rarely reached: a process cannot use more connections
    at once than it has threads doing database work.
``peak``
    What the processes can use at once: per process the smaller of its pool's
    ceiling and its threads (gunicorn's, :func:`shared.web_threads.web_threads`;
    Dramatiq's ``--threads`` x 2, a margin for a job that opens a second session;
    APScheduler's 10 job threads; the stream server's to_thread pool).

Policy (``python -m shared.preflight``, run by ``make run``/``make test``, and the
scheduler at start): a ``peak`` beyond what PostgreSQL has left (``max_connections``
minus ``superuser_reserved_connections`` minus ``DB_RESERVED_CONNECTIONS``) is
refused, because that fleet fails at its busiest moment; a ``ceiling`` beyond it is
only reported, because refusing it would refuse sane fleets (the defaults' pools
add to more than a default server's 100 while their threads use about 70).

Through PgBouncer (``DATABASE_PGBOUNCER=true``) the pools connect to PgBouncer, not
to PostgreSQL: only the direct connections (the schedulers' locks, migrations) and
PgBouncer's own server pool count against ``max_connections``; the pools' peak then
bounds PgBouncer's ``max_client_conn``.

The counts are fleet-wide: ``FLEET_WEB_PROCESSES`` (default ``WEB_CONCURRENCY``, else
the CPU count, as gunicorn), ``FLEET_WORKER_PROCESSES`` (default ``WORKER_PROCESSES``,
else 2, as the Procfile), ``FLEET_SCHEDULERS`` (1), ``FLEET_STREAM_PROCESSES`` (1).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import Settings
from shared.web_threads import web_threads

#: APScheduler's BackgroundScheduler runs jobs on a pool of 10 threads (its default).
SCHEDULER_JOB_THREADS = 10
#: A margin: a job may open a second session while its first is still open.
CONNECTIONS_PER_WORKER_THREAD = 2


@dataclass(frozen=True)
class Role:
    name: str
    processes: int
    ceiling_each: int
    peak_each: int
    direct_each: int = 0  # connections that bypass PgBouncer (the scheduler's lock)

    @property
    def ceiling(self) -> int:
        return self.processes * (self.ceiling_each + self.direct_each)

    @property
    def peak(self) -> int:
        return self.processes * (self.peak_each + self.direct_each)


@dataclass(frozen=True)
class Budget:
    roles: tuple[Role, ...]
    max_connections: int
    superuser_reserved: int
    reserved: int
    pgbouncer: bool

    @property
    def available(self) -> int:
        """What the fleet may use: the server's connections minus what is kept free."""
        return self.max_connections - self.superuser_reserved - self.reserved

    @property
    def ceiling(self) -> int:
        if self.pgbouncer:
            return sum(role.processes * role.direct_each for role in self.roles)
        return sum(role.ceiling for role in self.roles)

    @property
    def peak(self) -> int:
        if self.pgbouncer:
            return sum(role.processes * role.direct_each for role in self.roles)
        return sum(role.peak for role in self.roles)

    @property
    def pooled_peak(self) -> int:
        """What all pools use at once: PgBouncer's clients when it is in between."""
        return sum(role.processes * role.peak_each for role in self.roles)

    @property
    def refused(self) -> bool:
        return self.peak > self.available

    def report(self) -> str:
        """The table the preflight prints, and the verdict."""
        lines = [
            "PostgreSQL connection budget (whole fleet):",
            f"  {'process':<10} {'count':>5} {'pool ceiling':>12} {'peak use':>9}",
        ]
        for role in self.roles:
            lines.append(f"  {role.name:<10} {role.processes:>5} {role.ceiling:>12} {role.peak:>9}")
        lines.append(
            f"  max_connections {self.max_connections} - superuser_reserved"
            f" {self.superuser_reserved} - DB_RESERVED_CONNECTIONS {self.reserved}"
            f" = {self.available} available"
        )
        if self.pgbouncer:
            lines.append(
                f"  through PgBouncer: {self.peak} direct connection(s) here; the pools'"
                f" peak of {self.pooled_peak} goes to PgBouncer (its max_client_conn must"
                " cover it, its default_pool_size x pools must fit the available)"
            )
        if self.refused:
            lines.append(
                f"  OVER BUDGET: the fleet can use {self.peak} connections at once, PostgreSQL"
                f" has {self.available}. Lower DB_POOL_SIZE/DB_MAX_OVERFLOW or thread"
                " counts, raise max_connections, or put PgBouncer in between"
                " (DATABASE_PGBOUNCER=true)."
            )
        elif self.ceiling > self.available:
            lines.append(
                f"  ok: the pools' ceiling ({self.ceiling}) exceeds {self.available}, but"
                f" the processes' threads bound their use to {self.peak}."
            )
        else:
            lines.append(f"  ok: at most {self.ceiling} of {self.available}.")
        return "\n".join(lines)


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    return int(value) if value else default


def fleet_roles(settings: Settings, env: Mapping[str, str] | None = None) -> tuple[Role, ...]:
    """Each process kind with its count and connections, from settings and the process env."""
    env = os.environ if env is None else env
    pool = settings.db_pool_size + settings.db_max_overflow
    web = settings.fleet_web_processes
    if web is None:
        web = _env_int(env, "WEB_CONCURRENCY", multiprocessing.cpu_count())
    workers = settings.fleet_worker_processes
    if workers is None:
        workers = _env_int(env, "WORKER_PROCESSES", 2)
    threads_each = web_threads(settings, env)
    worker_threads = _env_int(env, "WORKER_THREADS", 8)
    stream_threads = min(32, multiprocessing.cpu_count() + 4)  # asyncio.to_thread's pool
    return (
        Role("web", web, pool, min(pool, threads_each)),
        Role("worker", workers, pool, min(pool, CONNECTIONS_PER_WORKER_THREAD * worker_threads)),
        Role(
            "scheduler",
            settings.fleet_schedulers,
            pool,
            min(pool, SCHEDULER_JOB_THREADS),
            direct_each=1,
        ),
        Role("stream", settings.fleet_stream_processes, pool, min(pool, stream_threads)),
    )


def server_limits(connection) -> tuple[int, int]:
    """``max_connections`` and ``superuser_reserved_connections`` of the server."""
    max_connections = int(connection.exec_driver_sql("SHOW max_connections").scalar())
    reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar())
    return max_connections, reserved


def budget(
    settings: Settings,
    max_connections: int,
    superuser_reserved: int,
    env: Mapping[str, str] | None = None,
) -> Budget:
    return Budget(
        roles=fleet_roles(settings, env),
        max_connections=max_connections,
        superuser_reserved=superuser_reserved,
        reserved=settings.db_reserved_connections,
        pgbouncer=settings.database_pgbouncer,
    )
