"""Read requests' sessions: one pooled connection, checked out on first use, returned on close.

``shared.db.ReadSession`` hands its connection out directly (no session transaction);
ORM queries on the same session must run on that same connection, and closing the
session must give it back to the pool, whichever path ran first.
"""

from __future__ import annotations

from sqlalchemy import select, text

from shared.db import fetch_rows, get_engine, get_sessionmaker
from shared.models import User

_PID = select(text("pg_backend_pid()"))


def test_the_driver_path_and_orm_queries_share_one_connection(workspace):
    pool = get_engine().pool
    checked_out = pool.checkedout()
    session = get_sessionmaker(read_only=True)()
    try:
        assert pool.checkedout() == checked_out, "no connection before the first query"
        driver_pid = fetch_rows(session.connection(), _PID, {})[0][0]
        orm_pid = session.scalar(_PID)
        found = session.scalar(select(User.email).where(User.id == workspace.admin["id"]))
        assert session.connection().connection.driver_connection.autocommit
    finally:
        session.close()
    assert orm_pid == driver_pid
    assert found == workspace.admin["email"]
    assert pool.checkedout() == checked_out


def test_a_session_that_starts_with_the_orm_keeps_one_connection(workspace):
    pool = get_engine().pool
    checked_out = pool.checkedout()
    session = get_sessionmaker(read_only=True)()
    try:
        orm_pid = session.scalar(_PID)
        driver_pid = fetch_rows(session.connection(), _PID, {})[0][0]
        assert pool.checkedout() == checked_out + 1
    finally:
        session.close()
    assert orm_pid == driver_pid
    assert pool.checkedout() == checked_out


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
