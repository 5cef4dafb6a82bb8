"""The outbound engine: batches sent concurrently within each account's bound, Meta's
throttling backing the account off, retries and failures per message, and a claim
that outlives a killed worker without letting a second one send meanwhile."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from shared.campaigns.runner import THROTTLED
from shared.channels import outbound_engine, outbound_limits, outbound_queue, send_markers
from shared.channels.send_errors import SendFailed
from shared.context import Ctx
from shared.db import session_scope
from shared.inbox.messages import create_outbound_message
from shared.models import Conversation, DeadLetter, Message
from shared.models.outbound import OutboundSend
from shared.redis_client import get_redis
from tests.channels_outbound.conftest import redriven, sent_with
from tests.peers.environment import environment
from tests.waiting import wait_until
from workers.actors.channels_outbound import enqueue_sends


@pytest.fixture
def per_account():
    """Set ``OUTBOUND_ACCOUNT_CONCURRENCY`` for one test; restored after it."""
    with contextlib.ExitStack() as stack:

        def set_limit(limit: int) -> None:
            stack.enter_context(environment(OUTBOUND_ACCOUNT_CONCURRENCY=str(limit)))

        yield set_limit


def _whatsapp(channels, token: str, **credentials: str) -> dict:
    account_id = channels.account("whatsapp", credentials={"access_token": token} | credentials)
    return channels.conversation(
        channels.contact(channel="whatsapp"), integration_account_id=account_id
    )


def _commit_together(channels, conversations: list[dict], each: int) -> list[uuid.UUID]:
    """``each`` queued messages per conversation, all committed in one transaction."""
    with session_scope() as session:
        rows = {
            c.id: c
            for c in session.scalars(
                select(Conversation).where(
                    Conversation.tenant_id == channels.tenant_id,
                    Conversation.id.in_([c["id"] for c in conversations]),
                )
            )
        }
        ctx = Ctx.system(channels.tenant_id)
        return [
            create_outbound_message(session, ctx, rows[c["id"]], body=f"batch {n}").id
            for c in conversations
            for n in range(each)
        ]


def _claims(ids) -> dict[uuid.UUID, OutboundSend]:
    with session_scope() as session:
        rows = session.scalars(select(OutboundSend).where(OutboundSend.message_id.in_(ids)))
        return {row.message_id: row for row in rows}


def _messages(ids) -> dict[uuid.UUID, Message]:
    with session_scope() as session:
        return {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}


def _settled(ids, timeout: float = 20.0) -> dict[uuid.UUID, Message]:
    def check():
        found = _messages(ids)
        return found if all(m.status in ("sent", "failed") for m in found.values()) else None

    return wait_until(check, f"{len(ids)} messages sent or failed", timeout=timeout)


def test_a_batch_goes_out_concurrently_within_each_accounts_bound(
    workspace, channels, fake_graph, per_account
):
    per_account(2)
    first, second = _whatsapp(channels, "token-a"), _whatsapp(channels, "token-b")
    fake_graph.script(("sleep", 0.2))

    ids = _commit_together(channels, [first, second], each=8)

    settled = _settled(ids)
    assert {m.status for m in settled.values()} == {"sent"}
    requests = fake_graph.sent()
    assert len(requests) == 16  # each message once
    assert len({m.provider_message_id for m in settled.values()}) == 16
    assert fake_graph.peak_in_flight("token-a") == 2  # concurrent, and never above the bound
    assert fake_graph.peak_in_flight("token-b") == 2
    assert fake_graph.peak_in_flight() >= 3  # both accounts at once
    assert {(c.status, c.attempts) for c in _claims(ids).values()} == {("sent", 1)}
    updates = channels.events("message.status_updated")
    events = [e.data["id"] for e in updates if e.data["status"] == "sent"]
    assert sorted(events) == sorted(str(i) for i in ids)


def test_meta_throttling_backs_the_account_off_and_no_other(
    workspace, channels, fake_graph, per_account
):
    per_account(1)
    throttled = _whatsapp(channels, "token-throttled")
    fake_graph.script(("throttle", "130429", 3), "ok")

    ids = _commit_together(channels, [throttled], each=4)
    [refused] = wait_until(fake_graph.sent, "the throttled send")

    # Another account's message, sent while the first one is paused: not held back.
    other = _whatsapp(channels, "token-other")
    resp = workspace.call(
        "POST", f"/api/conversations/{other['id']}/messages", json={"body": "not paused"}
    )
    assert resp.status_code == 201, resp.text
    settled = _settled([*ids, uuid.UUID(resp.json["id"])], timeout=30)

    assert {m.status for m in settled.values()} == {"sent"}
    requests = fake_graph.sent()
    assert len(requests) == 6  # the throttled attempt, then each message once
    paused = [r for r in requests[1:] if r.token == "token-throttled"]
    assert len(paused) == 4
    assert min(r.at for r in paused) - refused.at >= 2.9  # Meta's Retry-After: 3
    [unpaused] = [r for r in requests if r.token == "token-other"]
    assert unpaused.at < min(r.at for r in paused)
    claims = _claims(ids)
    assert sorted(c.attempts for c in claims.values()) == [1, 1, 1, 2]  # held back: no attempt
    assert {c.last_error_code for c in claims.values() if c.attempts == 2} == {"130429"}


def test_in_a_batch_a_transient_failure_is_retried_and_a_permanent_one_fails_alone(
    workspace, channels, fake_graph, per_account
):
    per_account(1)  # one at a time: the script's answers go to the messages in order
    conversation = _whatsapp(channels, "token-mixed")
    fake_graph.script("503", "131026", "ok")

    retried, refused, fine = _commit_together(channels, [conversation], each=3)

    settled = _settled([retried, refused, fine])
    assert settled[retried].status == "sent"
    assert settled[fine].status == "sent"
    assert (settled[refused].status, settled[refused].error_code) == ("failed", "131026")
    assert len(fake_graph.sent()) == 4
    claims = _claims([retried, refused, fine])
    assert (claims[retried].attempts, claims[retried].last_error_code) == (2, "2")
    assert (claims[refused].status, claims[refused].attempts) == ("failed", 1)
    assert claims[fine].attempts == 1
    with session_scope() as session:  # a permanent refusal is the message's status, no letter
        letters = session.scalars(
            select(DeadLetter).where(DeadLetter.args.contains([str(refused)]))
        ).all()
    assert letters == []


def test_a_killed_workers_claim_keeps_others_off_until_it_runs_out(workspace, channels, fake_graph):
    conversation = _whatsapp(channels, "token-kill")
    outbound_queue.set_enqueuer(None)  # no job: the "worker" below claims by hand
    try:
        [message_id] = _commit_together(channels, [conversation], each=1)
        wait_until(lambda: _claims([message_id]), "the send row")
    finally:
        outbound_queue.set_enqueuer(enqueue_sends)

    claims, done = outbound_engine.claim([message_id])  # then the worker is killed
    assert [c.message_id for c in claims] == [message_id] and done == {}

    # While the claim lives: a duplicate job and the sweeper send nothing.
    assert outbound_engine.send_batch([message_id]) == {}
    assert not redriven(message_id)
    assert sent_with(fake_graph, "token-kill") == []

    with session_scope() as session:  # time moves past the claim's expiry
        session.execute(
            update(OutboundSend)
            .where(OutboundSend.message_id == message_id)
            .values(next_attempt_at=OutboundSend.created_at, sweep_at=OutboundSend.created_at)
        )
    assert redriven(message_id)

    [settled] = _settled([message_id]).values()
    assert settled.status == "sent"
    assert len(sent_with(fake_graph, "token-kill")) == 1
    assert _claims([message_id])[message_id].attempts == 2  # the dead worker's, then this one


def _unsent(channels, token: str, **credentials: str) -> uuid.UUID:
    """One committed WhatsApp message whose send row exists but was handed to no worker:
    the test claims, sends and records it step by step."""
    conversation = _whatsapp(channels, token, **credentials)
    outbound_queue.set_enqueuer(None)
    try:
        [message_id] = _commit_together(channels, [conversation], each=1)
        wait_until(lambda: _claims([message_id]), "the send row")
    finally:
        outbound_queue.set_enqueuer(enqueue_sends)
    return message_id


def _claim_runs_out(message_id) -> None:
    with session_scope() as session:
        session.execute(
            update(OutboundSend)
            .where(OutboundSend.message_id == message_id)
            .values(next_attempt_at=OutboundSend.created_at, sweep_at=OutboundSend.created_at)
        )


def test_a_send_in_doubt_stays_in_doubt_when_the_claim_that_found_it_is_lost_too(
    workspace, channels, fake_graph
):
    message_id = _unsent(channels, "token-doubt2")
    # Attempt 1: the worker reaches the provider call (Meta takes it) and is killed.
    [first], _ = outbound_engine.claim([message_id])
    assert first.attempt == 1
    send_markers.mark(message_id, first.attempt)
    _claim_runs_out(message_id)
    # Attempt 2 finds it in doubt; its worker is killed too before its record commits.
    [second], _ = outbound_engine.claim([message_id])
    assert second.attempt == 2 and second.error is outbound_engine.DELIVERY_UNKNOWN
    _claim_runs_out(message_id)

    outbound_engine.send_batch([message_id])  # attempt 3

    [settled] = _settled([message_id]).values()
    assert sent_with(fake_graph, "token-doubt2") == []  # never sent a second time
    assert (settled.status, settled.error_code) == ("failed", "delivery_unknown")


@pytest.mark.parametrize("retry_after", ["1e999", "1e300"])
def test_a_retry_after_beyond_any_clock_is_held_to_a_day_and_the_batch_is_recorded(
    workspace, channels, fake_graph, per_account, retry_after
):
    per_account(1)  # one at a time: the throttling answer goes to the first message
    conversation = _whatsapp(channels, "token-forever")
    fake_graph.script(("throttle", "130429", retry_after), "ok")

    ids = _commit_together(channels, [conversation], each=2)

    def rescheduled():
        claims = _claims(ids)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
        due = [c.next_attempt_at for c in claims.values() if c.status == "pending"]
        return claims if len(due) == 2 and all(at > later for at in due) else None

    claims = wait_until(rescheduled, "both sends put back for a day")
    assert sorted((c.attempts, c.last_error_code) for c in claims.values()) == [
        (0, None),  # held back by the pause: no attempt
        (1, "130429"),
    ]
    assert {m.status for m in _messages(ids).values()} == {"queued"}
    assert len(sent_with(fake_graph, "token-forever")) == 1


def test_a_send_queued_behind_others_past_its_claim_is_not_sent_by_two_workers(
    workspace, channels, fake_graph
):
    conversation = _whatsapp(channels, "token-queued")
    outbound_queue.set_enqueuer(None)  # the "workers" below claim by hand
    try:
        *early, late = _commit_together(channels, [conversation], each=6)
        wait_until(lambda: len(_claims([*early, late])) == 6, "the send rows")
    finally:
        outbound_queue.set_enqueuer(enqueue_sends)
    fake_graph.script(*[("sleep", 0.9)] * 5, "ok")  # each under the Graph timeout (1 s)

    with (
        environment(
            OUTBOUND_SEND_THREADS="1",
            # Every send's bound under half the claim, as the settings require.
            OUTBOUND_CLAIM_SECONDS="4.5",
            SMTP_TIMEOUT_SECONDS="0.5",
            WEBHOOK_TIMEOUT_SECONDS="1",
        ),
        ThreadPoolExecutor(1) as first_worker,
    ):
        batch = first_worker.submit(outbound_engine.send_batch, [*early, late])
        wait_until(lambda: fake_graph.sent(), "the first send", timeout=5)

        def claim_ran_out():  # the late send still waits for the one send thread
            claim = _claims([late])[late]
            return claim.next_attempt_at < dt.datetime.now(dt.UTC)

        wait_until(claim_ran_out, "the late send's claim to run out", timeout=10)
        again = outbound_engine.send_batch([late])  # a second worker, or the sweeper's job
        first = batch.result(timeout=30)

    assert again[late].outcome == "sent"
    put_back = [i for i, result in first.items() if result.outcome == "retry"]
    outbound_engine.send_batch(put_back)  # their jobs again (the actor re-enqueues a retry)
    settled = _settled([*early, late])
    assert {m.status for m in settled.values()} == {"sent"}
    assert len(sent_with(fake_graph, "token-queued")) == 6  # each message once


def test_a_late_record_of_a_lost_claim_does_not_free_the_send_another_worker_holds(
    workspace, channels, fake_graph
):
    message_id = _unsent(channels, "token-stale")
    # Worker A claims, is held back (a paused account), and is slow to record it.
    [stale], _ = outbound_engine.claim([message_id])
    _claim_runs_out(message_id)
    # Worker B claims it meanwhile and is about to send.
    [live], _ = outbound_engine.claim([message_id])
    assert live.attempt == 2

    outbound_engine.record([stale], {message_id: outbound_engine.Attempted(deferred=0.0)})
    assert outbound_engine.send_batch([message_id]) == {}  # A's re-enqueued job: B holds it
    outbound_engine.record([live], outbound_engine.send_all([live]))

    [settled] = _settled([message_id]).values()
    assert settled.status == "sent"
    assert len(sent_with(fake_graph, "token-stale")) == 1


def test_a_late_record_of_a_lost_claim_leaves_the_live_claims_send_in_doubt(
    workspace, channels, fake_graph
):
    message_id = _unsent(channels, "token-stale-mark")
    [stale], _ = outbound_engine.claim([message_id])  # worker A, slow to record
    _claim_runs_out(message_id)
    [live], _ = outbound_engine.claim([message_id])  # worker B reaches the provider call...
    send_markers.mark(message_id, live.attempt)

    outbound_engine.record([stale], {message_id: outbound_engine.Attempted(deferred=0.0)})
    _claim_runs_out(message_id)  # ... and is killed before its record
    outbound_engine.send_batch([message_id])

    [settled] = _settled([message_id]).values()
    assert sent_with(fake_graph, "token-stale-mark") == []  # B's call may have reached Meta
    assert (settled.status, settled.error_code) == ("failed", "delivery_unknown")


def _lost_claim_then_live_one(message_id):
    """Worker A's claim (slow to record: it runs out) and worker B's, which holds it now."""
    [stale], _ = outbound_engine.claim([message_id])
    _claim_runs_out(message_id)
    [live], _ = outbound_engine.claim([message_id])
    assert (stale.attempt, live.attempt) == (1, 2)
    return stale, live


def test_a_late_failure_of_a_lost_claim_does_not_fail_what_the_live_claim_sent(
    workspace, channels, fake_graph
):
    message_id = _unsent(channels, "token-late-failure")
    # A found the account disabled (no provider call); it was enabled again before B claimed.
    stale, live = _lost_claim_then_live_one(message_id)
    outbound_engine.record([live], outbound_engine.send_all([live]))

    disabled = SendFailed("account_disabled", "the whatsapp account is disabled", transient=False)
    late = outbound_engine.record([stale], {message_id: outbound_engine.Attempted(error=disabled)})

    message = _messages([message_id])[message_id]
    assert (message.status, message.error_code) == ("sent", None)
    claim = _claims([message_id])[message_id]
    assert (claim.status, claim.attempts, claim.last_error_code) == ("sent", 2, None)
    assert late[message_id].outcome == "busy"  # nothing recorded: B's claim settled the send
    assert len(sent_with(fake_graph, "token-late-failure")) == 1


def test_a_late_success_of_a_lost_claim_does_not_finish_the_send_another_worker_holds(
    workspace, channels, fake_graph
):
    message_id = _unsent(channels, "token-late-success")
    # A's call went out while Redis was down (no marker), and A was slow to record it.
    stale, live = _lost_claim_then_live_one(message_id)
    held = _claims([message_id])[message_id]

    late = outbound_engine.record(
        [stale], {message_id: outbound_engine.Attempted(provider_id="wamid.late")}
    )

    claim = _claims([message_id])[message_id]  # B's claim as it was: still B's to record
    assert (claim.status, claim.attempts, claim.finished_at) == ("pending", 2, None)
    assert claim.next_attempt_at == held.next_attempt_at
    message = _messages([message_id])[message_id]
    assert (message.status, message.provider_message_id) == ("queued", None)
    assert late[message_id].outcome == "busy"

    [result] = outbound_engine.record([live], outbound_engine.send_all([live])).values()
    assert result.outcome == "sent"
    message = _messages([message_id])[message_id]
    assert (message.status, message.provider_message_id) == ("sent", result.provider_message_id)
    assert _claims([message_id])[message_id].status == "sent"


def test_a_late_record_of_a_lost_claim_keeps_its_provider_call_in_doubt(
    workspace, channels, fake_graph
):
    message_id = _unsent(channels, "token-late-doubt")
    [stale], _ = outbound_engine.claim([message_id])  # A reaches Meta, which times out...
    send_markers.mark(message_id, stale.attempt)
    _claim_runs_out(message_id)
    [live], _ = outbound_engine.claim([message_id])  # B finds it in doubt, and is killed
    assert live.error is outbound_engine.DELIVERY_UNKNOWN

    timeout = SendFailed("timeout", "Graph API timed out", transient=True)  # ... A records late
    outbound_engine.record([stale], {message_id: outbound_engine.Attempted(error=timeout)})
    _claim_runs_out(message_id)
    outbound_engine.send_batch([message_id])  # attempt 3

    [settled] = _settled([message_id]).values()
    assert sent_with(fake_graph, "token-late-doubt") == []  # A's call may have reached Meta
    assert (settled.status, settled.error_code) == ("failed", "delivery_unknown")


def _status_callback(workspace, message_id, app_secret: str, wamid: str, *statuses: str) -> None:
    """Meta's signed callback of ``statuses`` (in order) for ``wamid``, to the number that
    sent ``message_id``."""
    from shared.channels.signatures import meta_signature
    from shared.models import IntegrationAccount

    with session_scope() as session:
        number = session.scalar(
            select(IntegrationAccount.external_id)
            .join(Conversation, Conversation.integration_account_id == IntegrationAccount.id)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(Message.id == message_id)
        )
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "16505551111", "phone_number_id": number},
        "statuses": [
            {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": "15551234567",
            }
            for status in statuses
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA-1", "changes": [{"field": "messages", "value": value}]}],
    }
    raw = json.dumps(payload).encode()
    resp = workspace.client.simulate_post(
        "/api/webhooks/meta",
        body=raw,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(app_secret, raw),
        },
    )
    assert resp.status_code == 200, resp.text


def _failed_in_doubt_though_meta_took_it(channels, token: str, secret: str):
    """Worker A reaches Meta and is slow; its claim runs out; worker B finds the send in doubt
    and fails it ``delivery_unknown``. (message id, A's claim, the id Meta gave A's call.)"""
    message_id = _unsent(channels, token, app_secret=secret)
    [stale], _ = outbound_engine.claim([message_id])
    send_markers.mark(message_id, stale.attempt)
    _claim_runs_out(message_id)
    [live], _ = outbound_engine.claim([message_id])
    assert live.error is outbound_engine.DELIVERY_UNKNOWN
    outbound_engine.record([live], outbound_engine.send_all([live]))
    assert _messages([message_id])[message_id].status == "failed"
    return message_id, stale, f"wamid.late-{uuid.uuid4().hex}"


def _moves(channels, message_id) -> list[tuple[str, str]]:
    return [
        (e.data["previous_status"], e.data["status"])
        for e in channels.events("message.status_updated")
        if e.data["id"] == str(message_id)
    ]


def _callbacks_processed(channels, count: int) -> None:
    from shared.models import InboundEvent

    def check():
        with session_scope() as session:
            done = session.scalars(
                select(InboundEvent.status).where(InboundEvent.tenant_id == channels.tenant_id)
            ).all()
        return len(done) >= count and all(status == "processed" for status in done)

    wait_until(check, f"{count} callbacks processed")


def _becomes(message_id, status: str) -> Message:
    def check():
        message = _messages([message_id])[message_id]
        return message if message.status == status else None

    return wait_until(check, f"message {message_id} {status}", timeout=10)


def test_a_delivery_receipt_for_a_send_failed_in_doubt_delivers_it(workspace, channels, fake_graph):
    """A's late "sent" is not recorded (the send is settled), but the id Meta gave it is
    kept: Meta's receipt for that id is proof the message reached the customer."""
    secret = uuid.uuid4().hex
    message_id, stale, wamid = _failed_in_doubt_though_meta_took_it(channels, "tok-late-r", secret)

    late = outbound_engine.record(
        [stale], {message_id: outbound_engine.Attempted(provider_id=wamid)}
    )
    assert late[message_id].outcome == "busy"
    _status_callback(workspace, message_id, secret, wamid, "delivered")

    delivered = _becomes(message_id, "delivered")
    assert (delivered.provider_message_id, delivered.error_code) == (wamid, None)
    _status_callback(workspace, message_id, secret, wamid, "read")
    _becomes(message_id, "read")
    assert _moves(channels, message_id)[-2:] == [("failed", "delivered"), ("delivered", "read")]
    assert _claims([message_id])[message_id].status == "failed"  # the send is not re-run
    assert sent_with(fake_graph, "tok-late-r") == []


