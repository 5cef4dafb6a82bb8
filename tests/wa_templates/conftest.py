"""WA Templates fixtures: WhatsApp accounts on the fake Graph API, templates on both sides.

The Graph client is pointed at the fake for the whole folder (session scope); each test
gets a fresh fake (``fake_graph``) and a tenant of its own (``workspace``).
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.channels import accounts
from shared.channels.signatures import meta_signature
from shared.context import Ctx
from shared.db import session_scope
from shared.models import Job, OutboxEvent, WaTemplate, WaTemplateSync
from tests.inbox_messages.conftest import Inbox
from tests.peers.environment import environment
from tests.peers.fixtures import fake_graph, fake_graph_server  # noqa: F401
from workers import queues

__all__ = ["Templates", "meta_template"]


@pytest.fixture(autouse=True)
def graph_settings(fake_graph_server):  # noqa: F811
    """Point the Graph client at the fake, restored after each test.

    NOTE: per test, not per session: a session fixture of this directory stays applied
    for every later test of the same process, and its 2 s Graph timeout broke the
    outbound tests' 1 s timeout case when both ran in one xdist process.
    """
    with environment(
        META_GRAPH_BASE_URL=fake_graph_server.base_url,
        META_GRAPH_VERSION="v21.0",
        GRAPH_TIMEOUT_SECONDS="2",
    ):
        yield


def meta_template(
    name: str,
    *,
    language: str = "en_US",
    status: str = "APPROVED",
    category: str = "UTILITY",
    body: str = "Your order {{1}} ships on {{2}}.",
    header: dict[str, Any] | None = None,
    buttons: list[dict[str, Any]] | None = None,
    template_id: str | None = None,
) -> dict[str, Any]:
    """A template as Meta lists it."""
    components: list[dict[str, Any]] = []
    if header is not None:
        components.append({"type": "HEADER", **header})
    components.append({"type": "BODY", "text": body})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return {
        "id": template_id or str(secrets.randbelow(10**15) + 10**14),
        "name": name,
        "language": language,
        "status": status,
        "category": category,
        "components": components,
        "parameter_format": "POSITIONAL",
    }


class Templates(Inbox):
    """One tenant's WhatsApp accounts (each with its WABA on the fake) and their templates."""

    def __init__(self, workspace, graph, broker):
        super().__init__(workspace.tenant["id"])
        self.ws = workspace
        self.graph = graph
        self.broker = broker

    def account(self, *, waba_id: str | None = None, token: str | None = None) -> dict[str, Any]:
        waba_id = waba_id or str(secrets.randbelow(10**14) + 10**14)
        token = token or "EAAG" + secrets.token_hex(8)
        app_secret = secrets.token_hex(16)
        with session_scope() as session:
            account = accounts.create_account(
                session,
                Ctx.system(self.tenant_id),
                channel="whatsapp",
                name="WhatsApp",
                external_id=str(secrets.randbelow(10**14) + 10**14),
                settings={"waba_id": waba_id},
                credentials={"access_token": token, "app_secret": app_secret},
            )
            account_id, external_id = account.id, account.external_id
        self.graph.wa_templates.setdefault(waba_id, [])
        return {
            "id": account_id,
            "external_id": external_id,
            "waba_id": waba_id,
            "token": token,
            "app_secret": app_secret,
        }

    def at_meta(self, account: dict[str, Any], *templates: dict[str, Any]) -> None:
        self.graph.wa_templates[account["waba_id"]].extend(templates)

    def synced(self, account: dict[str, Any]) -> None:
        """Run the account's sync to the end through the worker."""
        resp = self.ws.call(
            "POST", "/api/wa-templates/sync", json={"integration_account_id": str(account["id"])}
        )
        assert resp.status_code == 202, resp.text
        self.settle()
        assert self.job(resp.json["job_id"]).status == "succeeded"

    def settle(self) -> None:
        """Wait for the syncs sent so far (and those a re-drive sends in turn)."""
        for _ in range(2):
            self.broker.join(queues.MAINTENANCE, timeout=20_000)
            self.broker.join(queues.CHANNELS, timeout=20_000)

    def templates(self, account: dict[str, Any] | None = None) -> dict[tuple[str, str], WaTemplate]:
        with session_scope() as session:
            query = select(WaTemplate).where(WaTemplate.tenant_id == self.tenant_id)
            if account is not None:
                query = query.where(WaTemplate.integration_account_id == account["id"])
            return {(t.name, t.language): t for t in session.scalars(query)}

    def sync_row(self, account: dict[str, Any]) -> WaTemplateSync | None:
        with session_scope() as session:
            return session.get(WaTemplateSync, account["id"])

    def job(self, job_id) -> Job:
        with session_scope() as session:
            return session.get_one(Job, uuid.UUID(str(job_id)))

    def status_events(self) -> list[dict[str, Any]]:
        with session_scope() as session:
            rows = session.scalars(
                select(OutboxEvent)
                .where(
                    OutboxEvent.tenant_id == self.tenant_id,
                    OutboxEvent.type == "template.status_changed",
                )
                .order_by(OutboxEvent.occurred_at)
            )
            return [row.data for row in rows]

    def review(self, account: dict[str, Any], value: dict[str, Any]):
        """Post Meta's ``message_template_status_update`` for the account's WABA, signed."""
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": account["waba_id"],
                    "time": 1_700_000_000,
                    "changes": [{"field": "message_template_status_update", "value": value}],
                }
            ],
        }
        raw = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(account["app_secret"], raw),
        }
        resp = self.ws.client.simulate_post("/api/webhooks/meta", body=raw, headers=headers)
        assert resp.status_code == 200, resp.text
        self.broker.join(queues.INBOUND, timeout=20_000)
        return resp


@pytest.fixture
def templates(workspace, fake_graph, broker, worker):  # noqa: F811
    return Templates(workspace, fake_graph, broker)


@pytest.fixture
def other_templates(other_workspace, fake_graph, broker, worker):  # noqa: F811
    return Templates(other_workspace, fake_graph, broker)
