"""The end-to-end path (API -> outbox -> worker -> webhook) through PgBouncer in transaction mode.

The suite's own end-to-end tests are imported and run again here, where every
connection goes through the PgBouncer of ``conftest.py`` (4 server connections for
the API's and the worker's threads). Beside them: why the setting is needed (psycopg's
prepared statements break on transaction pooling), that prebuilt statements survive
with it, that sessions read timestamps in UTC through it, and that the scheduler's
session-level lock bypasses it.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.config import get_settings
from shared.db import session_scope
from tests.api.test_events import test_identity_events_are_dispatched  # noqa: F401
from tests.api.test_operations import _beat
from tests.automation.test_actions import (  # noqa: F401
    test_quick_reply_and_webhook_actions_send_through_their_engines,
)
from tests.webhooks.test_delivery import (  # noqa: F401
    test_a_500_is_retried_on_schedule_with_the_same_webhook_id,
    test_an_event_is_delivered_signed_once_per_subscribed_endpoint,
)

pytestmark = [pytest.mark.pgbouncer, pytest.mark.usefixtures("through_pgbouncer")]


def _libpq(url: str) -> str:
    parts = make_url(url)
    return f"host={parts.host} port={parts.port} user={parts.username} dbname={parts.database}"


def test_psycopg_prepared_statements_break_on_transaction_pooling(through_pgbouncer):
    """Why DATABASE_PGBOUNCER exists: psycopg's default prepares a statement on its 5th use."""
    conninfo = _libpq(get_settings().database_url)
    connections = [psycopg.connect(conninfo) for _ in range(6)]
    try:
        with pytest.raises(psycopg.errors.ProgrammingError, match="prepared statement"):
            for value in range(20):
                for connection in connections:
                    connection.execute("SELECT %s::int", (value,)).fetchone()
                    connection.commit()
    finally:
        for connection in connections:
            connection.close()


def test_prebuilt_statements_survive_many_connections_through_pgbouncer(client, workspace):
    """The hottest reads (driver-level prebuilt statements) from 8 threads, 30 times each."""
    _beat(0.1)
    for index in range(3):
        workspace.create_agent(role="agent", full_name=f"Agent {index}")

    def calls(_):
        statuses = []
        for _ in range(30):
            statuses.append(client.simulate_get("/api/health").status_code)
            statuses.append(workspace.call("GET", "/api/agents").status_code)
        return statuses

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(calls, range(8)) for s in batch]
    assert set(statuses) == {200}, sorted(set(statuses))
    with session_scope() as session:
        # Not one statement was prepared server-side on any connection PgBouncer lent us.
        assert session.scalar(text("SELECT count(*) FROM pg_prepared_statements")) == 0


def test_sessions_read_utc_through_pgbouncer(through_pgbouncer):
    with session_scope() as session:
        assert session.scalar(text("SELECT current_setting('TimeZone')")) == "UTC"
        now = session.scalar(text("SELECT now()"))
    # The fixed UTC (not a ZoneInfo): what the startup options give a direct connection.
    assert now.tzinfo is dt.UTC


def test_the_scheduler_lock_connects_to_postgresql_directly(through_pgbouncer, database):
    from scheduler.leader import Leadership

    settings = get_settings()
    assert settings.database_pgbouncer and settings.database_url != database
    election = Leadership(settings)
    assert election._engine.url.port == make_url(database).port
    assert election._engine.url.port != through_pgbouncer.port
