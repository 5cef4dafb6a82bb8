"""The purge loop: batch after batch, each in its own short transaction, within a time budget.

A batch holds its row locks for one statement, so no lock outlives a few
milliseconds' worth of deletes and nothing in flight is ever waited for. The
caller (the ``purge_old_rows`` actor) runs one budget's worth and sends itself
again when rows are left, so a million-row backlog is many short jobs rather
than one that holds a worker for minutes.

Example::

    result = purge(days=90, batch_size=5000, budget_seconds=30, on_batch=print)
    if not result.finished:
        ...  # run again: the next call starts where the old rows are
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from shared.db import session_scope
from shared.retention.kinds import KINDS, Kind


class PurgeResult(NamedTuple):
    """Rows deleted per table, and whether every kind ran out of old rows."""

    counts: Counter[str]
    finished: bool


def purge(
    *,
    days: int,
    batch_size: int,
    budget_seconds: float,
    kinds: Sequence[Kind] = KINDS,
    on_batch: Callable[[Mapping[str, int]], None] = lambda counts: None,
    clock: Callable[[], float] = time.monotonic,
) -> PurgeResult:
    """Delete final rows older than ``days`` days, ``batch_size`` per transaction.

    Stops once every kind returns a short batch (``finished``) or once
    ``budget_seconds`` have passed (at least one batch always runs). ``on_batch``
    receives each committed batch's counts, so a crash later loses none of them.
    """
    deadline = clock() + budget_seconds
    total: Counter[str] = Counter()
    for kind in kinds:
        while True:
            with session_scope() as session:
                counts = kind.purge_batch(session, days=days, limit=batch_size)
            if any(counts.values()):
                total.update(counts)
                on_batch(counts)
            if counts[kind.tables[0]] < batch_size:
                break
            if clock() >= deadline:
                return PurgeResult(total, finished=False)
    return PurgeResult(total, finished=True)
