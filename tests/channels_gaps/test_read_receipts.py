"""mark_read_upstream: reading a conversation sends Meta its read receipt, once, retried."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from scheduler import jobs
from shared.db import session_scope
from shared.models.receipts import ReadReceipt
from tests.channels_gaps.conftest import dead_letters
from tests.waiting import wait_until


def _read(workspace, conversation_id, **kwargs):
    return workspace.call("POST", f"/api/conversations/{conversation_id}/read", **kwargs)


def _receipt(message_id) -> ReadReceipt | None:
    with session_scope() as session:
        return session.get(ReadReceipt, message_id)


def _receipt_count(tenant_id) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(ReadReceipt).where(ReadReceipt.tenant_id == tenant_id)
        )


def _settled(message_id, *statuses):
    return wait_until(
        lambda: (r := _receipt(message_id)) is not None and r.status in statuses and r,
        f"receipt of {message_id} in {statuses}",
        timeout=30,  # a few retries with backoff, on a loaded CI machine
    )


def _whatsapp_conversation(gaps, wamid="wamid.IN1"):
    account = gaps.meta_account("whatsapp")
    gaps.inbound_text(account, wamid, "15551234567")
    return account, gaps.conversation_of(wamid)


def _message_id(gaps, wamid):
    from shared.models import Message

    with session_scope() as session:
        return session.scalar(
            select(Message.id).where(
                Message.tenant_id == gaps.tenant_id, Message.provider_message_id == wamid
            )
        )


def test_reading_a_whatsapp_conversation_marks_its_last_message_read(workspace, gaps, fake_graph):
    account, conversation_id = _whatsapp_conversation(gaps, "wamid.READ1")

    resp = _read(workspace, conversation_id)

    assert resp.status_code == 200, resp.text
    assert resp.json["unread_count"] == 0
    receipt = _settled(_message_id(gaps, "wamid.READ1"), "sent")
    assert receipt.attempts == 1
    [request] = fake_graph.receipts()
    assert request.path == f"/v21.0/{account['external_id']}/messages"
    assert request.token == account["token"]
    assert request.json == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.READ1",
    }


def test_reading_again_sends_nothing_and_a_new_message_gets_its_own_receipt(
    workspace, gaps, fake_graph
):
    account, conversation_id = _whatsapp_conversation(gaps, "wamid.AGAIN1")
    _read(workspace, conversation_id)
    _settled(_message_id(gaps, "wamid.AGAIN1"), "sent")

    assert _read(workspace, conversation_id).status_code == 200
    assert _receipt_count(gaps.tenant_id) == 1  # nothing new was read: nothing owed

    gaps.inbound_text(account, "wamid.AGAIN2", "15551234567", body="one more thing")
    wait_until(lambda: _message_id(gaps, "wamid.AGAIN2"), "second inbound message stored")
    _read(workspace, conversation_id)

    _settled(_message_id(gaps, "wamid.AGAIN2"), "sent")
    assert [r.json["message_id"] for r in fake_graph.receipts()] == [
        "wamid.AGAIN1",
        "wamid.AGAIN2",
    ]


def test_messenger_and_instagram_get_mark_seen(workspace, gaps, fake_graph):
    for channel in ("messenger", "instagram"):
        account = gaps.meta_account(channel)
        contact = gaps.contact(channel=channel, external_id=f"psid-{channel}")
        conversation = gaps.conversation(
            contact, integration_account_id=account["id"], inbound_count=1
        )
        message_id = gaps.message(conversation, "hi", provider_message_id=f"m_{channel}_1")

        assert _read(workspace, conversation["id"]).status_code == 200

        _settled(message_id, "sent")
        request = fake_graph.receipts()[-1]
        assert request.path == "/v21.0/me/messages"
        assert request.token == account["token"]
        assert request.json == {
            "recipient": {"id": f"psid-{channel}"},
            "sender_action": "mark_seen",
        }


def test_email_and_api_conversations_owe_no_receipt(workspace, gaps, fake_graph):
    for channel in ("email", "api"):
        conversation = gaps.conversation(
            gaps.contact(channel=channel, external_id=f"{channel}-contact"), inbound_count=1
        )
        gaps.message(conversation, "hello", provider_message_id=f"<{channel}@example.com>")

        resp = _read(workspace, conversation["id"])

        assert resp.status_code == 200, resp.text
    assert _receipt_count(gaps.tenant_id) == 0
    assert fake_graph.receipts() == []


def test_a_transient_graph_failure_is_retried_until_sent(workspace, gaps, fake_graph):
    fake_graph.script_receipts("503", "ok")
    _account, conversation_id = _whatsapp_conversation(gaps, "wamid.RETRY1")

    _read(workspace, conversation_id)

    receipt = _settled(_message_id(gaps, "wamid.RETRY1"), "sent")
    assert receipt.attempts == 2
    assert len(fake_graph.receipts()) == 2


def test_graph_failing_every_time_fails_the_receipt_visibly(workspace, gaps, fake_graph):
    fake_graph.script_receipts("503")
    _account, conversation_id = _whatsapp_conversation(gaps, "wamid.DOWN1")

    _read(workspace, conversation_id)

    message_id = _message_id(gaps, "wamid.DOWN1")
    receipt = _settled(message_id, "failed")
    assert receipt.attempts == 3  # the first try and OUTBOUND_MAX_RETRIES=2 retries
    assert receipt.last_error_code == "2"  # Meta's "service temporarily unavailable"
    assert receipt.finished_at is not None
    [letter] = wait_until(
        lambda: dead_letters("mark_read_upstream", str(message_id)), "the dead letter"
    )
    assert letter.retries == 2


def test_a_permanent_graph_error_fails_at_once(workspace, gaps, fake_graph):
    fake_graph.script_receipts("100")
    _account, conversation_id = _whatsapp_conversation(gaps, "wamid.BAD1")

    _read(workspace, conversation_id)

    message_id = _message_id(gaps, "wamid.BAD1")
    receipt = _settled(message_id, "failed")
    assert receipt.attempts == 1
    assert receipt.last_error_code == "100"
    assert len(fake_graph.receipts()) == 1
    assert dead_letters("mark_read_upstream", str(message_id)) == []


def test_another_tenants_conversation_is_404_and_owes_nothing(
    workspace, other_workspace, gaps, fake_graph
):
    _account, conversation_id = _whatsapp_conversation(gaps, "wamid.MINE1")

    resp = _read(other_workspace, conversation_id)

    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"
    assert _receipt_count(gaps.tenant_id) == 0


def test_the_sweeper_redrives_a_receipt_whose_job_was_lost(workspace, gaps, fake_graph):
    account = gaps.meta_account("whatsapp")
    contact = gaps.contact(channel="whatsapp", external_id="15550001111")
    conversation = gaps.conversation(contact, integration_account_id=account["id"])
    message_id = gaps.message(conversation, "lost", provider_message_id="wamid.LOST1")
    with session_scope() as session:  # a receipt recorded, its message never enqueued
        session.add(
            ReadReceipt(
                message_id=message_id,
                tenant_id=gaps.tenant_id,
                sweep_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
            )
        )

    with session_scope() as session:
        assert jobs.sweep_read_receipts(session) >= 1

    _settled(message_id, "sent")
    assert [r.json["message_id"] for r in fake_graph.receipts()] == ["wamid.LOST1"]


def test_a_deleted_accounts_conversation_is_not_marked_read_from_another_number(
    workspace, gaps, fake_graph
):
    """The tenant's other number would mark a message it never received: the receipt fails
    (account_deleted) instead of going out with the other account's token."""
    account, conversation_id = _whatsapp_conversation(gaps, "wamid.GONE1")
    gaps.meta_account("whatsapp")  # the default once the first is gone
    deleted = workspace.call("DELETE", f"/api/integration-accounts/{account['id']}")
    assert deleted.status_code == 204, deleted.text

    _read(workspace, conversation_id)

    receipt = _settled(_message_id(gaps, "wamid.GONE1"), "failed")
    assert receipt.last_error_code == "account_deleted"
    assert fake_graph.receipts() == []


