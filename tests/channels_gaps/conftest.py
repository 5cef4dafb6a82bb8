"""Fixtures for the channel gaps: read receipts, invitations, agent deletion, early statuses.

The peers are the suite's own: the fake Graph API (read receipts, scripted wamids) and the
plain aiosmtpd relay as the platform's SMTP relay. Settings actors read when they are
declared (retries, backoff) are set at import, as in ``tests/channels_outbound``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import uuid
from typing import Any

os.environ.update(
    OUTBOUND_MAX_RETRIES="2",
    OUTBOUND_MIN_BACKOFF_MS="50",
    OUTBOUND_MAX_BACKOFF_MS="200",
    GRAPH_TIMEOUT_SECONDS="1.0",
    SMTP_TIMEOUT_SECONDS="5",
)

import pytest
from sqlalchemy import select

from shared.channels.signatures import meta_signature
from shared.config import get_settings
from shared.db import session_scope
from shared.models import DeadLetter
from tests.channels_outbound.conftest import Channels
from tests.peers.environment import environment
from tests.peers.fixtures import (  # noqa: F401
    fake_graph,
    fake_graph_server,
    smtp_peers,
    smtp_servers,
    smtp_tls_files,
)
from tests.waiting import wait_until

get_settings.cache_clear()

INVITATION_URL = "https://app.example.test/accept-invitation?token={token}"
PLATFORM_FROM = "no-reply@omnistream.test"


@pytest.fixture(scope="package", autouse=True)
def gaps_settings(fake_graph_server, smtp_servers):  # noqa: F811
    """Point the Graph client at the fake and the platform's email at the plain relay, for
    this folder's tests only."""
    relay = smtp_servers["none"]
    with environment(
        META_GRAPH_BASE_URL=fake_graph_server.base_url,
        META_GRAPH_VERSION="v21.0",
        PLATFORM_SMTP_HOST=relay.host,
        PLATFORM_SMTP_PORT=str(relay.port),
        PLATFORM_SMTP_SECURITY="none",
        PLATFORM_EMAIL_FROM=PLATFORM_FROM,
        INVITATION_URL=INVITATION_URL,
    ):
        yield


@pytest.fixture
def relay(smtp_peers):  # noqa: F811
    """The platform's SMTP relay, with an empty mailbox."""
    return smtp_peers["none"]


class Gaps(Channels):
    """Inbox rows, accounts, and signed Meta callbacks for one tenant."""

    def __init__(self, workspace):
        super().__init__(workspace.tenant["id"])
        self.ws = workspace

    def meta_account(self, channel: str = "whatsapp") -> dict[str, Any]:
        token, app_secret = "EAAG" + secrets.token_hex(8), secrets.token_hex(16)
        account_id = self.account(
            channel, credentials={"access_token": token, "app_secret": app_secret}
        )
        row = self.account_row(account_id)
        return {
            "id": account_id,
            "channel": channel,
            "external_id": row.external_id,
            "token": token,
            "app_secret": app_secret,
        }

    def post_whatsapp(self, account: dict[str, Any], value: dict[str, Any]):
        """A signed WhatsApp callback with one ``messages`` change carrying ``value``."""
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA-" + secrets.token_hex(4),
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "16505551111",
                                    "phone_number_id": account["external_id"],
                                },
                            }
                            | value,
                        }
                    ],
                }
            ],
        }
        raw = json.dumps(payload).encode()
        resp = self.ws.client.simulate_post(
            "/api/webhooks/meta",
            body=raw,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta_signature(account["app_secret"], raw),
            },
        )
        assert resp.status_code == 200, resp.text
        return resp

    def inbound_text(self, account, wamid: str, sender: str, body: str = "Hello?") -> None:
        self.post_whatsapp(
            account,
            {
                "contacts": [{"profile": {"name": "Kerry"}, "wa_id": sender}],
                "messages": [
                    {
                        "from": sender,
                        "id": wamid,
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": body},
                    }
                ],
            },
        )

    def status(self, account, wamid: str, status: str, **extra: Any) -> None:
        self.post_whatsapp(
            account,
            {
                "statuses": [
                    {
                        "id": wamid,
                        "status": status,
                        "timestamp": str(int(time.time())),
                        "recipient_id": "15551234567",
                    }
                    | extra
                ]
            },
        )

    def conversation_of(self, wamid: str) -> uuid.UUID:
        """The id of the conversation holding the inbound message ``wamid`` (waits for it)."""

        def find():
            from shared.models import Message

            with session_scope() as session:
                return session.scalar(
                    select(Message.conversation_id).where(
                        Message.tenant_id == self.tenant_id,
                        Message.provider_message_id == wamid,
                    )
                )

        return wait_until(find, f"inbound message {wamid} stored")


@pytest.fixture
def gaps(workspace, worker) -> Gaps:
    return Gaps(workspace)


def dead_letters(actor_name: str, first_arg: str) -> list[DeadLetter]:
    with session_scope() as session:
        rows = session.scalars(select(DeadLetter).where(DeadLetter.actor_name == actor_name))
        return [r for r in rows if first_arg in [str(a) for a in (r.args or [])]]


def link_token(text: str) -> str:
    """The token of the set-password link in an invitation email."""
    found = re.search(r"accept-invitation\?token=([A-Za-z0-9_\-%]+)", text)
    assert found, text
    return found.group(1)


def new_email() -> str:
    return f"invitee-{uuid.uuid4().hex[:8]}@example.com"
