"""The API survives PostgreSQL dropping its pooled connections, with no ping per request.

``shared.db`` pings only connections that sat idle; a connection killed while in
regular use fails its next statement, the pool is invalidated and a GET is run
again on a fresh connection.
"""

from __future__ import annotations

import psycopg
import pytest

from shared import db
from shared.config import get_settings


def _kill_pool_connections() -> int:
    """Terminate every backend of this run's database but our own, as a restart would."""
    url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = 'omnistream'"
        ).fetchone()[0]
    return killed


@pytest.fixture(autouse=True)
def _fresh_pool_afterwards():
    """Each test kills this process's pooled connections; the next test must not inherit them.

    Recently used ones are not pinged on checkout (by design), so a later test's first
    write could draw one and fail, whichever test that is.
    """
    yield
    db.get_engine().dispose()


def _busy_engine_connections() -> None:
    """Check out and return a connection, so the pool holds a recently-used one."""
    with db.get_engine().connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def test_a_get_after_the_server_killed_our_connections_still_answers(workspace):
    assert workspace.call("GET", "/api/agents").status_code == 200
    _busy_engine_connections()
    assert _kill_pool_connections() >= 1

    listed = workspace.call("GET", "/api/agents")
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json["items"]] == [workspace.admin["id"]]
    assert workspace.call("GET", "/api/auth/me").status_code == 200


def test_an_idle_connection_is_pinged_so_a_write_after_a_restart_succeeds(
    workspace, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(db, "IDLE_PING_AFTER_SECONDS", 0.0)
    assert workspace.call("GET", "/api/agents").status_code == 200
    assert _kill_pool_connections() >= 1

    # A POST is not replayed, so only the ping before checkout can save it.
    created = workspace.call(
        "POST", "/api/agents", json={"email": "late@example.com", "full_name": "L", "role": "agent"}
    )
    assert created.status_code == 201, created.text


def test_a_write_on_a_killed_busy_connection_fails_cleanly_and_the_next_one_works(workspace):
    assert workspace.call("GET", "/api/agents").status_code == 200
    _busy_engine_connections()
    assert _kill_pool_connections() >= 1

    body = {"email": "again@example.com", "full_name": "A", "role": "agent"}
    first = workspace.call("POST", "/api/agents", json=body)
    # Writes are never replayed behind the client's back: a clean 503 the client may retry,
    # nothing half-written.
    assert first.status_code in (201, 503), first.text
    if first.status_code == 503:
        assert first.json["error"]["code"] == "database_unavailable"
        assert first.headers["Retry-After"] == "1"
        assert workspace.call("POST", "/api/agents", json=body).status_code == 201
    listed = workspace.call("GET", "/api/agents").json["items"]
    assert sum(a["email"] == "again@example.com" for a in listed) == 1
