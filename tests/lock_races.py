"""Races against a transaction that holds its locks: one helper for the deletion-race tests.

A test takes locks in ``holder`` (a deletion, an import's first step, a row FOR UPDATE),
starts the racing call in a thread, waits until that call waits on a lock (or has
already answered), then lets ``holder`` finish and commit: the order in which the two
transactions meet is the one the test means, not the scheduler's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.db import session_scope


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
