"""Suspension reaches work whose messages name only rows, not their tenant.

``process_inbound`` (a payload stored before the suspension), ``send_email`` (a queued
platform email) and ``deliver_webhooks`` (a batch that may mix tenants) run through a
real broker and worker. A suspended tenant's work is not done: each piece gets one dead
letter with the reason (which the platform operator lists), its row stays pending, the
sweepers leave it, and it goes through once the tenant is reactivated. Time is moved
(due dates set in the past), not slept. Each test waits for its own queue to be
processed (``broker.join``), never for the worker's every queue: ``worker.join()`` also
waits out the messages earlier tests of the process left delayed (an outbound retry, due
minutes later), and hung when this file ran after ``tests/channels_outbound``.

NOTE: the actor modules are imported inside the tests: an actor takes its retry settings
when declared, and other directories (``tests/channels_gaps``) set theirs in the
environment at collection, after this module would otherwise have declared them.
"""

from __future__ import annotations

import os
import uuid

from sqlalchemy import func, select, update

from scheduler import jobs
from shared.channels import inbound_queue
from shared.db import session_scope
from shared.identity import invitations
from shared.models import AgentInvitation, DeadLetter, InboundEvent, WebhookDelivery
from shared.webhooks import sweeper
from tests.admin.test_tenants import relay  # noqa: F401
from tests.channels_inbound.conftest import Channels
from tests.peers.fixtures import smtp_peers, smtp_servers, smtp_tls_files  # noqa: F401
from tests.waiting import wait_until
from tests.webhooks.conftest import outbox, path, receiver, settled  # noqa: F401
from tests.webhooks.test_api import create
from tests.webhooks.test_delivery import new_agent
from workers import queues
from workers.tenant_gate import REASON

OPERATOR = {"Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}
AN_HOUR_AGO = func.now() - func.make_interval(0, 0, 0, 0, 1)


def _suspend(root, workspace) -> None:
    assert root.call("DELETE", f"/api/admin/tenants/{workspace.tenant['id']}").status_code == 204


def _reactivate(root, workspace) -> None:
    back = root.call(
        "PATCH", f"/api/admin/tenants/{workspace.tenant['id']}", json={"status": "active"}
    )
    assert back.status_code == 200, back.text


def _letters(workspace, actor_name: str, row_id: str) -> list[DeadLetter]:
    """The dead letters of one tenant's work on one row (its id among the arguments)."""
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(DeadLetter).where(
                    DeadLetter.tenant_id == uuid.UUID(workspace.tenant["id"]),
                    DeadLetter.actor_name == actor_name,
                    DeadLetter.args.contains([row_id]),
                )
            )
        )
        session.expunge_all()
        return rows


def _operator_lists(client, letter: DeadLetter) -> dict:
    listed = client.simulate_get("/api/ops/dead-letters", params={"limit": 200}, headers=OPERATOR)
    assert listed.status_code == 200, listed.text
    (item,) = [i for i in listed.json["items"] if i["id"] == str(letter.id)]
    return item


def _sweep_at(model, row_id) -> object:
    with session_scope() as session:
        return session.get(model, uuid.UUID(str(row_id))).sweep_at


def test_a_payload_stored_before_the_suspension_is_dropped_with_a_reason(
    root, client, workspace, broker, worker
):
    from workers.actors.channels_inbound import process_inbound

    channels = Channels(workspace, broker)
    account = channels.account("whatsapp")
    saved = inbound_queue.QUEUE.enqueuer
    inbound_queue.set_enqueuer(None)  # stored and acknowledged; its message not run yet
    try:
        assert channels.whatsapp(account, "wa_text.json").status_code == 200
    finally:
        inbound_queue.set_enqueuer(saved)
    (row,) = channels.inbound_events()
    _suspend(root, workspace)

    for _ in range(2):  # the queued message, then a copy (a sweeper's, a redelivery)
        process_inbound.send(str(row.id))
        channels.settle()
    (letter,) = _letters(workspace, "process_inbound", str(row.id))
    assert letter.error == REASON and letter.queue_name == queues.INBOUND
    assert _operator_lists(client, letter)["error"] == REASON
    (row,) = channels.inbound_events()
    assert (row.status, row.attempts) == ("pending", 0)
    assert channels.messages() == []

    # The sweeper leaves it while the tenant is suspended...
    with session_scope() as session:
        session.execute(
            update(InboundEvent).where(InboundEvent.id == row.id).values(sweep_at=AN_HOUR_AGO)
        )
    before = _sweep_at(InboundEvent, row.id)
    with session_scope() as session:
        jobs.sweep_inbound_events(session)
    assert _sweep_at(InboundEvent, row.id) == before
    # ...and re-drives it once the tenant is reactivated.
    _reactivate(root, workspace)
    with session_scope() as session:
        assert jobs.sweep_inbound_events(session) >= 1
    channels.settle()
    (row,) = channels.inbound_events()
    assert row.status == "processed"
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.TEXT1"]


