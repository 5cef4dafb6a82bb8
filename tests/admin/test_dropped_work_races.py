"""A suspended tenant's work dropped by two copies at once is still recorded once.

Two copies of one piece of work (a message and a sweeper's or a redelivery's copy, two
``deliver_webhooks`` batches naming the same row) may be dropped by two worker threads at
the same moment; each checks for the dead letter before it writes its own.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.admin import dropped_work
from shared.db import get_sessionmaker, session_scope
from shared.models import DeadLetter
from tests.lock_races import race

ACTOR, QUEUE = "process_inbound", "inbound"


def _drop(session, tenant_id: uuid.UUID, args: list) -> bool:
    return dropped_work.record(
        session, tenant_id=tenant_id, queue_name=QUEUE, actor_name=ACTOR, args=args
    )


def _letters(tenant_id: uuid.UUID, args: list) -> int:
    with session_scope() as session:
        return len(
            session.scalars(
                select(DeadLetter.id).where(
                    DeadLetter.tenant_id == tenant_id,
                    DeadLetter.actor_name == ACTOR,
                    DeadLetter.args == args,
                )
            ).all()
        )


def _drop_alone(tenant_id: uuid.UUID, args: list) -> bool:
    with session_scope() as session:
        return _drop(session, tenant_id, args)


def test_two_copies_dropped_at_once_leave_one_dead_letter(workspace):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    args = [str(uuid.uuid4())]
    holder = get_sessionmaker()()
    assert _drop(holder, tenant_id, args)  # the first copy's record, not committed yet

    second = race(holder, lambda: _drop_alone(tenant_id, args))

    assert second is False
    assert _letters(tenant_id, args) == 1


def test_other_work_of_the_tenant_is_not_held_back(workspace):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    first, other = [str(uuid.uuid4())], [str(uuid.uuid4())]
    holder = get_sessionmaker()()
    assert _drop(holder, tenant_id, first)

    assert race(holder, lambda: _drop_alone(tenant_id, other)) is True
    assert _letters(tenant_id, first) == 1
    assert _letters(tenant_id, other) == 1
