"""Analytics fixtures: traffic through the HTTP API, and the same figures counted from source rows.

The figures the endpoints answer from the rollups are compared with what a direct
``count(*)`` of the conversations, contacts, messages and agents says
(:func:`expected_figures`), in the tenant's own timezone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from shared.db import session_scope
from tests.waiting import wait_until
from tests.workspaces import Workspace, register

ACCOUNTS = "/api/integration-accounts"
PERIODS = {"7d": 7, "30d": 30, "90d": 90}


@pytest.fixture
def ws(client, worker) -> Workspace:
    return register(client)


def set_timezone(ws: Workspace, name: str) -> None:
    with session_scope() as session:
        session.execute(
            text("UPDATE tenants SET timezone = :tz WHERE id = :t"),
            {"tz": name, "t": ws.tenant["id"]},
        )


class ApiChannel:
    """An api-channel account: the tenant's own system posting customers' messages."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        resp = ws.call("POST", ACCOUNTS, json={"channel": "api", "name": "Shop backend"})
        assert resp.status_code == 201, resp.text
        self.id = resp.json["id"]

    def inbound(self, source_id: str, content: str = "Hello") -> dict[str, Any]:
        body = {"contact": {"source_id": source_id, "name": f"Customer {source_id}"}}
        resp = self.ws.call(
            "POST", f"{ACCOUNTS}/{self.id}/api/messages", json=body | {"content": content}
        )
        assert resp.status_code == 201, resp.text
        return resp.json


def wait_settled(ws: Workspace, timeout: float = 30.0) -> None:
    """Until every event of the tenant is dispatched and counted by the rollup."""
    query = text(
        """
        SELECT (SELECT count(*) FROM outbox_events WHERE tenant_id = :t AND status = 'pending')
             + (SELECT count(*) FROM analytics_events WHERE tenant_id = :t AND counted_at IS NULL)
        """
    )

    def waiting() -> int:
        with session_scope() as session:
            return session.scalar(query, {"t": ws.tenant["id"]})

    # The last value in a failure is the count of events still waiting.
    wait_until(lambda: waiting() == 0 or None, "every event dispatched and counted", timeout)


def _rows(sql: str, **params: Any) -> list:
    with session_scope() as session:
        return list(session.execute(text(sql), params))