def test_a_receipt_that_came_before_the_late_record_delivers_it_then(
    workspace, channels, fake_graph
):
    from shared.models.receipts import EarlyStatus

    secret = uuid.uuid4().hex
    message_id, stale, wamid = _failed_in_doubt_though_meta_took_it(channels, "tok-late-p", secret)
    _status_callback(workspace, message_id, secret, wamid, "delivered")  # id unknown: parked

    def parked():
        with session_scope() as session:
            return session.scalar(
                select(EarlyStatus.id).where(EarlyStatus.provider_message_id == wamid)
            )

    wait_until(parked, "the receipt parked")
    outbound_engine.record([stale], {message_id: outbound_engine.Attempted(provider_id=wamid)})

    assert _messages([message_id])[message_id].status == "delivered"


def test_a_failure_meta_reported_is_not_undone_by_a_later_receipt(workspace, channels, fake_graph):
    """Only a failure of ours is undone by a receipt: Meta's own "failed" stays (a later
    "delivered" for that id is a replay), as does one Meta's "sent" arrives after."""
    secret = uuid.uuid4().hex
    message_id = _unsent(channels, "tok-meta-failed", app_secret=secret)
    [claim] = outbound_engine.claim([message_id])[0]
    [result] = outbound_engine.record([claim], outbound_engine.send_all([claim])).values()
    wamid = result.provider_message_id
    _status_callback(workspace, message_id, secret, wamid, "failed")
    _becomes(message_id, "failed")

    _status_callback(workspace, message_id, secret, wamid, "sent", "delivered", "failed")

    _callbacks_processed(channels, 2)
    assert _messages([message_id])[message_id].status == "failed"
    assert _moves(channels, message_id) == [("queued", "sent"), ("sent", "failed")]


