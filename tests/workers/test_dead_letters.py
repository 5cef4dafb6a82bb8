"""Dead letters: the Postgres row, its idempotency, and the middleware's failure handling."""

from __future__ import annotations

import logging
import uuid

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.message import Message
from sqlalchemy import select, update

from shared import worker_metrics as wm
from shared.config import get_settings
from shared.db import session_scope
from shared.dead_letters import (
    NUL_ESCAPED_OPTION,
    count_dead_letters,
    list_dead_letters,
    record_dead_letter,
)
from shared.models import DeadLetter
from tests.waiting import wait_until
from workers.dead_letters import DeadLetters
from workers.main import broker as _broker  # noqa: F401  (the global broker the actors bind to)

NUL_QUEUE = "test_dead_letters_nul"


@dramatiq.actor(queue_name=NUL_QUEUE, max_retries=0)
def dead_letters_test_fails_with_nul(raw: str, note: dict | None = None) -> None:
    raise ValueError(f"cannot parse {raw}")


def _record(session, message_id: str, **overrides) -> bool:
    values = {
        "message_id": message_id,
        "queue_name": "q",
        "actor_name": "job",
        "args": [1],
        "kwargs": {"a": 2},
        "options": {"traceback": "long", "max_retries": 3},
        "retries": 3,
        "error": "RuntimeError: first",
    }
    values.update(overrides)
    return record_dead_letter(session, **values)


def _row(message_id: str) -> DeadLetter | None:
    with session_scope() as session:
        return session.scalars(
            select(DeadLetter).where(DeadLetter.message_id == message_id)
        ).one_or_none()


def test_recording_twice_keeps_one_row_until_it_is_requeued(tenant):
    message_id = str(uuid.uuid4())
    with session_scope() as session:
        assert _record(session, message_id, options={"tenant_id": str(tenant), "traceback": "x"})
    with session_scope() as session:
        assert not _record(session, message_id, error="RuntimeError: duplicate delivery")
    row = _row(message_id)
    assert (row.error, row.tenant_id, row.options) == (
        "RuntimeError: first",
        tenant,
        {"tenant_id": str(tenant)},
    )
    assert (row.args, row.kwargs) == ([1], {"a": 2})

    with session_scope() as session:  # an operator requeued it, and it died again
        session.execute(
            update(DeadLetter).where(DeadLetter.id == row.id).values(requeued_at=row.failed_at)
        )
    with session_scope() as session:
        assert _record(session, message_id, error="RuntimeError: again", retries=5)
    row = _row(message_id)
    assert (row.error, row.retries, row.requeued_at) == ("RuntimeError: again", 5, None)


def test_long_errors_keep_their_tail():
    message_id = str(uuid.uuid4())
    with session_scope() as session:
        _record(session, message_id, error="x" * 20_000 + "ValueError: the end")
    error = _row(message_id).error
    assert error.endswith("ValueError: the end") and len(error) < 16_100


def test_list_and_count_filter_by_tenant_and_page_by_keyset(tenant):
    other = uuid.uuid4()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with session_scope() as session:
        for message_id in ids:
            _record(session, message_id, tenant_id=tenant)
        _record(session, str(uuid.uuid4()), tenant_id=other)
    with session_scope() as session:
        assert count_dead_letters(session, tenant_id=tenant) == 3
        assert count_dead_letters(session, tenant_id=other) == 1
        assert count_dead_letters(session) >= 4
        first = list_dead_letters(session, tenant_id=tenant, limit=2)
        last = first[-1]
        rest = list_dead_letters(session, tenant_id=tenant, before=(last.failed_at, last.id))
        assert len(first) == 2 and len(rest) == 1
        assert {row.message_id for row in first + rest} == set(ids)

        requeue = update(DeadLetter).where(DeadLetter.message_id == ids[0])
        session.execute(requeue.values(requeued_at=last.failed_at))
        assert count_dead_letters(session, tenant_id=tenant) == 2
        assert count_dead_letters(session, tenant_id=tenant, include_requeued=True) == 3
        assert len(list_dead_letters(session, tenant_id=tenant, include_requeued=True)) == 3


def test_database_failure_is_logged_never_raised(broker, monkeypatch, caplog):
    def broken_session_scope():
        raise ConnectionError("postgres is down")

    monkeypatch.setattr("workers.dead_letters.session_scope", broken_session_scope)
    message = Message(queue_name="q", actor_name="job", args=(), kwargs={}, options={})
    proxy = MessageProxy(message)
    proxy.fail()
    with caplog.at_level(logging.CRITICAL, logger="workers.dead_letters"):
        DeadLetters().after_nack(broker, proxy)
    [record] = [r for r in caplog.records if r.name == "workers.dead_letters"]
    assert record.levelno == logging.CRITICAL and message.message_id in record.getMessage()
    assert "q.XQ" in record.getMessage()


