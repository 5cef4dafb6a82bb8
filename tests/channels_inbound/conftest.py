"""Channels (inbound) fixtures: accounts created through the API, signed provider POSTs.

Payload fixtures under ``payloads/`` follow Meta's documented webhook examples with
placeholders (``PHONE_NUMBER_ID``, ``PAGE_ID``, ``IG_ACCOUNT_ID``...) replaced per test,
so tests never share an account id.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.channels.signatures import email_signature, meta_signature
from shared.db import session_scope
from shared.models import Contact, Conversation, InboundEvent, Message, OutboxEvent
from workers import queues

PAYLOADS = Path(__file__).parent / "payloads"


#: The message timestamp of Meta's examples (2017); :func:`load` makes it "now".
EXAMPLE_TIMESTAMP = "1504902988"


def load(name: str, *, keep_time: bool = False, **replacements: str) -> dict[str, Any]:
    text = (PAYLOADS / name).read_text()
    if not keep_time:
        text = text.replace(f'"{EXAMPLE_TIMESTAMP}"', f'"{int(time.time())}"')
    for placeholder, value in replacements.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def numeric_id() -> str:
    return str(random.randrange(10**14, 10**15))


class Channels:
    """A tenant's channel accounts, and provider callbacks addressed to them."""

    def __init__(self, workspace, broker):
        self.ws = workspace
        self.client = workspace.client
        self.broker = broker
        self.tenant_id = uuid.UUID(workspace.tenant["id"])

    # -- accounts -------------------------------------------------------------
    def account(self, channel: str, **fields: Any) -> dict[str, Any]:
        """Create an account through the API; its secrets are kept on the returned dict."""
        secret_fields = {"whatsapp", "instagram", "messenger"}
        if channel in secret_fields:
            creds = {
                "access_token": "EAAG" + secrets.token_hex(8),
                "app_secret": secrets.token_hex(16),
            }
            external_id = numeric_id()
        else:
            creds = {
                "smtp_password": secrets.token_hex(8),
                "inbound_signing_key": secrets.token_hex(16),
            }
            external_id = f"support-{uuid.uuid4().hex[:8]}@acme.example"
        body = {
            "channel": channel,
            "name": f"{channel} account",
            "external_id": external_id,
            "credentials": creds,
        } | fields
        resp = self.ws.call("POST", "/api/integration-accounts", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json | {"credentials": body["credentials"]}

    # -- callbacks ------------------------------------------------------------
    def post_meta(
        self,
        route: str,
        payload: dict[str, Any] | bytes,
        *,
        secret: str | None,
        signature: str | None = None,
    ):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            headers["X-Hub-Signature-256"] = meta_signature(secret, raw)
        return self.client.simulate_post(f"/api/webhooks/{route}", body=raw, headers=headers)

    def whatsapp(self, account: dict, name: str, **replacements: str):
        payload = load(name, PHONE_NUMBER_ID=account["external_id"], **replacements)
        return self.post_meta("meta", payload, secret=account["credentials"]["app_secret"])

    def messaging(self, account: dict, name: str, **replacements: str):
        key = "PAGE_ID" if account["channel"] == "messenger" else "IG_ACCOUNT_ID"
        payload = load(name, **{key: account["external_id"]}, **replacements)
        return self.post_meta(
            account["channel"], payload, secret=account["credentials"]["app_secret"]
        )

    def post_email(self, account: dict, mime: bytes, *, key: str | None = None, timestamp=None):
        raw = json.dumps(
            {"recipient": account["external_id"], "mime": base64.b64encode(mime).decode()}
        ).encode()
        signing_key = key or account["credentials"]["inbound_signing_key"]
        headers = {
            "Content-Type": "application/json",
            "X-Inbound-Signature": email_signature(signing_key, raw, timestamp),
        }
        return self.client.simulate_post("/api/webhooks/email", body=raw, headers=headers)

    def settle(self) -> None:
        """Wait until every process_inbound job enqueued so far has run."""
        self.broker.join(queues.INBOUND, timeout=20_000)

    # -- reading back (our own database) ---------------------------------------
    def messages(self, **filters: Any) -> list[Message]:
        with session_scope() as session:
            query = select(Message).where(Message.tenant_id == self.tenant_id)
            for name, value in filters.items():
                query = query.where(getattr(Message, name) == value)
            return list(session.scalars(query.order_by(Message.created_at)))

    def message(self, provider_message_id: str) -> Message:
        (found,) = self.messages(provider_message_id=provider_message_id)
        return found

    def contacts(self) -> list[Contact]:
        with session_scope() as session:
            return list(session.scalars(select(Contact).where(Contact.tenant_id == self.tenant_id)))

    def conversations(self) -> list[Conversation]:
        with session_scope() as session:
            query = select(Conversation).where(Conversation.tenant_id == self.tenant_id)
            return list(session.scalars(query.order_by(Conversation.created_at)))

    def events(self, event_type: str) -> list[OutboxEvent]:
        with session_scope() as session:
            query = select(OutboxEvent).where(
                OutboxEvent.tenant_id == self.tenant_id, OutboxEvent.type == event_type
            )
            return list(session.scalars(query.order_by(OutboxEvent.occurred_at)))

    def inbound_events(self, account: dict | None = None) -> list[InboundEvent]:
        with session_scope() as session:
            query = select(InboundEvent).where(InboundEvent.tenant_id == self.tenant_id)
            if account is not None:
                query = query.where(InboundEvent.account_id == uuid.UUID(account["id"]))
            return list(session.scalars(query.order_by(InboundEvent.received_at)))


@pytest.fixture
def channels(workspace, broker, worker):
    return Channels(workspace, broker)


@pytest.fixture
def other_channels(other_workspace, broker, worker):
    return Channels(other_workspace, broker)