def _dead_though_meta_took_it(channels, token: str, secret: str):
    """Attempt 1 reaches Meta and is slow; its claim runs out; attempts 2 and 3 time out,
    so the send is failed and dead-lettered; then attempt 1 learns Meta took it (its id is
    kept, the message flagged). (message id, the dead letter's id, attempt 1's wamid.)"""
    timeout = SendFailed("timeout", "Graph API timed out", transient=True)
    message_id = _unsent(channels, token, app_secret=secret)
    [stale], _ = outbound_engine.claim([message_id])
    for _ in range(2):
        _claim_runs_out(message_id)
        [claim], _ = outbound_engine.claim([message_id])
        outbound_engine.record([claim], {message_id: outbound_engine.Attempted(error=timeout)})
    assert _messages([message_id])[message_id].status == "failed"
    wamid = f"wamid.late-{uuid.uuid4().hex}"
    outbound_engine.record([stale], {message_id: outbound_engine.Attempted(provider_id=wamid)})
    assert _messages([message_id])[message_id].metadata_["accepted_after_failure"] is True
    with session_scope() as session:
        letter = session.scalars(
            select(DeadLetter.id).where(DeadLetter.args.contains([str(message_id)]))
        ).one()
    return message_id, letter, wamid


def test_a_revived_send_is_no_longer_flagged_accepted_after_its_failure(
    workspace, channels, fake_graph
):
    """The flag lets a receipt undo a failure of ours; the revived send's failure is Meta's
    own (reported for its new id), which a replayed "delivered" must not undo."""
    secret = uuid.uuid4().hex
    message_id, letter, _ = _dead_though_meta_took_it(channels, "tok-revived", secret)

    requeue = f"/api/ops/dead-letters/{letter}/requeue"

    refused = workspace.call("POST", requeue)  # the customer almost surely has it

    assert refused.status_code == 409, refused.text
    assert refused.json["error"]["details"][0]["reason"] == "accepted_after_failure"
    resp = workspace.call("POST", requeue, json={"accept_duplicate": True})
    assert resp.status_code == 200, resp.text
    [sent] = _settled([message_id], timeout=30).values()
    assert sent.status == "sent"
    _status_callback(workspace, message_id, secret, sent.provider_message_id, "failed")
    _becomes(message_id, "failed")
    _status_callback(workspace, message_id, secret, sent.provider_message_id, "delivered")
    _callbacks_processed(channels, 2)
    settled = _messages([message_id])[message_id]
    assert settled.status == "failed"
    assert "accepted_after_failure" not in settled.metadata_