@pytest.mark.broker
def test_message_for_an_unknown_actor_is_dead_lettered(broker, worker, redis_client, namespace):
    queue = "test_unknown_actor"
    broker.declare_queue(queue)  # the running worker starts consuming it
    actor = f"no_such_actor_{uuid.uuid4().hex[:8]}"
    message = Message(queue_name=queue, actor_name=actor, args=(1,), kwargs={}, options={})
    broker.enqueue(message)
    broker.join(queue, timeout=10_000)

    row = wait_until(lambda: _row(message.message_id))
    assert (row.actor_name, row.queue_name, row.retries) == (actor, queue, 0)
    assert "ActorNotFound" in row.error

    def dead_lettered():
        totals = wm.snapshot(redis_client, namespace, minutes=5)["actors"].get(actor)
        return totals and totals["totals"]["dead_lettered"] == 1 and totals["totals"]

    totals = wait_until(dead_lettered)
    assert (totals["enqueued"], totals["failed"], totals["processed"]) == (1, 0, 0)


@pytest.mark.broker
def test_a_failure_naming_a_nul_character_is_still_dead_lettered(broker, worker):
    """PostgreSQL text and jsonb refuse NUL: the row must keep it escaped, not be lost."""
    message = dead_letters_test_fails_with_nul.send("a\x00b", note={"k\x00": "\x00"})
    broker.join(NUL_QUEUE, timeout=10_000)

    row = wait_until(lambda: _row(message.message_id))
    assert "cannot parse a\\x00b" in row.error
    assert row.args == ["a\\x00b"]
    assert row.kwargs == {"note": {"k\\x00": "\\x00"}}
    assert row.options[NUL_ESCAPED_OPTION] is True


def test_a_dead_letter_whose_arguments_were_escaped_is_not_requeued(client):
    """Its stored arguments are not the message's: sent again they would be another job."""
    message_id = str(uuid.uuid4())
    with session_scope() as session:
        assert _record(session, message_id, args=["a\x00b"])
    row = _row(message_id)
    operator = {"Authorization": f"Bearer {get_settings().metrics_token}"}

    resp = client.simulate_post(f"/api/ops/dead-letters/{row.id}/requeue", headers=operator)

    assert resp.status_code == 409, resp.text
    assert _row(message_id).requeued_at is None


@pytest.mark.broker
def test_a_dead_retries_exhausted_handler_keeps_the_tenant_of_the_message_it_handled(
    broker, worker, tenant, monkeypatch
):
    """Dramatiq sends ``on_retry_exhausted`` handlers without options: the dead letter of
    one takes the tenant of the message it was handling, so that tenant's console lists it."""
    from workers import queues
    from workers.actors.wa_templates import mark_wa_template_sync_failed, sync_wa_templates

    monkeypatch.setitem(mark_wa_template_sync_failed.options, "max_retries", 0)
    given_up = sync_wa_templates.message_with_options(
        args=("not-an-account-id",), tenant_id=str(tenant)
    )
    message = mark_wa_template_sync_failed.send(given_up.asdict(), {"retries": 5})
    broker.join(queues.MAINTENANCE, timeout=10_000)

    row = wait_until(lambda: _row(message.message_id))
    assert "badly formed" in row.error
    assert row.tenant_id == tenant


def test_dead_letter_times_are_rfc3339_with_z(client):
    """API.md: every timestamp is RFC 3339 in UTC with ``Z`` (they said ``+00:00``)."""
    message_id = str(uuid.uuid4())
    with session_scope() as session:
        assert _record(session, message_id)
    row = _row(message_id)
    operator = {"Authorization": f"Bearer {get_settings().metrics_token}"}

    requeued = client.simulate_post(f"/api/ops/dead-letters/{row.id}/requeue", headers=operator)
    one = client.simulate_get(f"/api/ops/dead-letters/{row.id}", headers=operator)
    with session_scope() as session:
        session.execute(update(DeadLetter).where(DeadLetter.id == row.id).values(requeued_at=None))
    metrics = client.simulate_get("/api/automation/worker-metrics", headers=operator)

    assert requeued.status_code == 200, requeued.text
    assert one.json["failed_at"].endswith("Z") and one.json["requeued_at"].endswith("Z")
    assert requeued.json["requeued_at"].endswith("Z")
    latest = {d["id"]: d for d in metrics.json["dead_letters"]["latest"]}
    assert latest[str(row.id)]["failed_at"].endswith("Z")
