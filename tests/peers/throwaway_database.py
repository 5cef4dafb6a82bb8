"""Throwaway test databases: fast commits, since nobody needs them after a crash."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def commit_without_flush_wait(url: str) -> None:
    """Let every session on the URL's database commit without waiting for the WAL flush.

    PERF: a commit here waited 6-8 ms for fsync against 0.4-0.9 ms without it, and the
    suite commits tens of thousands of times. Visibility and locking are unchanged; only
    durability across a PostgreSQL crash is given up, which a throwaway database never
    needs. Production and the benchmarks keep the server's setting.
    """
    name = make_url(url).database
    engine = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        engine.dispose()