def expected_figures(ws: Workspace) -> dict[str, Any]:
    """Every figure of the five reports, counted directly from the source rows."""
    t = ws.tenant["id"]
    (tz_name,) = _rows("SELECT timezone FROM tenants WHERE id = :t", t=t)[0]
    today = dt.datetime.now(ZoneInfo(tz_name)).date()
    statuses = dict(
        _rows("SELECT status, count(*) FROM conversations WHERE tenant_id = :t GROUP BY 1", t=t)
    )
    total = sum(statuses.values())
    agents_total, online = _rows(
        "SELECT count(*), count(*) FILTER (WHERE status = 'online') FROM users"
        " WHERE tenant_id = :t AND deleted_at IS NULL",
        t=t,
    )[0]
    local = "(created_at AT TIME ZONE :tz)::date"
    conv_days = dict(
        _rows(
            f"SELECT {local}, count(*) FROM conversations WHERE tenant_id = :t GROUP BY 1",  # noqa: S608
            t=t,
            tz=tz_name,
        )
    )
    msg_days = dict(
        _rows(
            f"SELECT {local}, count(*) FROM messages WHERE tenant_id = :t GROUP BY 1",  # noqa: S608
            t=t,
            tz=tz_name,
        )
    )
    overview = {
        "total_conversations": total,
        "open_conversations": statuses.get("open", 0),
        "pending_conversations": statuses.get("pending", 0),
        "resolved_conversations": statuses.get("resolved", 0),
        "total_contacts": _rows("SELECT count(*) FROM contacts WHERE tenant_id = :t", t=t)[0][0],
        "total_agents": agents_total,
        "online_agents": online,
        "messages_today": msg_days.get(today, 0),
        "resolution_rate": round(100.0 * statuses.get("resolved", 0) / total, 2) if total else 0.0,
    }
    trends = {}
    for period, days in PERIODS.items():
        span = [today - dt.timedelta(days=days - 1 - n) for n in range(days)]
        trends[period] = {
            "period": period,
            "days": days,
            "conversation_trend": [
                {"date": d.isoformat(), "count": conv_days.get(d, 0)} for d in span
            ],
            "message_trend": [{"date": d.isoformat(), "count": msg_days.get(d, 0)} for d in span],
        }
    agents = [
        {
            "agent_id": str(agent_id),
            "full_name": name,
            "email": email,
            "is_online": is_online,
            "open_conversations": open_,
            "resolved_conversations": resolved,
            "total_conversations": assigned,
        }
        for agent_id, name, email, is_online, open_, resolved, assigned in _rows(
            """
            SELECT u.id, u.full_name, u.email, u.status = 'online',
                   count(c.id) FILTER (WHERE c.status = 'open'),
                   count(c.id) FILTER (WHERE c.status = 'resolved'), count(c.id)
              FROM users u
              LEFT JOIN conversations c ON c.tenant_id = u.tenant_id AND c.assignee_id = u.id
             WHERE u.tenant_id = :t AND u.deleted_at IS NULL
             GROUP BY u.id ORDER BY u.full_name, u.id
            """,
            t=t,
        )
    ]
    contacts = dict(
        _rows("SELECT channel, count(*) FROM contacts WHERE tenant_id = :t GROUP BY 1", t=t)
    )
    convs = dict(
        _rows("SELECT channel, count(*) FROM conversations WHERE tenant_id = :t GROUP BY 1", t=t)
    )
    channels = [
        {"channel": c, "contact_count": contacts.get(c, 0), "conversation_count": convs.get(c, 0)}
        for c in sorted(contacts.keys() | convs.keys())
    ]
    return {
        "overview": overview,
        "trends": trends,
        "agents": {"agents": agents},
        "channels": {"channels": channels},
    }


def answered_figures(ws: Workspace) -> dict[str, Any]:
    def get(path: str) -> Any:
        resp = ws.call("GET", path)
        assert resp.status_code == 200, resp.text
        return resp.json

    return {
        "overview": get("/api/analytics/overview"),
        "trends": {p: get(f"/api/analytics/trends?period={p}") for p in PERIODS},
        "agents": get("/api/analytics/agents"),
        "channels": get("/api/analytics/channels"),
    }


def assert_figures_match(ws: Workspace) -> None:
    answered, expected = answered_figures(ws), expected_figures(ws)
    for report in expected:
        assert answered[report] == expected[report], report


def backdate(ws: Workspace, days_ago: int, *, messages: int = 2, channel: str = "api") -> str:
    """A contact, conversation and messages written straight to the tables ``days_ago``
    days back, without events: drift only the reconcile can find."""
    t = ws.tenant["id"]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    with session_scope() as session:
        contact = session.scalar(
            text(
                "INSERT INTO contacts (id, tenant_id, channel, external_id, created_at, updated_at)"
                " VALUES (gen_random_uuid(), :t, :ch, :ext, :at, :at) RETURNING id"
            ),
            {"t": t, "ch": channel, "ext": uuid.uuid4().hex, "at": at},
        )
        conversation = session.scalar(
            text(
                "INSERT INTO conversations (id, tenant_id, contact_id, channel, status, created_at,"
                " updated_at) VALUES (gen_random_uuid(), :t, :c, :ch, 'resolved', :at, :at)"
                " RETURNING id"
            ),
            {"t": t, "c": contact, "ch": channel, "at": at},
        )
        for n in range(messages):
            session.execute(
                text(
                    "INSERT INTO messages (id, tenant_id, conversation_id, channel, direction,"
                    " sender_type, status, body, created_at, updated_at) VALUES"
                    " (gen_random_uuid(), :t, :c, :ch, :d, 'contact', 'received', 'old', :at, :at)"
                ),
                {
                    "t": t,
                    "c": conversation,
                    "ch": channel,
                    "at": at,
                    "d": ("inbound", "outbound")[n % 2],
                },
            )
    return str(conversation)
