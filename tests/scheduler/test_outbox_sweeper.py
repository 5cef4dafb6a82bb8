"""sweep(): due rows only, backoff that grows with sweep_count, SKIP LOCKED between sweepers.

Time moves by UPDATE, never by sleeping. Rows of these tests are due in 2001, so
``ORDER BY next_sweep_at`` puts them before any other test's pending rows and a
batch the size of ours never touches theirs.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import event, func, insert, select, text, update

from shared import events
from shared.config import get_settings
from shared.db import get_sessionmaker, session_scope
from shared.events import PendingEvent
from shared.models import OutboxEvent
from shared.outbox_sweeper import MAX_BACKOFF_SECONDS, sweep

LONG_AGO = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)


class Recorder:
    """A publisher that keeps this test's events and passes anyone else's to the real one."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id
        self.published: list[PendingEvent] = []

    def __call__(self, pending: Sequence[PendingEvent]) -> None:
        self.published += [e for e in pending if e.tenant_id == self.tenant_id]
        events.publish([e for e in pending if e.tenant_id != self.tenant_id])

    @property
    def ids(self) -> list[uuid.UUID]:
        return [e.id for e in self.published]


def add_events(tenant_id, count, *, next_sweep_at, status="pending") -> list[uuid.UUID]:
    """Insert outbox rows directly (no after-commit publish), one millisecond apart."""
    ids = [uuid.uuid4() for _ in range(count)]
    rows = [
        {
            "id": event_id,
            "tenant_id": tenant_id,
            "type": "agent.created",
            "actor_type": "system",
            "data": {},
            "status": status,
            "next_sweep_at": next_sweep_at + dt.timedelta(milliseconds=i),
        }
        for i, event_id in enumerate(ids)
    ]
    with session_scope() as session:
        session.execute(insert(OutboxEvent), rows)
    return ids


def rows(ids) -> dict[uuid.UUID, OutboxEvent]:
    with session_scope() as session:
        found = session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        return {row.id: row for row in found}


def test_sweeps_due_pending_rows_and_leaves_the_rest(tenant_id):
    due = add_events(tenant_id, 2, next_sweep_at=LONG_AGO)
    future = add_events(tenant_id, 1, next_sweep_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    done = add_events(tenant_id, 1, next_sweep_at=LONG_AGO, status="processed")
    failed = add_events(tenant_id, 1, next_sweep_at=LONG_AGO, status="failed")
    recorder = Recorder(tenant_id)

    with session_scope() as session:
        swept = sweep(session, batch=1000, publish=recorder)

    assert sorted(recorder.ids) == sorted(due)
    assert swept >= len(due)
    after = rows(due + future + done + failed)
    with session_scope() as session:
        db_now = session.scalar(select(func.now()))
    for event_id in due:
        assert after[event_id].sweep_count == 1
        assert after[event_id].next_sweep_at > db_now - dt.timedelta(seconds=1)
    for event_id in future + done + failed:
        assert after[event_id].sweep_count == 0


def test_nothing_due_publishes_nothing(tenant_id):
    add_events(tenant_id, 1, next_sweep_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    recorder = Recorder(tenant_id)
    with session_scope() as session:
        sweep(session, batch=1000, publish=recorder)
    assert recorder.published == []


def test_batch_takes_the_longest_overdue_first(tenant_id):
    ids = add_events(tenant_id, 5, next_sweep_at=LONG_AGO)
    recorder = Recorder(tenant_id)
    with session_scope() as session:
        assert sweep(session, batch=3, publish=recorder) == 3
    assert sorted(recorder.ids) == sorted(ids[:3])


def _db_clock() -> dt.datetime:
    with session_scope() as session:
        return session.execute(select(func.clock_timestamp())).scalar_one()


def _delay_after_sweep(event_id) -> tuple[int, float, float]:
    """Make the row due, sweep it alone; return (sweep_count, shortest, longest delay).

    The sweep sets ``next_sweep_at`` from its own ``now()``, which lies between the
    database clock read before it and after it: the delay it chose lies between
    ``next_sweep_at`` minus those two readings, however slow the machine.
    """
    with session_scope() as session:
        session.execute(
            update(OutboxEvent).where(OutboxEvent.id == event_id).values(next_sweep_at=LONG_AGO)
        )
    before = _db_clock()
    with session_scope() as session:
        assert sweep(session, batch=1, publish=lambda pending: None) == 1
    after = _db_clock()
    with session_scope() as session:
        count, next_sweep_at = session.execute(
            select(OutboxEvent.sweep_count, OutboxEvent.next_sweep_at).where(
                OutboxEvent.id == event_id
            )
        ).one()
    return count, (next_sweep_at - after).total_seconds(), (next_sweep_at - before).total_seconds()


def test_backoff_doubles_with_sweep_count_up_to_the_cap(tenant_id):
    after = get_settings().outbox_sweep_after_seconds
    [event_id] = add_events(tenant_id, 1, next_sweep_at=LONG_AGO)

    for previous in range(4):
        count, shortest, longest = _delay_after_sweep(event_id)
        expected = min(after * 2**previous, MAX_BACKOFF_SECONDS)
        assert count == previous + 1
        assert shortest - 0.001 <= expected <= longest + 0.001, (previous, shortest, longest)

    for swept_before in (20, 100_000):  # capped, and no float overflow in power()
        with session_scope() as session:
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == event_id)
                .values(sweep_count=swept_before)
            )
        count, shortest, longest = _delay_after_sweep(event_id)
        assert count == swept_before + 1
        assert shortest - 0.001 <= MAX_BACKOFF_SECONDS <= longest + 0.001


