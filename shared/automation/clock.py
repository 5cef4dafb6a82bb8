"""The instant automation judges "now" by: the database clock, unless a test moved it.

Snoozes end, schedule windows open and close by comparing with this instant; nothing
is scheduled to flip them. The evaluator reads the database clock in the round trip
it already makes per event and passes it to :func:`now`; the API asks :func:`db_now`.
Tests move time with :func:`travel` (the in-process worker sees it too), never sleep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

#: Set by :func:`travel`: returns the instant to use instead of the database clock.
_source: Callable[[], dt.datetime] | None = None


def now(database_now: dt.datetime) -> dt.datetime:
    """``database_now`` (read with other columns), or the instant a test moved to."""
    return database_now if _source is None else _source()


def db_now(session: Session) -> dt.datetime:
    """The database clock (one round trip), or the instant a test moved to."""
    if _source is not None:
        return _source()
    return session.scalar(select(func.now()))


@contextlib.contextmanager
def travel(to: dt.datetime | Callable[[], dt.datetime]) -> Iterator[None]:
    """Judge automation at ``to`` (an aware instant, or a callable) inside the block.

    Example::

        with clock.travel(dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)):
            ...  # the worker and the API see 00:30 UTC
    """
    global _source
    if isinstance(to, dt.datetime):
        if to.tzinfo is None:
            raise ValueError("travel() needs an aware datetime")
        instant = to
        to = lambda: instant  # noqa: E731
    previous, _source = _source, to
    try:
        yield
    finally:
        _source = previous
