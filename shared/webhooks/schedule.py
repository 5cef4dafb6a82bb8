"""When a failed attempt is retried: the Standard Webhooks schedule, jitter and the floors.

Attempt 1 is immediate; after a failure of attempt ``n`` the next waits
``SCHEDULE[n]`` (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), +-20%. A ``Retry-After``
the receiver sends is honoured when longer, up to :data:`MAX_RETRY_AFTER`; a 429 or
a timeout waits at least :data:`THROTTLE_FLOOR`. After attempt ``len(SCHEDULE)``
the delivery is failed.

Example::

    next_delay(1, status=500)                 # ~5 s
    next_delay(1, status=429, retry_after=2)  # >= 60 s
    next_delay(8, status=500)                 # None: the schedule ran out
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

from shared.digits import ascii_digits

#: Seconds before attempt n + 1, indexed by n (attempt 1 is SCHEDULE[0] = immediate).
SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(SCHEDULE)
JITTER = 0.2
#: 429s and timeouts mean "slow down": never retry sooner than this.
THROTTLE_FLOOR = 60.0
#: A Retry-After longer than this is capped (the schedule's longest wait).
MAX_RETRY_AFTER = max(SCHEDULE)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    NOTE: the receiver writes the header: whatever it holds, this answers, never raises
    (a date with a huge zone offset raised OverflowError and crashed the attempt).
    """
    if not value:
        return None
    value = value.strip()
    if ascii_digits(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def next_delay(
    attempt: int,
    *,
    status: int | None = None,
    error_kind: str | None = None,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the attempt after ``attempt`` (1-based), or None when none is left."""
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = SCHEDULE[attempt] * (1 + (rng or random).uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    if status == 429 or error_kind == "timeout":
        delay = max(delay, THROTTLE_FLOOR)
    return delay
