"""A refused host name never tells the tenant which internal address it resolved to."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from shared.context import Ctx
from shared.db import session_scope
from shared.events import Actor
from shared.identity.permissions import ALL_KEYS
from shared.models import WebhookEndpoint
from shared.webhooks import endpoints, transport
from shared.webhooks.ssrf import Policy

BASE = "/api/outgoing-webhooks"


def test_a_name_resolving_inside_is_refused_without_naming_the_address(workspace, receiver):
    # Switched off: no event of the workspace is delivered to it, only the test send.
    body = {"url": receiver.url("/oracle"), "event_types": ["agent.created"], "is_active": False}
    created = workspace.call("POST", BASE, json=body)
    assert created.status_code == 201, created.text
    endpoint_id = uuid.UUID(created.json["id"])
    with session_scope() as session:
        # As if a name the tenant chose (say db.corp.example) resolved to an internal
        # address: "localhost" resolves to loopback here.
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(url=f"http://localhost:{receiver.port}/oracle")
        )
    admin = uuid.UUID(workspace.admin["id"])
    ctx = Ctx(
        uuid.UUID(workspace.tenant["id"]), Actor("user", admin), user_id=admin, permissions=ALL_KEYS
    )
    # The production guard: no loopback allowlisted.
    client = transport.build_client(Policy(allow_http=True))
    with session_scope() as session:
        result = endpoints.send_test(session, ctx, endpoint_id, client=client)
    attempt = result["attempt"]
    assert attempt["error_kind"] == "blocked", attempt
    assert "localhost" in attempt["error"]
    assert "127.0.0.1" not in attempt["error"] and "::1" not in attempt["error"], attempt["error"]
    assert receiver.at("/oracle") == []
    listed = workspace.call("GET", f"{BASE}/{endpoint_id}/deliveries").json["items"]
    assert "127.0.0.1" not in listed[0]["attempts"][0]["error"]
