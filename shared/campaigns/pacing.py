"""The sending account's pace, shared by every campaign running on it (in Redis).

Meta's throughput limit is the phone number's, not the campaign's: two campaigns each
paced on their own sent at twice the account's rate (130429, the number's quality down).
So the pace (:func:`shared.campaigns.runner.rate`) is the account's: its batches, whatever
campaign makes them, are at least its interval apart, and its campaigns take turns.

Per account, one Redis hash: ``last`` (when its last batch was let through) and ``free``
(the first turn not given yet); per campaign waiting for its turn, a key holding that
turn. Both are changed by one Lua script, so worker processes racing for an account see
one order. Times are the database clock's (the batch's ``now``), in microseconds.

- :func:`admit`: a batch about to make messages. It goes when the account's interval
  since ``last`` has passed and no other campaign holds an earlier turn (else it is
  given the next free turn: round-robin, a big campaign never starves a small one); a
  campaign holding its turn goes at it (or, after a batch let through late, when the
  interval since that one has passed, keeping its turn).
- :func:`next_turn`: a campaign that made a batch and has more to send takes the next
  free turn at least an interval on: behind the campaigns already waiting.

A turn not used (the campaign paused, cancelled, throttled) is lost: the next one waits
an interval at most. A batch let through whose transaction rolls back only delays the
account's next batch. Redis down: each campaign keeps its own pace (logged), as before.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import redis

from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
#: How long an idle account's state and an unused turn are kept past their last time.
KEEP_MS = 3600 * 1000

#: KEYS: the account's hash, the campaign's turn. ARGV: op, now, interval (microseconds),
#: keep (ms). Returns -1 (go now) or the time (microseconds) the campaign's batch waits for.
_SCRIPT = """
local op, now, interval, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
local free = tonumber(redis.call('HGET', KEYS[1], 'free'))
local held = redis.call('EXISTS', KEYS[2]) == 1
local at
if op == 'admit' then
  local open = last == nil or now >= last + interval
  if open and (held or free == nil or free <= now) then
    redis.call('HSET', KEYS[1], 'last', now)
    redis.call('DEL', KEYS[2])
    redis.call('PEXPIRE', KEYS[1], math.floor(math.max(0, (free or now) - now) / 1000) + keep)
    return -1
  end
  if held then
    at = last + interval
    redis.call('PEXPIRE', KEYS[2], math.floor((at - now) / 1000) + keep)
    return at
  end
  at = math.max(free or now, now)
  if last ~= nil then at = math.max(at, last + interval) end
else
  at = math.max(free or now, now + interval)
end
redis.call('HSET', KEYS[1], 'free', at + interval)
redis.call('PEXPIRE', KEYS[1], math.floor((at + interval - now) / 1000) + keep)
redis.call('SET', KEYS[2], at, 'PX', math.floor((at - now) / 1000) + keep)
return at
"""


def admit(
    account_id: uuid.UUID, campaign_id: uuid.UUID, now: dt.datetime, interval: float
) -> dt.datetime | None:
    """None: the campaign's batch may make its messages now; else when it may."""
    at = _run("admit", account_id, campaign_id, now, interval)
    return None if at is None or at < 0 else _EPOCH + at * _US


def next_turn(
    account_id: uuid.UUID, campaign_id: uuid.UUID, now: dt.datetime, interval: float
) -> dt.datetime:
    """When the campaign that just made a batch makes its next (its turn, reserved)."""
    at = _run("next", account_id, campaign_id, now, interval)
    return now + dt.timedelta(seconds=interval) if at is None else _EPOCH + at * _US


def _run(
    op: str, account_id: uuid.UUID, campaign_id: uuid.UUID, now: dt.datetime, interval: float
) -> int | None:
    account_key = key("campaigns", "pace", str(account_id))
    turn_key = key("campaigns", "pace", str(account_id), "turn", str(campaign_id))
    args = (op, (now - _EPOCH) // _US, round(interval * 1_000_000), KEEP_MS)
    try:
        return int(get_redis().eval(_SCRIPT, 2, account_key, turn_key, *args))
    except redis.RedisError:
        log.warning(
            "campaign %s: the pace of account %s is unknown (Redis): paced on its own",
            campaign_id,
            account_id,
            exc_info=True,
        )
        return None


__all__ = ["admit", "next_turn"]