def test_a_queued_platform_email_of_a_suspended_workspace_is_dropped_with_a_reason(
    root,
    client,
    workspace,
    broker,
    worker,
    relay,  # noqa: F811
):
    from workers.actors.platform_email import send_email

    agent, _ = workspace.create_agent()
    saved = invitations.QUEUE.enqueuer
    invitations.set_enqueuer(None)  # written; its send_email message not run yet
    try:
        base = f"/api/admin/tenants/{workspace.tenant['id']}/users"
        reset = root.call("POST", f"{base}/{agent['id']}/reset-password")
        assert reset.status_code == 200, reset.text
    finally:
        invitations.set_enqueuer(saved)
    invitation_id = reset.json["invitation_id"]
    _suspend(root, workspace)

    for _ in range(2):
        send_email.send(invitations.EMAIL_KIND, invitation_id)
        broker.join(queues.CHANNELS, timeout=20_000)
    (letter,) = _letters(workspace, "send_email", invitation_id)
    assert letter.error == REASON and letter.args == [invitations.EMAIL_KIND, invitation_id]
    assert _operator_lists(client, letter)["actor"] == "send_email"
    with session_scope() as session:
        row = session.get(AgentInvitation, uuid.UUID(invitation_id))
        assert (row.status, row.attempts) == ("pending", 0)
    assert not [m for m in relay.received if agent["email"] in m.rcpt_tos]

    with session_scope() as session:
        session.execute(
            update(AgentInvitation)
            .where(AgentInvitation.id == uuid.UUID(invitation_id))
            .values(sweep_at=AN_HOUR_AGO)
        )
    before = _sweep_at(AgentInvitation, invitation_id)
    with session_scope() as session:
        jobs.sweep_invitation_emails(session)
    assert _sweep_at(AgentInvitation, invitation_id) == before

    _reactivate(root, workspace)
    with session_scope() as session:
        assert jobs.sweep_invitation_emails(session) >= 1
    mail = wait_until(
        lambda: [m for m in relay.received if agent["email"] in m.rcpt_tos], "the reset email"
    )[0]
    assert mail.message["Subject"].startswith("Reset your")


def _settle_events(workspace) -> None:
    wait_until(
        lambda: all(e.status == "processed" for e in outbox(workspace.tenant["id"])),
        "the workspace's first events dispatched",
    )


def test_a_webhook_batch_that_mixes_tenants_holds_only_the_suspended_tenants_rows(
    root,
    client,
    workspace,
    other_workspace,
    receiver,  # noqa: F811
    path,  # noqa: F811
    broker,
    worker,
):
    from workers.actors.webhooks import deliver_webhooks

    for ws in (workspace, other_workspace):
        _settle_events(ws)
    held_path, live_path = path + "-suspended", path + "-active"
    held = create(workspace, receiver.url(held_path))
    live = create(other_workspace, receiver.url(live_path))
    for hook_path in (held_path, live_path):
        receiver.plan(hook_path, 500, 200)  # the first attempt fails: both wait for a retry
    new_agent(workspace)
    new_agent(other_workspace)
    [mine] = settled(held["id"])
    [theirs] = settled(live["id"])
    assert (mine.status, mine.attempt_count) == ("pending", 1)
    _suspend(root, workspace)

    # One batch, both tenants' deliveries due now (as a sweep queued before the suspension).
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([mine.id, theirs.id]))
            .values(next_attempt_at=WebhookDelivery.created_at)
        )
    batch = [str(mine.id), str(theirs.id)]
    for _ in range(2):  # and a copy of it: still one record
        deliver_webhooks.send(batch)
        broker.join(queues.WEBHOOKS, timeout=20_000)

    # The active tenant's delivery went out; the suspended one's waits, recorded once.
    [theirs] = settled(live["id"], statuses=("succeeded",))
    assert len(receiver.at(live_path)) == 2
    with session_scope() as session:
        row = session.get(WebhookDelivery, mine.id)
        assert (row.status, row.attempt_count) == ("pending", 1)
    assert len(receiver.at(held_path)) == 1
    (letter,) = _letters(workspace, "deliver_webhook", str(mine.id))
    assert letter.error == REASON and letter.args == [str(mine.id)]
    assert letter.queue_name == queues.WEBHOOKS
    assert _operator_lists(client, letter)["tenant_id"] == workspace.tenant["id"]
    assert _letters(other_workspace, "deliver_webhook", str(theirs.id)) == []

    # The sweeper leaves it while suspended...
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == mine.id)
            .values(sweep_at=WebhookDelivery.created_at)
        )
    before = _sweep_at(WebhookDelivery, mine.id)
    with session_scope() as session:
        sweeper.sweep(session)
    assert _sweep_at(WebhookDelivery, mine.id) == before
    # ...and re-drives it once the tenant is reactivated.
    _reactivate(root, workspace)
    with session_scope() as session:
        assert sweeper.sweep(session) >= 1
    wait_until(lambda: len(receiver.at(held_path)) == 2, "the held delivery sent")
    settled(held["id"], statuses=("succeeded",))


