"""Per-account bounds on outbound sends: how many calls in flight, and throttling pauses.

- slots: at most ``OUTBOUND_ACCOUNT_CONCURRENCY`` provider calls per account are in
  flight from one worker process (a semaphore per account), so a campaign on one
  number cannot take every send thread, and Meta sees a steady pipe per number.
- pauses: when Meta answers a throttling code (``4``, ``17``, ``32``, ``613``,
  ``80007``, ``130429``, ``131048``, ``131056``, or HTTP 429) the account is paused
  for the retry's delay: this process sends nothing more for it until then, and the
  pause is written to Redis (a key that expires with it) so the other worker
  processes see it at their next batch. A message of a paused account is not sent;
  it goes back to pending for the pause's end (not an attempt).

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


def _pause_key(account_id: uuid.UUID) -> str:
    return key("outbound", "paused", str(account_id))


class AccountLimits:
    """This process's per-account slots and pauses (thread-safe)."""

    def __init__(self, per_account: int) -> None:
        self.per_account = per_account
        self._lock = threading.Lock()
        self._slots: dict[uuid.UUID, threading.BoundedSemaphore] = {}
        self._paused: dict[uuid.UUID, float] = {}  # account -> monotonic end

    def slot(self, account_id: uuid.UUID) -> threading.BoundedSemaphore:
        with self._lock:
            found = self._slots.get(account_id)
            if found is None:
                found = self._slots[account_id] = threading.BoundedSemaphore(self.per_account)
            return found

    def pause_left(self, account_id: uuid.UUID) -> float:
        """Seconds this account stays paused (0 when it is not)."""
        with self._lock:
            end = self._paused.get(account_id)
        return max(0.0, end - time.monotonic()) if end else 0.0

    def pause(self, account_id: uuid.UUID, seconds: float) -> None:
        """Send nothing for the account for ``seconds`` here; tell the other processes."""
        end = time.monotonic() + seconds
        with self._lock:
            if self._paused.get(account_id, 0.0) >= end:
                return
            self._paused[account_id] = end
        log.info(
            "outbound: account %s throttled by its provider, paused %.2fs", account_id, seconds
        )
        try:
            get_redis().set(_pause_key(account_id), "1", px=max(1, int(seconds * 1000)))
        except redis.RedisError:
            log.warning(
                "outbound: Redis unavailable; the pause of %s is this process's", account_id
            )

    def load_pauses(self, account_ids: Iterable[uuid.UUID]) -> None:
        """Adopt the pauses other processes set for these accounts (one Redis round trip)."""
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            return
        try:
            with get_redis().pipeline(transaction=False) as pipe:
                for account_id in ids:
                    pipe.pttl(_pause_key(account_id))
                left = pipe.execute()
        except redis.RedisError:
            return
        now = time.monotonic()
        with self._lock:
            for account_id, ms in zip(ids, left, strict=True):
                if ms and ms > 0:
                    end = now + ms / 1000
                    if self._paused.get(account_id, 0.0) < end:
                        self._paused[account_id] = end


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
