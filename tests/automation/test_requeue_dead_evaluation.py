"""An operator's requeue of an ``evaluate_rules`` dead letter: its rows, failed since by
their own attempts (the sweeper re-drove them), are evaluated again and their rules act."""

from __future__ import annotations

from sqlalchemy import select, update

from shared.automation import evaluator
from shared.config import get_settings
from shared.db import session_scope
from shared.models import DeadLetter, Tenant
from tests.automation.conftest import (
    add_conversation,
    conversation,
    create_rule,
    queue_rows,
    send_message,
    tid,
    wait_settled,
)
from tests.waiting import wait_until
from workers.actors.automation import evaluate_rules

OPERATOR = {"Authorization": f"Bearer {get_settings().metrics_token}"}


def _dead_letter_of(event_id) -> DeadLetter | None:
    with session_scope() as session:
        for row in session.scalars(
            select(DeadLetter).where(DeadLetter.actor_name == "evaluate_rules")
        ):
            ids = row.args[0] if isinstance(row.args[0], list) else row.args
            if str(event_id) in ids:
                return row
    return None


def _set_timezone(ws, timezone: str) -> None:
    with session_scope() as session:
        session.execute(update(Tenant).where(Tenant.id == tid(ws)).values(timezone=timezone))


def test_requeuing_a_dead_evaluation_evaluates_its_failed_rows(ws, override, monkeypatch, client):
    override(automation_max_attempts=2)
    monkeypatch.setitem(evaluate_rules.options, "max_retries", 0)
    create_rule(ws)
    _set_timezone(ws, "Mars/Base")  # every evaluation of the tenant fails
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    row = wait_until(lambda: (rows := queue_rows(ws)) and rows[0], "the queue row")
    letter = wait_until(lambda: _dead_letter_of(row.id), "the evaluation's dead letter")
    assert queue_rows(ws)[0].status == "pending"  # one attempt of two: the sweeper's
    evaluator.evaluate_events([row.id])  # what the sweeper's re-drive runs: the last attempt
    [row] = wait_settled(ws)
    assert row.status == "failed" and conversation(conv_id).tags == []
    _set_timezone(ws, "Europe/Berlin")  # the operator fixed the cause

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter.id}/requeue", headers=OPERATOR)

    assert resp.status_code == 200, resp.text
    wait_until(lambda: queue_rows(ws)[0].status == "done", "the requeued row done")
    assert conversation(conv_id).tags == ["refund"]
