"""Engine and sessions: one engine per process, one session per unit of work.

Every process (API, worker, scheduler) calls :func:`session_scope` or
:func:`get_sessionmaker`; nobody builds engines of their own, so pool sizes and
statement timeouts are set here once.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from shared.config import get_settings


@functools.cache
def get_engine() -> Engine:
    """Return the process-wide engine, created on first use (after any fork)."""
    settings = get_settings()
    connect_args = {"application_name": "omnistream"}
    if settings.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    return create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


@functools.cache
def get_sessionmaker(*, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions on the shared engine; ``read_only`` ones autocommit each statement.

    NOTE: expire_on_commit=False so objects stay readable for serialization after
    the commit that the API performs at the end of a request.
    """
    engine = get_engine()
    if read_only:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """Open a session, commit on success, roll back on any exception, always close."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engine() -> None:
    """Dispose of the engine and forget it (tests and forked children call this)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
