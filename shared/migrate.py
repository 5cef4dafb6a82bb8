"""Create the database if it is absent and apply every Alembic migration.

``python -m shared.migrate`` is what ``make run`` and the test fixtures call, so a
fresh machine and a test run reach the same schema the same way.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from shared.config import get_settings

log = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(database_url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = database_url
    config.attributes["skip_logging"] = True
    return config


def _maintenance_engine(database_url: str):
    return create_engine(
        make_url(database_url).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,
    )


def create_database(database_url: str) -> bool:
    """Create the URL's database unless it exists; return whether it was created."""
    name = make_url(database_url).database
    engine = _maintenance_engine(database_url)
    try:
        with engine.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        engine.dispose()


def drop_database(database_url: str) -> None:
    """Drop the URL's database, disconnecting anyone still attached (tests only)."""
    name = make_url(database_url).database
    engine = _maintenance_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def copy_database(source_url: str, target_url: str) -> None:
    """Create the target URL's database as a copy of the source's (benchmarks only).

    The source must have no session open (PostgreSQL waits 5 s for them to leave, then
    refuses: ``ObjectInUse``). From PostgreSQL 15 the files are copied (``STRATEGY
    FILE_COPY``: ~1 s for 1.4 GB here) rather than written through the WAL (~3.5 s, and a
    WAL the size of the database that the next checkpoint flushes, during whatever runs
    next).
    """
    source, target = make_url(source_url).database, make_url(target_url).database
    engine = _maintenance_engine(target_url)
    try:
        with engine.connect() as conn:
            file_copy = conn.dialect.server_version_info >= (15,)
            strategy = " STRATEGY FILE_COPY" if file_copy else ""
            conn.execute(text(f'CREATE DATABASE "{target}" TEMPLATE "{source}"{strategy}'))
    finally:
        engine.dispose()


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # NOTE: DDL and Alembic's version row go to PostgreSQL itself, never through PgBouncer.
    url = get_settings().direct_database_url
    safe = make_url(url).render_as_string(hide_password=True)
    try:
        if create_database(url):
            log.info("created database %s", make_url(url).database)
        upgrade(url)
    except OperationalError as exc:
        log.error(
            "PostgreSQL is not reachable at %s (%s).\n"
            "Start it (for example: pg_ctlcluster --skip-systemctl-redirect "
            "$(ls /etc/postgresql) main start) or set DATABASE_URL.",
            safe,
            exc.orig,
        )
        return 1
    log.info("database %s is at the latest migration", safe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