def test_requeuing_a_dead_receipt_sends_it(client, workspace, gaps, fake_graph):
    """The job's last attempt failed the receipt: the requeue must make it pending again,
    or the requeued job finds it finished and tells Meta nothing."""
    from shared.config import get_settings

    operator = {"Authorization": f"Bearer {get_settings().metrics_token}"}
    fake_graph.script_receipts("503")
    _account, conversation_id = _whatsapp_conversation(gaps, "wamid.REVIVE1")
    _read(workspace, conversation_id)
    message_id = _message_id(gaps, "wamid.REVIVE1")
    _settled(message_id, "failed")
    [letter] = wait_until(
        lambda: dead_letters("mark_read_upstream", str(message_id)), "the dead letter"
    )
    tries = len(fake_graph.receipts())
    fake_graph.script_receipts("ok")

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter.id}/requeue", headers=operator)

    assert resp.status_code == 200, resp.text
    receipt = _settled(message_id, "sent")
    assert receipt.finished_at is not None
    assert len(fake_graph.receipts()) == tries + 1
    again = client.simulate_post(f"/api/ops/dead-letters/{letter.id}/requeue", headers=operator)
    assert again.status_code == 409


def test_a_dead_receipt_is_listed_in_its_tenants_dead_letters(workspace, gaps, fake_graph):
    """A receipt's job names only the message (no ``tenant_id`` option): its dead letter
    takes the tenant of that message, or the tenant's admin never sees it in the console."""
    fake_graph.script_receipts("503")
    _account, conversation_id = _whatsapp_conversation(gaps, "wamid.DEAD1")
    _read(workspace, conversation_id)
    message_id = _message_id(gaps, "wamid.DEAD1")
    _settled(message_id, "failed")
    [letter] = wait_until(
        lambda: dead_letters("mark_read_upstream", str(message_id)), "the dead letter"
    )

    assert letter.tenant_id == gaps.tenant_id
    listed = workspace.call("GET", "/api/ops/dead-letters").json["items"]
    assert str(letter.id) in [item["id"] for item in listed]
