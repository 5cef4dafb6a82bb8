"""Per-account bounds on outbound sends: how many calls in flight, and throttling pauses.

- slots: at most ``OUTBOUND_ACCOUNT_CONCURRENCY`` provider calls per account are in
  flight from one worker process (a semaphore per account), so a campaign on one
  number cannot take every send thread, and Meta sees a steady pipe per number.
- pauses: when Meta answers a throttling code (``4``, ``17``, ``32``, ``613``,
  ``80007``, ``130429``, ``131048``, or HTTP 429) the account is paused
  for the retry's delay: this process sends nothing more for it until then, and the
  pause is written to Redis (a key that expires with it) so the other worker
  processes see it at their next batch. A message of a paused account is not sent;
  it goes back to pending for the pause's end (not an attempt).
- pair holds: Meta's pair rate limit (``131056``: too many messages from this number to
  this one recipient lately) holds back only the sends to that recipient (the contact)
  from that account, the same way and for the same delay; the account keeps sending to
  everyone else. WHY: pausing the whole number for one chatty conversation stalled every
  other customer's replies (and a campaign) for the back-off.

NOTE: the slots bound each process; with P worker processes an account has up to
P x the limit in flight. Meta's limits are per second, not per connection, which
is what the pauses are for. Redis down: pauses stay per process (logged).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable

import redis

from shared.config import get_settings
from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)


#: A pause's subject: an account (``(account_id, None)``), or one recipient of it
#: (``(account_id, contact_id)``, a pair hold).
Subject = tuple[uuid.UUID, uuid.UUID | None]
#: Expired pair holds are dropped once this many are kept (they are one per recipient).
_PRUNE_AT = 1024


def _pause_key(account_id: uuid.UUID, recipient: uuid.UUID | None = None) -> str:
    if recipient is None:
        return key("outbound", "paused", str(account_id))
    return key("outbound", "paused", str(account_id), str(recipient))


class AccountLimits:
    """This process's per-account slots, pauses and pair holds (thread-safe)."""

    def __init__(self, per_account: int) -> None:
        self.per_account = per_account
        self._lock = threading.Lock()
        self._slots: dict[uuid.UUID, threading.BoundedSemaphore] = {}
        self._paused: dict[Subject, float] = {}  # subject -> monotonic end

    def slot(self, account_id: uuid.UUID) -> threading.BoundedSemaphore:
        with self._lock:
            found = self._slots.get(account_id)
            if found is None:
                found = self._slots[account_id] = threading.BoundedSemaphore(self.per_account)
            return found

    def pause_left(self, account_id: uuid.UUID, recipient: uuid.UUID | None = None) -> float:
        """Seconds a send from this account (to ``recipient``) must wait: the account's
        pause, or the pair's hold, whichever ends later (0 when neither applies)."""
        now = time.monotonic()
        with self._lock:
            ends = [self._paused.get((account_id, None), 0.0)]
            if recipient is not None:
                ends.append(self._paused.get((account_id, recipient), 0.0))
        return max(0.0, max(ends) - now)

    def pause(
        self, account_id: uuid.UUID, seconds: float, recipient: uuid.UUID | None = None
    ) -> None:
        """Send nothing for the account (only to ``recipient``, when given) for ``seconds``
        here; tell the other processes."""
        now = time.monotonic()
        end = now + seconds
        subject = (account_id, recipient)
        with self._lock:
            if self._paused.get(subject, 0.0) >= end:
                return
            self._paused[subject] = end
            if len(self._paused) > _PRUNE_AT:
                self._paused = {s: e for s, e in self._paused.items() if e > now}
        if recipient is None:
            log.info(
                "outbound: account %s throttled by its provider, paused %.2fs", account_id, seconds
            )
        else:
            log.info(
                "outbound: account %s throttled towards contact %s only, held %.2fs",
                account_id,
                recipient,
                seconds,
            )
        try:
            get_redis().set(_pause_key(account_id, recipient), "1", px=max(1, int(seconds * 1000)))
        except redis.RedisError:
            log.warning(
                "outbound: Redis unavailable; the pause of %s is this process's", account_id
            )

    def load_pauses(self, subjects: Iterable[Subject]) -> None:
        """Adopt the pauses other processes set for these ``(account_id, recipient)``
        sends: each account's, and each pair's (one Redis round trip)."""
        wanted: dict[Subject, None] = {}
        for account_id, recipient in subjects:
            wanted[(account_id, None)] = None
            if recipient is not None:
                wanted[(account_id, recipient)] = None
        ids = list(wanted)
        if not ids:
            return
        try:
            with get_redis().pipeline(transaction=False) as pipe:
                for account_id, recipient in ids:
                    pipe.pttl(_pause_key(account_id, recipient))
                left = pipe.execute()
        except redis.RedisError:
            return
        now = time.monotonic()
        with self._lock:
            for subject, ms in zip(ids, left, strict=True):
                if ms and ms > 0:
                    end = now + ms / 1000
                    if self._paused.get(subject, 0.0) < end:
                        self._paused[subject] = end


_limits: tuple[object, AccountLimits] | None = None
_limits_lock = threading.Lock()


def account_limits() -> AccountLimits:
    """This process's limits, rebuilt when the settings change (tests)."""
    global _limits
    settings = get_settings()
    with _limits_lock:
        if _limits is None or _limits[0] is not settings:
            _limits = (settings, AccountLimits(settings.outbound_account_concurrency))
        return _limits[1]