def _in_doubt_with_a_dead_job(channels, token: str):
    """A WhatsApp send failed ``delivery_unknown`` (attempt 1 reached Meta, its worker died)
    whose ``send_outbound`` job also died for good in Dramatiq, as a job that crashed
    through its retries (the database down) is dead-lettered by the worker's middleware.
    (message id, that dead letter's id.)"""
    message_id = _unsent(channels, token)
    [first], _ = outbound_engine.claim([message_id])
    send_markers.mark(message_id, first.attempt)  # at Meta when its worker is killed
    _claim_runs_out(message_id)
    [second], _ = outbound_engine.claim([message_id])
    assert second.error is outbound_engine.DELIVERY_UNKNOWN
    outbound_engine.record([second], outbound_engine.send_all([second]))
    return message_id, _job_died_in_dramatiq(channels, message_id)


def _job_died_in_dramatiq(channels, message_id) -> uuid.UUID:
    """The message's ``send_outbound`` job dead for good in Dramatiq, dead-lettered by the
    worker's middleware; that dead letter's id."""
    import dramatiq

    from workers.dead_letters import DeadLetters

    job = dramatiq.Message(
        queue_name="outbound",
        actor_name="send_outbound",
        args=(str(message_id),),
        kwargs={},
        options={"tenant_id": str(channels.tenant_id), "retries": 2},
    )
    DeadLetters().after_nack(None, job)
    with session_scope() as session:
        return session.scalars(
            select(DeadLetter.id).where(DeadLetter.args.contains([str(message_id)]))
        ).one()


