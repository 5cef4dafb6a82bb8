"""A send whose job was lost is re-driven by the scheduler; one being sent is left alone.

The sweeper is global, and a send an earlier test left pending may come due during this
one: the assertions judge this test's own row and its own account's traffic."""

from __future__ import annotations

from sqlalchemy import update

from shared.channels import outbound_queue
from shared.db import session_scope
from shared.models.outbound import OutboundSend
from tests.channels_outbound.conftest import redriven, sent_with, wait_for_status
from tests.waiting import wait_until
from workers.actors.channels_outbound import enqueue_sends


def test_a_lost_send_is_redriven_once_due(workspace, channels, fake_graph):
    account_id = channels.account("whatsapp", credentials={"access_token": "token-lost-send"})
    conversation = channels.conversation(
        channels.contact(channel="whatsapp"), integration_account_id=account_id
    )
    outbound_queue.set_enqueuer(None)  # the broker "loses" the job
    try:
        resp = workspace.call(
            "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": "lost"}
        )
        message_id = resp.json["id"]

        def claim():
            with session_scope() as session:
                return session.get(OutboundSend, message_id)

        wait_until(claim, "the send row")
    finally:
        outbound_queue.set_enqueuer(enqueue_sends)
    assert sent_with(fake_graph, "token-lost-send") == []
    assert not redriven(message_id)  # not due yet: sweep_at is OUTBOUND_SWEEP_AFTER_SECONDS ahead

    with session_scope() as session:
        session.execute(
            update(OutboundSend)
            .where(OutboundSend.message_id == message_id)
            .values(sweep_at=OutboundSend.created_at)
        )
    assert redriven(message_id)

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert len(sent_with(fake_graph, "token-lost-send")) == 1
    assert not redriven(message_id)  # sent: nothing left to re-drive