def test_an_automation_evaluation_queued_before_the_suspension_waits_with_a_reason(
    root, client, workspace, broker, worker
):
    from shared.automation import queue as automation_queue
    from shared.models import AutomationEvent
    from tests.automation.conftest import (
        add_conversation,
        conversation,
        create_rule,
        queue_rows,
        send_message,
    )
    from workers.actors.automation import evaluate_rules

    create_rule(workspace)
    conversation_id = add_conversation(workspace)
    saved = automation_queue.QUEUE.enqueuer
    automation_queue.set_enqueuer(None)  # the row is written; its evaluation not sent yet
    try:
        send_message(workspace, conversation_id, "refund please")
        (row,) = wait_until(lambda: queue_rows(workspace) or None, "the automation row")
        # NOTE: suspended before the enqueuer is back: the dispatch's after-commit hand-off
        # may run a moment after the row is seen, and must not evaluate it first.
        _suspend(root, workspace)
    finally:
        automation_queue.set_enqueuer(saved)

    for _ in range(2):  # the queued message, then a copy (a sweeper's, a redelivery)
        evaluate_rules.send(str(row.id))
        broker.join(queues.AUTOMATION, timeout=20_000)
    (letter,) = _letters(workspace, "evaluate_rules", str(row.id))
    assert letter.error == REASON and letter.queue_name == queues.AUTOMATION
    assert _operator_lists(client, letter)["error"] == REASON
    (row,) = queue_rows(workspace)
    assert (row.status, row.attempts) == ("pending", 0)
    assert "refund" not in (conversation(conversation_id).tags or [])

    # The sweeper leaves it while the tenant is suspended...
    with session_scope() as session:
        session.execute(
            update(AutomationEvent).where(AutomationEvent.id == row.id).values(sweep_at=AN_HOUR_AGO)
        )
    # NOTE: judged by this row's sweep time, which a re-drive moves: the sweeper's count
    # covers every tenant of the shared test database.
    due = _sweep_at(AutomationEvent, row.id)
    with session_scope() as session:
        jobs.sweep_automation_events(session)
    assert _sweep_at(AutomationEvent, row.id) == due
    # ...and re-drives it once the tenant is reactivated.
    _reactivate(root, workspace)
    with session_scope() as session:
        jobs.sweep_automation_events(session)
    assert _sweep_at(AutomationEvent, row.id) > due
    wait_until(lambda: queue_rows(workspace)[0].status == "done", "the evaluation done")
    assert "refund" in conversation(conversation_id).tags


def test_a_read_receipt_queued_before_the_suspension_is_not_sent(
    root, client, workspace, broker, worker
):
    from workers.actors.read_receipts import mark_read_upstream

    channels = Channels(workspace, broker)
    account = channels.account("whatsapp")
    assert channels.whatsapp(account, "wa_text.json").status_code == 200
    channels.settle()
    (message,) = channels.messages()
    _suspend(root, workspace)

    mark_read_upstream.send(str(message.id))
    broker.join(queues.CHANNELS, timeout=20_000)
    (letter,) = _letters(workspace, "mark_read_upstream", str(message.id))
    assert letter.error == REASON and _operator_lists(client, letter)["error"] == REASON
