"""Races against a transaction that holds its locks: helpers for the deletion and lock-order tests.

A test takes locks in ``holder`` (a deletion, an import's first step, a row FOR UPDATE),
starts the racing call in a thread, waits until that call waits on a lock (or has
already answered), then lets ``holder`` finish and commit: the order in which the two
transactions meet is the one the test means, not the scheduler's.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shared.db import get_sessionmaker, session_scope
from shared.models import ConversationSla
from shared.timekeeping import sla
from tests.channels_api.conftest import ApiChannel


def blocked_on_a_lock() -> int:
    """How many sessions of this test's database wait on a lock right now."""
    with session_scope() as session:
        return session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def race(holder: Session, call: Callable[[], Any], then: Callable[[], Any] = lambda: None) -> Any:
    """``call()`` in a thread while ``holder`` keeps its locks; once it waits on one (or has
    answered, within 10 s), ``then()`` runs and ``holder`` commits; ``call()``'s value.

    ``holder`` is closed either way. ``call`` should not raise (catch what the test reports).
    """
    answered: list = []
    thread = threading.Thread(target=lambda: answered.append(call()))
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while not answered and blocked_on_a_lock() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        then()
        holder.commit()
    finally:
        holder.close()
    thread.join(timeout=30)
    return answered[0] if answered else None


class SlaCheckHolding:
    """``check_sla`` pulled apart at its two halves, to race a change against it.

    On creation ``holder`` has claimed the conversation's SLA clock (FOR UPDATE), as the
    check does first; ``breach()`` is its second half: the claimed clock's breach row is
    inserted (FOR KEY SHARE on the rows it references), for
    ``race(check.holder, call, then=check.breach)``. A database error there (a deadlock)
    lands in ``failures`` and rolls ``holder`` back.
    """

    def __init__(self, conversation_id: str | uuid.UUID) -> None:
        self.holder = get_sessionmaker()()
        clock = self.holder.scalar(
            select(ConversationSla)
            .where(ConversationSla.conversation_id == uuid.UUID(str(conversation_id)))
            .with_for_update()
        )
        assert clock is not None, "the conversation has no SLA clock"
        self.due_at: dt.datetime = clock.first_response_due_at
        self.failures: list[str] = []

    def breach(self) -> None:
        """Insert the breach of the clock held, a minute past its first-response due time."""
        try:
            sla.check_due(self.holder, now=self.due_at + dt.timedelta(minutes=1))
        except DBAPIError as exc:
            self.failures.append(str(exc.orig))
            self.holder.rollback()


def until_blocked(count: int, *threads: threading.Thread) -> None:
    """Wait until ``count`` sessions wait on a lock (or one of ``threads`` ended), 10 s."""
    deadline = time.monotonic() + 10
    while (
        all(t.is_alive() for t in threads)
        and blocked_on_a_lock() < count
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)


def clocked_conversation(ws: Any, **policy: Any) -> str:
    """A conversation with a running SLA clock, for :class:`SlaCheckHolding`: a policy (30
    minutes to a first response, and ``policy``'s fields), then a customer's first message
    on the API channel."""
    body = {"name": "Fast", "first_response_minutes": 30, **policy}
    assert ws.call("POST", "/api/sla-policies", json=body).status_code == 201
    return ApiChannel(ws, None).inbound("Hello")["conversation_id"]
