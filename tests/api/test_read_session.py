"""Read requests' sessions: one pooled connection, checked out on first use, returned on close.

``shared.db.ReadSession`` hands its connection out directly (no session transaction);
ORM queries on the same session must run on that same connection, and closing the
session must give it back to the pool, whichever path ran first. The API's read requests
(``RequestReadSession``) keep that connection on their thread for the next request (a write
runs its transaction on it, ``RequestWriteSession``), and give it back after an idle spell,
or when it was lost.
"""

from __future__ import annotations

import contextlib
import threading

import psycopg
import pytest
from sqlalchemy import event, select, text

from shared import db
from shared.config import get_settings
from shared.db import fetch_rows, get_engine, get_sessionmaker, release_read_connection
from shared.models import User

_PID = select(text("pg_backend_pid()"))


@contextlib.contextmanager
def pool_use_here(holding: int = 0):
    """Checkouts and checkins of the shared pool made by this thread, and the most it held
    at once (``holding`` already held when it starts).

    NOTE: not ``pool.checkedout()``: the in-process worker's threads share the pool,
    and a registration's events may be dispatched while the test runs.
    """
    me, pool = threading.get_ident(), get_engine().pool
    counts = {"out": 0, "in": 0, "now": holding, "most": holding}

    def checked_out(*_args):
        if threading.get_ident() == me:
            counts["out"] += 1
            counts["now"] += 1
            counts["most"] = max(counts["most"], counts["now"])

    def checked_in(*_args):
        if threading.get_ident() == me:
            counts["in"] += 1
            counts["now"] -= 1

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
            assert (use["out"], use["in"]) == (0, 0), "no connection before the first query"
            driver_pid = fetch_rows(session.connection(), _PID, {})[0][0]
            orm_pid = session.scalar(_PID)
            found = session.scalar(select(User.email).where(User.id == workspace.admin["id"]))
            assert session.connection().connection.driver_connection.autocommit
            assert (use["out"], use["in"]) == (1, 0)
        finally:
            session.close()
    assert orm_pid == driver_pid
    assert found == workspace.admin["email"]
    assert (use["out"], use["in"]) == (1, 1)


def test_a_session_that_starts_with_the_orm_keeps_one_connection(workspace):
    with pool_use_here() as use:
        session = get_sessionmaker(read_only=True)()
        try:
            orm_pid = session.scalar(_PID)
            driver_pid = fetch_rows(session.connection(), _PID, {})[0][0]
            assert (use["out"], use["in"]) == (1, 0)
        finally:
            session.close()
    assert orm_pid == driver_pid
    assert (use["out"], use["in"]) == (1, 1)


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


# --- the API's read requests: the connection stays with the request thread ----------------


def _list(workspace):
    listed = workspace.call("GET", "/api/conversations?limit=5")
    assert listed.status_code == 200, listed.text
    return listed.json


def test_read_requests_on_one_thread_reuse_the_connection_the_first_took(workspace):
    release_read_connection()
    with pool_use_here() as use:
        answers = [_list(workspace) for _ in range(5)]
        assert use["out"] == 1 and use["in"] == 0, use
        release_read_connection()
    assert all(answer == answers[0] for answer in answers)
    assert use["in"] == 1


