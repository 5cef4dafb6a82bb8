"""A channel switched off (``PUT /api/integrations/{channel}`` ``enabled: false``) works as
if each of its accounts were disabled: replies fail ``channel_disabled``, inbound is dropped
with its reason, the api channel refuses posts; switched on again, everything works."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.models import InboundEvent, Message
from tests.channels_outbound.conftest import sent_with, wait_for_status
from tests.peers.environment import environment
from tests.waiting import wait_until


def _switch(workspace, channel: str, enabled: bool) -> None:
    resp = workspace.call("PUT", f"/api/integrations/{channel}", json={"enabled": enabled})
    assert resp.status_code in (200, 201), resp.text
    assert resp.json["enabled"] is enabled


def _reply(workspace, conversation_id, body: str) -> str:
    resp = workspace.call(
        "POST", f"/api/conversations/{conversation_id}/messages", json={"body": body}
    )
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def _stored(tenant_id, wamid: str) -> bool:
    with session_scope() as session:
        return (
            session.scalar(
                select(Message.id).where(
                    Message.tenant_id == tenant_id, Message.provider_message_id == wamid
                )
            )
            is not None
        )


def _inbound_rows(account_id) -> list[InboundEvent]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(InboundEvent)
                .where(InboundEvent.account_id == uuid.UUID(str(account_id)))
                .order_by(InboundEvent.received_at)
            )
        )


def test_a_switched_off_channel_fails_replies_and_drops_inbound_until_switched_on(
    workspace, gaps, fake_graph
):
    account = gaps.meta_account("whatsapp")
    gaps.inbound_text(account, "wamid.OFF0", "15550001111")
    conversation_id = gaps.conversation_of("wamid.OFF0")

    _switch(workspace, "whatsapp", False)

    # A reply fails for good, naming the channel; nothing reached Meta.
    reply = _reply(workspace, conversation_id, "Are you there?")
    failed = wait_for_status(workspace, conversation_id, reply, "failed")
    assert failed["error_code"] == "channel_disabled"
    assert "whatsapp" in failed["error_message"]
    assert sent_with(fake_graph, account["token"]) == []

    # Inbound resolved from the ack path's cache is stored, then dropped with its reason.
    with environment(INBOUND_ACCOUNT_CACHE_SECONDS="300"):
        gaps.inbound_text(account, "wamid.OFF1", "15550001111")
    dropped = wait_until(
        lambda: [r for r in _inbound_rows(account["id"]) if r.status == "dropped"],
        "the inbound payload dropped by processing",
    )
    assert len(dropped) == 1
    assert "whatsapp" in dropped[0].error and "switched off" in dropped[0].error
    # Inbound resolved afresh is dropped at once: the recipient matches no live account.
    with environment(INBOUND_ACCOUNT_CACHE_SECONDS="0"):
        resp = gaps.post_whatsapp(
            account,
            {
                "messages": [
                    {
                        "from": "15550001111",
                        "id": "wamid.OFF2",
                        "timestamp": "1700000000",
                        "type": "text",
                        "text": {"body": "hello?"},
                    }
                ]
            },
        )
    assert resp.json == {"stored": 0, "duplicates": 0, "dropped": 1}
    assert not _stored(gaps.tenant_id, "wamid.OFF1")
    assert not _stored(gaps.tenant_id, "wamid.OFF2")

    _switch(workspace, "whatsapp", True)

    with environment(INBOUND_ACCOUNT_CACHE_SECONDS="0"):
        gaps.inbound_text(account, "wamid.ON1", "15550001111")
    assert gaps.conversation_of("wamid.ON1") == conversation_id
    reply = _reply(workspace, conversation_id, "Back again")
    wait_for_status(workspace, conversation_id, reply, "sent")
    assert len(sent_with(fake_graph, account["token"])) == 1


def test_the_other_channels_accounts_are_not_switched_off(workspace, gaps, fake_graph):
    account = gaps.meta_account("whatsapp")
    gaps.inbound_text(account, "wamid.KEEP1", "15550002222")
    conversation_id = gaps.conversation_of("wamid.KEEP1")

    _switch(workspace, "messenger", False)

    reply = _reply(workspace, conversation_id, "Still here")
    wait_for_status(workspace, conversation_id, reply, "sent")


def test_a_switched_off_api_channel_refuses_posts_and_fails_replies(workspace, gaps):
    created = workspace.call(
        "POST", "/api/integration-accounts", json={"channel": "api", "name": "Shop backend"}
    )
    assert created.status_code == 201, created.text
    account_id = created.json["id"]
    post = f"/api/integration-accounts/{account_id}/api/messages"
    first = workspace.call("POST", post, json={"contact": {"source_id": "c-1"}, "content": "hi"})
    assert first.status_code == 201, first.text
    conversation_id = first.json["conversation_id"]

    _switch(workspace, "api", False)

    refused = workspace.call("POST", post, json={"contact": {"source_id": "c-1"}, "content": "?"})
    assert refused.status_code == 409, refused.text
    assert refused.json["error"]["code"] == "channel_disabled"
    assert "api" in refused.json["error"]["message"]
    reply = _reply(workspace, conversation_id, "Hello")
    failed = wait_for_status(workspace, conversation_id, reply, "failed")
    assert failed["error_code"] == "channel_disabled"

    _switch(workspace, "api", True)

    again = workspace.call("POST", post, json={"contact": {"source_id": "c-1"}, "content": "ok"})
    assert again.status_code == 201, again.text
    reply = _reply(workspace, conversation_id, "Hello again")
    wait_for_status(workspace, conversation_id, reply, "sent")