def test_concurrent_sweepers_split_rows_without_overlap(tenant_id):
    """While sweeper A holds its rows (paused just before commit), B skips them."""
    ids = add_events(tenant_id, 10, next_sweep_at=LONG_AGO)
    a_holds_rows, b_finished = threading.Event(), threading.Event()
    recorder_a, recorder_b = Recorder(tenant_id), Recorder(tenant_id)
    errors: list[BaseException] = []

    def sweeper_a() -> None:
        session = get_sessionmaker()()

        @event.listens_for(session, "before_commit", once=True)
        def pause(_session):
            a_holds_rows.set()
            b_finished.wait(10)

        try:
            sweep(session, batch=5, publish=recorder_a)
        except BaseException as exc:
            errors.append(exc)
        finally:
            a_holds_rows.set()
            session.close()

    thread = threading.Thread(target=sweeper_a)
    thread.start()
    try:
        assert a_holds_rows.wait(10)
        started = time.monotonic()
        with session_scope() as session:
            # Fail rather than hang if B ever waited on A's row locks.
            session.execute(text("SET LOCAL lock_timeout = '3s'"))
            swept_b = sweep(session, batch=5, publish=recorder_b)
        b_seconds = time.monotonic() - started
    finally:
        b_finished.set()
        thread.join(10)
    assert not errors

    assert swept_b == 5
    assert b_seconds < 1.0
    assert set(recorder_a.ids) == set(ids[:5])
    assert set(recorder_b.ids) == set(ids[5:])
    assert all(row.sweep_count == 1 for row in rows(ids).values())


@pytest.mark.parametrize("batch", [None, 1])
def test_batch_defaults_to_the_setting(tenant_id, batch, monkeypatch):
    """``batch=None`` means OUTBOX_SWEEP_BATCH (checked with a tiny stand-in setting)."""
    settings = get_settings().model_copy(update={"outbox_sweep_batch": 2})
    monkeypatch.setattr("shared.outbox_sweeper.get_settings", lambda: settings)
    ids = add_events(tenant_id, 3, next_sweep_at=LONG_AGO)
    recorder = Recorder(tenant_id)
    with session_scope() as session:
        sweep(session, batch=batch, publish=recorder)
    assert sorted(recorder.ids) == sorted(ids[: batch or 2])
