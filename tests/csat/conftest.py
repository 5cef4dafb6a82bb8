"""CSAT fixtures: a tenant with an api-channel conversation, and the survey link's parts."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from shared.db import session_scope
from tests.analytics.conftest import ApiChannel
from tests.webhooks.conftest import receiver  # noqa: F401
from tests.workspaces import Workspace, register

LINK = re.compile(r"/csat/(?P<id>[0-9a-f-]{36})#token=(?P<token>[A-Za-z0-9_-]+)")


@pytest.fixture
def ws(client, worker, receiver) -> Workspace:  # noqa: F811
    workspace = register(client)
    # The conversations' api account answers at a callback, so their surveys are delivered.
    workspace.receiver = receiver
    workspace.callback_url = receiver.url(f"/csat/{uuid.uuid4().hex[:12]}")
    return workspace


@pytest.fixture
def other(client) -> Workspace:
    return register(client)


def conversation(ws: Workspace, customer: str = "cust-1") -> str:
    """A customer writes in through an api-channel account with a callback (replies are
    delivered); the conversation's id."""
    account = ApiChannel(ws)
    if getattr(ws, "callback_url", None):
        callback = {"settings": {"callback_url": ws.callback_url}}
        resp = ws.call("PATCH", f"/api/integration-accounts/{account.id}", json=callback)
        assert resp.status_code == 200, resp.text
    return account.inbound(customer, "My order is late")["conversation_id"]


def set_status(ws: Workspace, conversation_id: str, status: str) -> None:
    resp = ws.call("PATCH", f"/api/conversations/{conversation_id}/status", json={"status": status})
    assert resp.status_code == 200, resp.text


def assign(ws: Workspace, conversation_id: str, agent_id: str) -> None:
    resp = ws.call(
        "PATCH",
        f"/api/conversations/{conversation_id}/assignment",
        json={"assignee_id": agent_id},
    )
    assert resp.status_code == 200, resp.text


def enable(ws: Workspace, channels: list[str], **fields: Any) -> dict:
    resp = ws.call(
        "PUT",
        "/api/csat-surveys/settings",
        json={"enabled_channels": channels, "resend_window_hours": 168} | fields,
    )
    assert resp.status_code == 200, resp.text
    return resp.json


def survey_messages(ws: Workspace, conversation_id: str) -> list[dict]:
    """The outbound messages of the conversation that carry a survey link."""
    resp = ws.call("GET", f"/api/conversations/{conversation_id}/messages")
    assert resp.status_code == 200, resp.text
    return [
        m
        for m in resp.json["items"]
        if m["direction"] == "outbound" and LINK.search(m["body"] or "")
    ]


def link_of(message: dict) -> tuple[str, str]:
    """(survey id, token) from a survey message's link."""
    match = LINK.search(message["body"])
    assert match, message["body"]
    return match["id"], match["token"]


def backdate_surveys(conversation_id: str, hours: float) -> None:
    """Move time: the conversation's surveys were sent ``hours`` earlier than recorded."""
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE csat_surveys SET sent_at = sent_at - make_interval(secs => :s)"
                " WHERE conversation_id = :c"
            ),
            {"s": hours * 3600, "c": conversation_id},
        )


def events(ws: Workspace, event_type: str) -> list[dict]:
    with session_scope() as session:
        return [
            row[0]
            for row in session.execute(
                text(
                    "SELECT data FROM outbox_events WHERE tenant_id = :t AND type = :type"
                    " ORDER BY occurred_at"
                ),
                {"t": ws.tenant["id"], "type": event_type},
            )
        ]