def test_threads_that_end_holding_their_read_connections_give_them_back(workspace):
    """Threads made for a while (a test's, a pool that replaces its threads) kept theirs
    checked out until another thread happened to reuse their ident: a pool of 10 + 10
    ran dry under load."""
    pool, threads = get_engine().pool, 8
    taken, returned, answered = [], [], []
    all_read = threading.Barrier(threads)
    mine: set[int] = set()

    def checked_out(_dbapi, record, _proxy):
        if threading.get_ident() in mine:
            taken.append(record)

    def checked_in(_dbapi, record):
        returned.append(record)

    def read() -> None:
        mine.add(threading.get_ident())
        answered.append(_list(workspace))
        all_read.wait(30)  # all alive at once: each its own ident

    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)
    try:
        started = [threading.Thread(target=read) for _ in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join(30)
    finally:
        event.remove(pool, "checkout", checked_out)
        event.remove(pool, "checkin", checked_in)
    assert len(answered) == threads
    assert len(taken) == threads and all(record in returned for record in taken)


def test_reads_through_the_orm_use_the_held_connection_too(workspace):
    _list(workspace)
    with pool_use_here(holding=1) as use:
        for _ in range(3):
            roles = workspace.call("GET", "/api/roles")  # ORM queries, no driver path first
            assert roles.status_code == 200, roles.text
            _list(workspace)
        assert use["out"] == 0 and use["in"] == 0, use
        release_read_connection()
    assert {"admin", "agent"} <= {role["name"] for role in roles.json}


def _held_driver():
    """The driver connection this thread holds between requests."""
    return db._held.connection.connection.driver_connection


def test_a_write_request_runs_its_transaction_on_the_held_connection(workspace):
    _list(workspace)
    held = _held_driver()
    with pool_use_here(holding=1) as use:
        created = workspace.call(
            "POST",
            "/api/agents",
            json={"email": "held@example.com", "full_name": "H", "role": "agent"},
        )
        assert created.status_code == 201, created.text
        assert _held_driver() is held
        # Back in autocommit, no transaction left open for the reads that follow.
        assert held.autocommit
        assert held.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        agents = workspace.call("GET", "/api/agents?limit=100")
        assert agents.status_code == 200, agents.text
        release_read_connection()
    # No check-out for the write nor for the read after it: one connection all along.
    assert use["most"] == 1, use
    assert use["in"] == 1 and use["out"] == 0, use
    # The commit was reported at once: the agents list cache did not serve its old page.
    assert "held@example.com" in {agent["email"] for agent in agents.json["items"]}


def test_a_failed_write_on_the_held_connection_leaves_nothing_and_reads_go_on(workspace):
    body = {"email": "twice@example.com", "full_name": "T", "role": "agent"}
    assert workspace.call("POST", "/api/agents", json=body).status_code == 201
    held = _held_driver()
    refused = workspace.call("POST", "/api/agents", json={**body, "full_name": "Again"})
    assert refused.status_code == 409, refused.text
    assert _held_driver() is held and held.autocommit
    assert held.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert _list(workspace)
    named = workspace.call("GET", "/api/agents?limit=100").json["items"]
    assert [a["full_name"] for a in named if a["email"] == body["email"]] == ["T"]
    release_read_connection()


def _kill_app_backends() -> None:
    """Terminate this test database's application connections, as a server restart would."""
    url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = 'omnistream'"
        )


def test_a_held_connection_the_server_killed_is_replaced_and_the_read_answers(workspace):
    before = _list(workspace)
    _kill_app_backends()
    try:
        assert _list(workspace) == before
    finally:
        get_engine().dispose()  # NOTE: the next test must not draw a killed pooled connection


def test_a_write_on_a_held_connection_the_server_killed_fails_alone(workspace):
    """A write is not replayed; the lost connection goes, and the next requests work."""
    before = _list(workspace)
    _kill_app_backends()
    body = {"email": "lost@example.com", "full_name": "L", "role": "agent"}
    try:
        lost = workspace.call("POST", "/api/agents", json=body)
        assert lost.status_code >= 500, lost.text
        created = workspace.call("POST", "/api/agents", json=body)
        assert created.status_code == 201, created.text
        assert _held_driver().autocommit
        assert _list(workspace) == before
    finally:
        get_engine().dispose()  # NOTE: the next test must not draw a killed pooled connection


def test_a_held_connection_idle_past_the_ping_delay_goes_back_to_the_pool(
    workspace, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(db, "IDLE_PING_AFTER_SECONDS", 0.0)
    _list(workspace)
    with pool_use_here() as use:
        _list(workspace)
    # Given back (and pinged by the pool on its way out again), not used as it was.
    assert use["in"] == 1 and use["out"] == 1, use
    release_read_connection()
