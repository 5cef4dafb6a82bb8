"""Read requests' sessions: one pooled connection, checked out on first use, returned on close.

``shared.db.ReadSession`` hands its connection out directly (no session transaction);
ORM queries on the same session must run on that same connection, and closing the
session must give it back to the pool, whichever path ran first.
"""

from __future__ import annotations

import contextlib
import threading

from sqlalchemy import event, select, text

from shared.db import fetch_rows, get_engine, get_sessionmaker
from shared.models import User

_PID = select(text("pg_backend_pid()"))


@contextlib.contextmanager
def pool_use_here():
    """Checkouts and checkins of the shared pool made by this thread.

    NOTE: not ``pool.checkedout()``: the in-process worker's threads share the pool,
    and a registration's events may be dispatched while the test runs.
    """
    me, pool = threading.get_ident(), get_engine().pool
    counts = {"out": 0, "in": 0}

    def checked_out(*_args):
        if threading.get_ident() == me:
            counts["out"] += 1

    def checked_in(*_args):
        if threading.get_ident() == me:
            counts["in"] += 1

    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)
    try:
        yield counts
    finally:
        event.remove(pool, "checkout", checked_out)
        event.remove(pool, "checkin", checked_in)


def test_the_driver_path_and_orm_queries_share_one_connection(workspace):
    with pool_use_here() as use:
        session = get_sessionmaker(read_only=True)()
        try:
            assert use == {"out": 0, "in": 0}, "no connection before the first query"
            driver_pid = fetch_rows(session.connection(), _PID, {})[0][0]
            orm_pid = session.scalar(_PID)
            found = session.scalar(select(User.email).where(User.id == workspace.admin["id"]))
            assert session.connection().connection.driver_connection.autocommit
            assert use == {"out": 1, "in": 0}
        finally:
            session.close()
    assert orm_pid == driver_pid
    assert found == workspace.admin["email"]
    assert use == {"out": 1, "in": 1}


def test_a_session_that_starts_with_the_orm_keeps_one_connection(workspace):
    with pool_use_here() as use:
        session = get_sessionmaker(read_only=True)()
        try:
            orm_pid = session.scalar(_PID)
            driver_pid = fetch_rows(session.connection(), _PID, {})[0][0]
            assert use == {"out": 1, "in": 0}
        finally:
            session.close()
    assert orm_pid == driver_pid
    assert use == {"out": 1, "in": 1}


def test_a_closed_session_connects_again_on_its_next_query(workspace):
    session = get_sessionmaker(read_only=True)()
    try:
        first = fetch_rows(session.connection(), _PID, {})[0][0]
        session.close()
        assert fetch_rows(session.connection(), _PID, {})[0][0] is not None
        assert session.scalar(select(User.email).where(User.id == workspace.admin["id"]))
    finally:
        session.close()
    assert first is not None