def test_requeuing_a_send_in_doubt_is_refused_unless_a_duplicate_is_accepted(
    workspace, channels, fake_graph
):
    """Neither Meta nor SMTP deduplicates: the customer may already have a send in doubt, so
    an operator's requeue says so (409) and sends it again only when told to."""
    message_id, letter = _in_doubt_with_a_dead_job(channels, "tok-doubt-requeue")
    requeue = f"/api/ops/dead-letters/{letter}/requeue"

    _refused_as_a_possible_duplicate(workspace, requeue, "delivery_unknown")
    assert _messages([message_id])[message_id].error_code == "delivery_unknown"
    assert workspace.call("GET", f"/api/ops/dead-letters/{letter}").json["requeued_at"] is None
    for not_a_boolean in ("true", 1, None):
        resp = workspace.call("POST", requeue, json={"accept_duplicate": not_a_boolean})
        assert resp.status_code == 422, (not_a_boolean, resp.text)
    assert workspace.call("POST", requeue, json={"accept_duplicate": False}).status_code == 409
    assert sent_with(fake_graph, "tok-doubt-requeue") == []

    _requeued_anyway(workspace, requeue, message_id)
    assert len(sent_with(fake_graph, "tok-doubt-requeue")) == 1


def _refused_as_a_possible_duplicate(workspace, requeue: str, reason: str) -> None:
    refused = workspace.call("POST", requeue)
    assert refused.status_code == 409, refused.text
    error = refused.json["error"]
    assert error["code"] == "send_not_requeueable"
    assert error["details"][0]["reason"] == reason
    assert "may already have it" in error["message"]
    assert "accept_duplicate" in error["message"]


