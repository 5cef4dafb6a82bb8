"""A send whose job was lost is re-driven by the scheduler; one being sent is left alone."""

from __future__ import annotations

from sqlalchemy import update

from scheduler import jobs
from shared.channels import outbound_queue
from shared.db import session_scope
from shared.models.outbound import OutboundSend
from tests.channels_outbound.conftest import poll, wait_for_status
from workers.actors.channels_outbound import enqueue_sends


def _sweep() -> int:
    with session_scope() as session:
        return jobs.sweep_outbound_sends(session)


def test_a_lost_send_is_redriven_once_due(workspace, channels, fake_graph):
    account_id = channels.account("whatsapp", credentials={"access_token": "tok"})
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

        poll(claim, "the send row")
    finally:
        outbound_queue.set_enqueuer(enqueue_sends)
    assert fake_graph.sent() == []
    assert _sweep() == 0  # not due yet: sweep_at is OUTBOUND_SWEEP_AFTER_SECONDS ahead

    with session_scope() as session:
        session.execute(
            update(OutboundSend)
            .where(OutboundSend.message_id == message_id)
            .values(sweep_at=OutboundSend.created_at)
        )
    assert _sweep() == 1

    wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert len(fake_graph.sent()) == 1
    assert _sweep() == 0  # sent: nothing left to re-drive
