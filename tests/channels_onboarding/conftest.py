"""Meta onboarding against the fake Graph API: the platform's Meta app is the fake's.

Each test gets a fresh fake Meta world (``fake_graph.meta``) with its own app secret;
:func:`meta_settings` points the settings at it for that test only and restores the
environment afterwards, so no other folder sees a Meta app configured.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.db import session_scope
from tests.peers.environment import environment
from tests.peers.fixtures import fake_graph, fake_graph_server  # noqa: F401
from workers import queues

CONFIG_ID = "1122334455667788"
LOGIN_CONFIG_ID = "8877665544332211"
PIN = "246810"


@pytest.fixture(autouse=True)
def meta_settings(fake_graph, broker, worker):  # noqa: F811
    """The fake's app id and secret, fast retries; the previous environment afterwards."""
    env = {
        "META_GRAPH_BASE_URL": fake_graph.base_url,
        "META_GRAPH_VERSION": "v21.0",
        "META_APP_ID": fake_graph.meta.app_id,
        "META_APP_SECRET": fake_graph.meta.app_secret,
        "META_EMBEDDED_SIGNUP_CONFIG_ID": CONFIG_ID,
        "META_LOGIN_CONFIG_ID": LOGIN_CONFIG_ID,
        "GRAPH_TIMEOUT_SECONDS": "2",
        "GRAPH_MAX_RETRIES": "2",
        "GRAPH_RETRY_MIN_BACKOFF_MS": "1",
        "GRAPH_RETRY_MAX_BACKOFF_MS": "5",
        "GRAPH_MAX_RETRY_AFTER_SECONDS": "10",
    }
    with environment(**env):
        yield fake_graph
        # NOTE: a signup queues its template sync; it must finish under the settings it
        # was queued with. Still running while the next test swapped them, it could cache
        # a Settings read half-way through the swap (a functools cache filled after its
        # clear), and that test's Graph calls then went to the real Graph API.
        for queue in (queues.CHANNELS, queues.MAINTENANCE):
            broker.join(queue, timeout=20_000)


def events(workspace, event_type: str) -> list[dict[str, Any]]:
    """The ``data`` of the tenant's outbox events of ``event_type``, oldest first."""
    from shared.models import OutboxEvent

    with session_scope() as session:
        rows = session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.tenant_id == uuid.UUID(workspace.tenant["id"]),
                OutboxEvent.type == event_type,
            )
            .order_by(OutboxEvent.occurred_at)
        ).all()
        return [row.data for row in rows]


def credentials_of(account_id: str) -> dict[str, str]:
    """An account's decrypted credentials (what the API never shows)."""
    from shared.channels.accounts import decrypt_credentials
    from shared.models import IntegrationAccount

    with session_scope() as session:
        return decrypt_credentials(session.get(IntegrationAccount, uuid.UUID(account_id)))


def signup(workspace, graph, *, numbers: int = 1, **fields: Any):
    """Run Embedded Signup for a fresh WABA; (response, waba id, numbers)."""
    waba_id, made = graph.meta.add_waba(numbers=numbers)
    code = graph.meta.grant(wabas=[waba_id])
    body = {"code": code, "pin": PIN} | fields
    resp = workspace.call("POST", "/api/integrations/whatsapp/embedded-signup", json=body)
    return resp, waba_id, made


def connected_page(workspace, graph, name: str = "Acme Store") -> tuple[dict, Any]:
    """A Messenger account made through connect + subscribe-pages; (account, fake page)."""
    page = graph.meta.add_page(name)
    code = graph.meta.grant(pages=[page.id])
    resp = workspace.call("POST", "/api/integrations/messenger/connect", json={"code": code})
    assert resp.status_code == 200, resp.text
    resp = workspace.call(
        "POST", "/api/integrations/messenger/subscribe-pages", json={"page_ids": [page.id]}
    )
    assert resp.status_code == 200, resp.text
    return resp.json["accounts"][0], page


def assert_error(resp, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json["error"]
    assert error["code"] == code, error
    return error


def login_state(workspace, channel: str, token: str | None = None) -> str:
    """The ``state`` of ``channel``'s oauth-config, as the caller (``token``) gets it."""
    resp = workspace.call("GET", f"/api/integrations/{channel}/oauth-config", token=token)
    assert resp.status_code == 200, resp.text
    return resp.json["state"]