def _requeued_anyway(workspace, requeue: str, message_id) -> None:
    accepted = workspace.call("POST", requeue, json={"accept_duplicate": True})
    assert accepted.status_code == 200, accepted.text
    wait_until(
        lambda: _messages([message_id])[message_id].status == "sent", "the requeued send", 20
    )


def test_requeuing_a_send_meta_took_but_answered_unreadably_needs_consent_to_a_duplicate(
    workspace, channels, fake_graph
):
    """A 2xx whose answer could not be read: Meta took the message (``bad_response``, failed
    at once, not retried), so the customer may have it, as for a send in doubt."""
    message_id = _unsent(channels, "tok-unread-requeue")
    fake_graph.script(("raw", 200, {"messaging_product": "whatsapp"}))  # no message id
    outbound_engine.send_batch([message_id])
    [failed] = _settled([message_id]).values()
    assert (failed.status, failed.error_code) == ("failed", "bad_response")
    letter = _job_died_in_dramatiq(channels, message_id)
    requeue = f"/api/ops/dead-letters/{letter}/requeue"
    fake_graph.script("ok")

    _refused_as_a_possible_duplicate(workspace, requeue, "bad_response")
    assert len(sent_with(fake_graph, "tok-unread-requeue")) == 1

    _requeued_anyway(workspace, requeue, message_id)
    assert len(sent_with(fake_graph, "tok-unread-requeue")) == 2


