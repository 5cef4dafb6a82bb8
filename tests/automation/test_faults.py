"""A worker SIGKILLed mid-evaluation: nothing half-applied, the sweeper finishes it, once.

A real ``dramatiq workers.main`` subprocess on a Redis namespace of its own (the
suite's in-process worker never sees these messages); this process's outbox
publisher and automation enqueuer point at that namespace for the test. The test
holds a lock on the conversation so the worker is caught inside its evaluation
transaction (claimed, facts built, waiting to apply) when it is killed.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, update

from scheduler.jobs import sweep_automation_events
from shared import events
from shared.automation import queue
from shared.db import session_scope
from shared.events import Actor, emit
from shared.models import AutomationEvent, Conversation
from tests.automation.conftest import (
    add_conversation,
    conversation,
    create_rule,
    queue_rows,
    runs,
    waiting_on_a_lock,
)
from tests.waiting import wait_until
from tests.webhooks.faults_support import (
    delete_namespace,
    enqueuers,
    namespace_of_test,
    private_broker,
    start_worker,
)


@pytest.fixture
def routed(monkeypatch, broker):
    """Send this process's outbox events and evaluations to a private namespace."""

    def route(namespace: str):
        from workers.actors.automation import evaluate_rules

        private = private_broker(namespace)
        _, publish = enqueuers(private)

        def enqueue(ids) -> None:
            for event_id in ids:
                private.enqueue(evaluate_rules.message_with_options(args=(str(event_id),)))

        monkeypatch.setattr(events, "_publisher", publish)
        monkeypatch.setattr(queue.QUEUE, "enqueuer", enqueue)
        return private

    return route


def test_a_worker_killed_mid_evaluation_does_not_double_apply(workspace, routed):
    namespace = namespace_of_test()
    routed(namespace)
    create_rule(workspace)
    conv_id = add_conversation(workspace)
    procs = []
    try:
        with session_scope() as blocker:
            # Hold the conversation: the worker's evaluation waits for this lock.
            blocker.execute(
                select(Conversation.id)
                .where(Conversation.id == uuid.UUID(conv_id))
                .with_for_update()
            )
            first = start_worker(namespace=namespace)
            procs.append(first)
            with session_scope() as session:
                emit(
                    session,
                    "message.created",
                    {"conversation_id": conv_id, "body": "refund", "direction": "inbound"},
                    tenant_id=uuid.UUID(workspace.tenant["id"]),
                    actor=Actor("contact"),
                )
            wait_until(
                lambda: [r for r in queue_rows(workspace) if r.status == "processing"],
                "the worker claims the event",
                30,
                details=first.log,
            )
            wait_until(
                waiting_on_a_lock,
                "the evaluation waits for the conversation",
                30,
                details=first.log,
            )
            first.kill()  # SIGKILL mid-transaction: Postgres rolls it back
            blocker.rollback()
        [row] = queue_rows(workspace)
        assert row.status == "processing" and row.attempts == 1
        assert runs(workspace) == [] and conversation(conv_id).tags == []

        with session_scope() as session:
            session.execute(
                update(AutomationEvent)
                .where(AutomationEvent.id == row.id)
                .values(sweep_at=func.now() - dt.timedelta(seconds=1))
            )
        with session_scope() as session:
            # NOTE: at least: the count covers every tenant of the shared test database.
            assert sweep_automation_events(session) >= 1
        second = start_worker(namespace=namespace)
        procs.append(second)
        wait_until(
            lambda: queue_rows(workspace)[0].status == "done",
            "the swept event evaluated",
            30,
            details=second.log,
        )
        assert conversation(conv_id).tags == ["refund"]
        [run] = runs(workspace)
        assert run.status == "matched" and queue_rows(workspace)[0].attempts == 2
    finally:
        for proc in procs:
            proc.close()
        from shared.config import get_settings

        delete_namespace(namespace, get_settings().redis_url)
