"""A Meta status that arrives before the send's commit stored the wamid is kept, then applied."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, text

from scheduler import jobs
from shared.channels import early_statuses
from shared.config import get_settings
from shared.db import session_scope
from shared.models import InboundEvent, Message
from shared.models.receipts import EarlyStatus
from tests.channels_outbound.conftest import wait_for_status
from tests.waiting import wait_until


def _parked(tenant_id, wamid=None) -> int:
    query = select(func.count()).select_from(EarlyStatus).where(EarlyStatus.tenant_id == tenant_id)
    if wamid is not None:
        query = query.where(EarlyStatus.provider_message_id == wamid)
    with session_scope() as session:
        return session.scalar(query)


def _processed_counts(tenant_id) -> list[dict]:
    with session_scope() as session:
        rows = session.scalars(
            select(InboundEvent).where(
                InboundEvent.tenant_id == tenant_id, InboundEvent.status == "processed"
            )
        ).all()
        return [r.result["counts"] for r in rows]


def _open_window(gaps, sender="15551234567"):
    account = gaps.meta_account("whatsapp")
    gaps.inbound_text(account, f"wamid.IN-{sender}", sender)
    return account, gaps.conversation_of(f"wamid.IN-{sender}")


def _send(workspace, conversation_id, body="Your order shipped"):
    resp = workspace.call(
        "POST", f"/api/conversations/{conversation_id}/messages", json={"body": body}
    )
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def test_statuses_before_the_send_commits_are_applied_in_rank_order(workspace, gaps, fake_graph):
    account, conversation_id = _open_window(gaps)
    fake_graph.next_wamids.append("wamid.EARLY1")
    # Meta reports out of order, and retries a callback: read, delivered, delivered.
    for status in ("read", "delivered", "delivered"):
        gaps.status(account, "wamid.EARLY1", status)
    wait_until(
        lambda: sum(c.get("status_deferred", 0) for c in _processed_counts(gaps.tenant_id)) == 2,
        "both statuses deferred",
    )
    assert _parked(gaps.tenant_id) == 2

    message_id = _send(workspace, conversation_id)

    message = wait_for_status(workspace, conversation_id, message_id, "read")
    assert message["provider_message_id"] == "wamid.EARLY1"
    updates = [e.data for e in gaps.events("message.status_updated") if e.data["id"] == message_id]
    assert sorted((u["previous_status"], u["status"]) for u in updates) == [
        ("delivered", "read"),
        ("queued", "sent"),
        ("sent", "delivered"),
    ]
    assert _parked(gaps.tenant_id) == 0


def test_an_early_failure_fails_the_message_with_metas_code(workspace, gaps, fake_graph):
    account, conversation_id = _open_window(gaps, "15552223333")
    fake_graph.next_wamids.append("wamid.EARLYFAIL")
    gaps.status(
        account,
        "wamid.EARLYFAIL",
        "failed",
        errors=[{"code": 131026, "title": "Message undeliverable"}],
    )
    wait_until(lambda: _parked(gaps.tenant_id) == 1, "the failure kept")

    message_id = _send(workspace, conversation_id)

    message = wait_for_status(workspace, conversation_id, message_id, "failed")
    assert message["error_code"] == "131026"
    assert _parked(gaps.tenant_id) == 0


def test_a_status_of_a_known_message_is_applied_at_once(workspace, gaps, fake_graph):
    account, conversation_id = _open_window(gaps, "15554445555")
    message_id = _send(workspace, conversation_id)
    sent = wait_for_status(workspace, conversation_id, message_id, "sent")

    gaps.status(account, sent["provider_message_id"], "delivered")

    wait_for_status(workspace, conversation_id, message_id, "delivered")
    assert _parked(gaps.tenant_id) == 0


def test_the_sweeper_applies_statuses_of_known_messages_and_drops_expired_ones(
    workspace, gaps, fake_graph
):
    account, conversation_id = _open_window(gaps, "15556667777")
    gaps.status(account, "wamid.NEVERSENT", "delivered")
    wait_until(lambda: _parked(gaps.tenant_id, "wamid.NEVERSENT") == 1, "the stray status kept")
    # A status kept while its message was stored by a path that did not apply it.
    with session_scope() as session:
        session.add(
            EarlyStatus(
                tenant_id=gaps.tenant_id,
                provider_message_id="wamid.STORED",
                status="delivered",
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
            )
        )
    stored = gaps.message(
        {"id": conversation_id, "channel": "whatsapp"},
        "sent elsewhere",
        direction="outbound",
        sender_type="user",
        status="sent",
        provider_message_id="wamid.STORED",
    )

    with session_scope() as session:
        assert jobs.sweep_early_statuses(session) == {"applied": 1, "expired": 0}
    assert gaps.row(Message, stored).status == "delivered"
    assert _parked(gaps.tenant_id, "wamid.NEVERSENT") == 1  # still inside its wait

    later = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=get_settings().early_status_ttl_seconds + 1
    )
    with session_scope() as session:
        result = early_statuses.sweep(session, now=later)
    assert result.expired >= 1
    assert _parked(gaps.tenant_id) == 0


def test_a_status_racing_the_send_commit_waits_for_it_and_applies(workspace, gaps, fake_graph):
    """The send holds the wamid's lock while its commit is held up; the status waits for it."""
    account, conversation_id = _open_window(gaps, "15558889999")
    fake_graph.next_wamids.append("wamid.RACE1")
    fake_graph.script(("sleep", 0.5))  # Meta answers late: time to hold the send's commit
    message_id = _send(workspace, conversation_id)
    with session_scope() as blocker:
        # Holding the message's row keeps the send between "Meta answered" and its commit
        # (NO KEY UPDATE: the send's claim row may still reference the message).
        blocker.scalars(
            select(Message).where(Message.id == message_id).with_for_update(key_share=True)
        ).one()
        wait_until(lambda: _waiters("transactionid", "tuple") >= 1, "the send waiting to commit")
        gaps.status(account, "wamid.RACE1", "delivered")
        wait_until(
            lambda: _waiters("advisory") >= 1,
            "the status callback waiting on the send's lock",
        )
    message = wait_for_status(workspace, conversation_id, message_id, "delivered")

    assert message["provider_message_id"] == "wamid.RACE1"
    assert _parked(gaps.tenant_id) == 0  # it never had to wait in the table
    assert wait_until(
        lambda: any(c.get("status_updated") for c in _processed_counts(gaps.tenant_id)),
        "the callback applied",
    )


def _waiters(*lock_types: str) -> int:
    """Sessions of this run's database waiting for a lock of one of ``lock_types``."""
    with session_scope() as session:
        return session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = ANY(:types)"
            ),
            {"types": list(lock_types)},
        )