def test_a_send_whose_media_upload_was_answered_unreadably_is_requeued_without_consent(
    workspace, channels, fake_graph
):
    """A WhatsApp upload's unreadable answer is ``bad_response`` too, but transient: the
    message itself never reached Meta, so its requeue asks nothing."""
    unreadable_upload = SendFailed("bad_response", "no media id in Meta's answer", transient=True)
    message_id = _unsent(channels, "tok-upload-requeue")
    for _ in range(3):  # the first attempt and OUTBOUND_MAX_RETRIES=2
        _claim_runs_out(message_id)
        [claim], _ = outbound_engine.claim([message_id])
        attempt = outbound_engine.Attempted(error=unreadable_upload)
        outbound_engine.record([claim], {message_id: attempt})
    assert _messages([message_id])[message_id].error_code == "bad_response"
    with session_scope() as session:
        letter = session.scalars(
            select(DeadLetter.id).where(DeadLetter.args.contains([str(message_id)]))
        ).one()

    resp = workspace.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 200, resp.text
    wait_until(
        lambda: _messages([message_id])[message_id].status == "sent", "the requeued send", 20
    )


def test_the_consoles_requeue_of_a_send_in_doubt_offers_to_send_it_anyway(
    workspace, channels, fake_graph
):
    """The console's Re-enqueue refused for a send the customer may have: the page says why
    and offers a second, dangerous button that posts the same action with the consent."""
    from html.parser import HTMLParser

    message_id, letter = _in_doubt_with_a_dead_job(channels, "tok-doubt-console")
    token = os.environ["METRICS_TOKEN"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    login = workspace.client.simulate_post("/ops/login", body=f"token={token}", headers=form)
    cookies = {"ops_session": login.cookies["ops_session"].value}

    def act(body: str):
        return workspace.client.simulate_post(
            "/ops/actions", body=body, headers=form, cookies=cookies
        )

    refused = act(f"action=requeue&id={letter}")

    assert refused.status_code == 409, refused.text
    assert refused.headers["content-security-policy"].startswith("default-src 'none'")
    assert "may already have it" in refused.text
    assert "delivery_unknown" in refused.text
    assert '{"accept_duplicate": true}' not in refused.text  # the API's hint, escaped or not

    class Forms(HTMLParser):
        def __init__(self):
            super().__init__()
            self.forms: list[dict] = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "form":
                self.forms.append({"attrs": attrs, "fields": {}, "buttons": []})
            elif tag == "input" and self.forms:
                self.forms[-1]["fields"][attrs["name"]] = attrs["value"]
            elif tag == "button" and self.forms:
                self.forms[-1]["buttons"].append(attrs)

        def handle_data(self, data):
            if self.lasttag == "button" and self.forms and data.strip():
                self.forms[-1]["label"] = data.strip()

    parser = Forms()
    parser.feed(refused.text)
    [anyway] = [f for f in parser.forms if "accept_duplicate" in f["fields"]]
    assert anyway["attrs"]["action"] == "/ops/actions" and anyway["attrs"]["method"] == "post"
    assert anyway["fields"] == {"action": "requeue", "id": str(letter), "accept_duplicate": "true"}
    assert anyway["buttons"] == [{"class": "danger"}]
    assert "twice" in anyway["label"]
    assert sent_with(fake_graph, "tok-doubt-console") == []

    accepted = act("&".join(f"{k}={v}" for k, v in anyway["fields"].items()))

    assert accepted.status_code == 303, accepted.text
    assert "re-enqueued" in urllib.parse.unquote(accepted.headers["location"])
    wait_until(
        lambda: _messages([message_id])[message_id].status == "sent", "the requeued send", 20
    )
    assert len(sent_with(fake_graph, "tok-doubt-console")) == 1


def test_the_consoles_other_refusals_offer_no_way_around_them(workspace, channels, fake_graph):
    """Only a possible duplicate is the operator's to accept: a send its account can no longer
    make is refused as before, consent or not, with no second button (and without asking
    for a consent first)."""
    message_id, letter = _in_doubt_with_a_dead_job(channels, "tok-doubt-disabled")
    with session_scope() as session:
        account_id = session.scalar(
            select(Conversation.integration_account_id)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(Message.id == message_id)
        )
    resp = workspace.call(
        "PATCH", f"/api/integration-accounts/{account_id}", json={"status": "disabled"}
    )
    assert resp.status_code == 200, resp.text
    token = os.environ["METRICS_TOKEN"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    login = workspace.client.simulate_post("/ops/login", body=f"token={token}", headers=form)
    cookies = {"ops_session": login.cookies["ops_session"].value}

    # Asked first, the operator would consent to a send that cannot happen anyway.
    for consent in ("", "&accept_duplicate=true"):
        refused = workspace.client.simulate_post(
            "/ops/actions",
            body=f"action=requeue&id={letter}{consent}",
            headers=form,
            cookies=cookies,
        )

        assert refused.status_code == 409, refused.text
        assert "cannot be sent" in refused.text
        assert "accept_duplicate" not in refused.text
    assert _messages([message_id])[message_id].error_code == "delivery_unknown"


def test_the_requeue_route_documents_its_consent_to_a_duplicate(workspace):
    doc = workspace.client.simulate_get("/api/openapi.json").json
    requeue = doc["paths"]["/api/ops/dead-letters/{id}/requeue"]["post"]
    schema = requeue["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/DeadLetterRequeue"}
    assert requeue["requestBody"]["required"] is False  # every option has a default
    option = doc["components"]["schemas"]["DeadLetterRequeue"]["properties"]["accept_duplicate"]
    assert option["type"] == "boolean" and option["default"] is False
    for reason in ("delivery_unknown", "bad_response", "accepted_after_failure"):
        assert reason in option["description"]
    assert {"409", "422"} <= set(requeue["responses"])
    assert "accept_duplicate" in requeue["description"]


def test_meta_pair_rate_limit_holds_back_that_recipient_only(
    workspace, channels, fake_graph, per_account
):
    per_account(1)  # one at a time: the throttling answer goes to the first send
    account_id = channels.account("whatsapp", credentials={"access_token": "token-pair"})
    first, second = (
        channels.conversation(
            channels.contact(channel="whatsapp"), integration_account_id=account_id
        )
        for _ in range(2)
    )
    fake_graph.script(("throttle", "131056", 3), "ok")

    ids = _commit_together(channels, [first, second], each=2)
    [refused] = wait_until(lambda: sent_with(fake_graph, "token-pair")[:1], "the refused send")
    held_back = refused.json["to"]  # that recipient (pair) only

    settled = _settled(ids, timeout=30)
    assert {m.status for m in settled.values()} == {"sent"}
    requests = sent_with(fake_graph, "token-pair")[1:]
    assert len(requests) == 4  # each message once after the refusal
    others = [r for r in requests if r.json["to"] != held_back]
    held = [r for r in requests if r.json["to"] == held_back]
    assert len(others) == 2 and len(held) == 2
    assert max(r.at for r in others) - refused.at < 2  # the number kept sending to others
    assert min(r.at for r in held) - refused.at >= 2.9  # that pair waited Meta's Retry-After
    claims = _claims(ids)
    assert sorted((c.attempts, c.last_error_code) for c in claims.values()) == [
        (1, None),  # held back by the pair's hold: no attempt
        (1, None),
        (1, None),
        (2, "131056"),
    ]


def test_a_pair_hold_reaches_the_other_processes_for_that_pair_only():
    account, held, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    outbound_limits.AccountLimits(1).pause(account, 5.0, held)  # one worker process

    elsewhere = outbound_limits.AccountLimits(1)  # another one, at its next batch
    elsewhere.load_pauses([(account, held), (account, other)])

    assert 4.0 < elsewhere.pause_left(account, held) <= 5.0
    assert elsewhere.pause_left(account, other) == 0.0
    assert elsewhere.pause_left(account) == 0.0
    assert "131056" not in THROTTLED  # nor does it slow a campaign down


def test_a_send_whose_reads_use_up_its_claims_room_is_put_back_not_sent(
    workspace, channels, smtp_peers, monkeypatch
):
    from shared.channels import transports
    from tests.channels_outbound.test_send_email import _mailbox

    peer = smtp_peers["none"]
    conversation = _mailbox(channels, peer)
    outbound_queue.set_enqueuer(None)
    try:
        [message_id] = _commit_together(channels, [conversation], each=1)
        wait_until(lambda: _claims([message_id]), "the send row")
    finally:
        outbound_queue.set_enqueuer(enqueue_sends)
    [item], _ = outbound_engine.claim([message_id])
    item.deadline = time.monotonic() + 0.3  # the claim's room is nearly used up...
    thread_ids = transports._thread_ids

    def slow_read(session, message):  # ... and the send's reads wait past it (a pool wait)
        time.sleep(0.6)
        return thread_ids(session, message)

    monkeypatch.setattr(transports, "_thread_ids", slow_read)
    attempted = outbound_engine.send_all([item])

    assert peer.received == []  # the relay call would have run past the room it was given
    assert attempted[message_id] == outbound_engine.Attempted(deferred=0.0)
    [result] = outbound_engine.record([item], attempted).values()
    assert result.outcome == "retry"
    assert _claims([message_id])[message_id].attempts == 0  # put back: no attempt
    assert get_redis().get(send_markers._key(message_id)) is None  # no provider call: no doubt
