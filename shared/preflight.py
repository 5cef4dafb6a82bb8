"""Check that PostgreSQL and Redis answer before the platform starts, and say how to fix it.

Also adds up the fleet's PostgreSQL connections (:mod:`shared.db_budget`), prints the
budget and, with ``ENV=production``, refuses a fleet whose peak use exceeds what the
server allows (elsewhere it warns: a developer's many-core laptop must still start).
"""

from __future__ import annotations

import logging
import sys

import redis
from pydantic import ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from shared import db_budget, logs
from shared.config import Settings, get_settings

log = logging.getLogger(__name__)
#: A process refused for the connection budget exits with this (sysexits' EX_CONFIG).
EXIT_OVER_BUDGET = 78

_START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def redis_start_hint(url: str) -> str:
    """The command that starts a local Redis where ``url`` (REDIS_URL) looks for it."""
    where = redis.connection.parse_url(url)
    listen = (
        f"--port 0 --unixsocket {where['path']}"
        if "path" in where
        else f"--bind 127.0.0.1 -::1 --port {where.get('port', 6379)}"
    )
    return f'redis-server --daemonize yes {listen} --save "" --appendonly no'


def check_postgres(url: str) -> str | None:
    server = make_url(url).set(database="postgres")
    engine = create_engine(server, pool_pre_ping=False, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


def server_answered(error: str) -> bool:
    """Whether PostgreSQL itself refused (unknown role, bad password, no such database).

    WHY: then the server is up, and the hint to start one would send a newcomer the
    wrong way; libpq reports the server's refusal as ``FATAL:``.
    """
    return "FATAL:" in error


class RedisRefusal(str):
    """Redis answered but refused (a password, a database number): it is not down."""


def check_redis(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        # NOTE: redis-py raises a ConnectionError subclass for a refused AUTH too.
        if isinstance(exc, redis.AuthenticationError):
            return RedisRefusal(exc)
        return str(exc)
    except redis.RedisError as exc:
        return RedisRefusal(exc)
    finally:
        client.close()
    return None


def check_rabbitmq(url: str) -> str | None:
    import pika
    import pika.exceptions

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = 3
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.AMQPError as exc:
        return repr(exc)
    return None


def connection_budget(settings: Settings) -> db_budget.Budget | None:
    """The fleet's connection budget against the server's limits (None if unreachable)."""
    engine = create_engine(
        make_url(settings.direct_database_url).set(database="postgres"),
        pool_pre_ping=False,
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect() as conn:
            limits = db_budget.server_limits(conn)
    except OperationalError:
        return None
    finally:
        engine.dispose()
    return db_budget.budget(settings, *limits)


def enforce_connection_budget(process: str, *, report: bool = False) -> None:
    """At a platform process's start: refuse (``SystemExit``) a fleet over budget in production.

    ``make run`` runs the preflight, but production starts the Procfile's processes
    directly; each checks the fleet here so an over-budget fleet does not boot and fail
    with "too many clients" at its busiest moment. Outside production it warns; an
    unreachable server is left to the process's own errors. ``report`` logs the budget
    even when it fits (the scheduler does: one line of sizing per deployment start).
    """
    settings = get_settings()
    budget = connection_budget(settings)
    if budget is None:
        log.warning("%s: PostgreSQL did not answer; its connection budget is not checked", process)
        return
    if not budget.refused:
        if report:
            log.info("%s", budget.report())
        return
    if settings.env == "production":
        log.error(
            "%s\n%s refuses to start: the fleet can open more PostgreSQL connections than"
            " the server allows (README: Deploying on several machines).",
            budget.report(),
            process,
        )
        raise SystemExit(EXIT_OVER_BUDGET)
    log.warning(
        "%s\n%s: over budget; starting anyway (ENV is not production).", budget.report(), process
    )


def settings_problem(error: ValidationError) -> str:
    """What is wrong with the environment's settings, one line per refused value."""
    lines = [
        f"  - {' '.join(str(part).upper() for part in item['loc'])}: {item['msg']}".replace(
            "  - : Value error, ", "  - "
        )
        for item in error.errors()
    ]
    return "The settings are refused:\n" + "\n".join(lines)


def main() -> int:
    try:
        settings = get_settings()
        logs.log_format()
    except ValidationError as exc:
        print(settings_problem(exc), file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:
        # NOTE: production's refusals and LOG_FORMAT's are checked outside the fields.
        print(f"The settings are refused:\n  - {exc}", file=sys.stderr)
        return 1
    problems = []
    pg_url = make_url(settings.database_url)
    if error := check_postgres(settings.database_url):
        where = f"{pg_url.host}:{pg_url.port or 5432}"
        shown = f"DATABASE_URL={pg_url.render_as_string(hide_password=True)}"
        if server_answered(error):
            problems.append(
                f"PostgreSQL at {where} refused the connection ({shown}): {error}\n"
                "  check the user, password and database in DATABASE_URL."
            )
        else:
            problems.append(
                f"PostgreSQL is not reachable at {where} ({shown}): {error}\n"
                f"  start it with: {_START_POSTGRES}\n  or point DATABASE_URL at a running server."
            )
    elif (budget := connection_budget(settings)) is not None:
        print(budget.report(), file=sys.stderr)
        if budget.refused and settings.env == "production":
            problems.append(
                "The configured fleet can open more PostgreSQL connections than the server"
                " allows (see the budget above; README: Deploying on several machines)."
            )
        elif budget.refused:
            # NOTE: only production refuses: a developer's many-core laptop runs one web
            # process per core against a stock max_connections and must still start.
            print(
                "WARNING: over budget; starting anyway (ENV is not production). Under full"
                " load PostgreSQL may refuse connections.",
                file=sys.stderr,
            )
    if isinstance(error := check_redis(settings.redis_url), RedisRefusal):
        problems.append(
            f"Redis at {settings.redis_url} (REDIS_URL) refused it: {error}\n"
            "  check the password and database number in REDIS_URL."
        )
    elif error:
        problems.append(
            f"Redis is not reachable at {settings.redis_url} (REDIS_URL): {error}\n"
            f"  start it with: {redis_start_hint(settings.redis_url)}\n"
            "  or point REDIS_URL at a running server."
        )
    if settings.uses_rabbitmq and (error := check_rabbitmq(settings.effective_broker_url)):
        problems.append(
            f"RabbitMQ is not reachable at BROKER_URL={make_url(settings.effective_broker_url)!s}"
            f": {error}\n  start it with: rabbitmq-server -detached\n"
            "  or unset BROKER_URL to use Redis as the broker."
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
