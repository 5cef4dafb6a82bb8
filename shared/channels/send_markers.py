"""Sends in doubt: which provider calls began but were never recorded (their worker died).

Neither Meta's Graph API nor SMTP takes an idempotency key, so a worker killed after the
provider accepted a message and before its record committed leaves a send nobody can
settle: sending it again may message the customer twice. Each provider call is therefore
preceded by a marker in Redis holding the attempt's number; recording the outcome removes
it. A later claim that finds the marker of the attempt before its own knows that attempt
reached the provider call and was never recorded: the engine fails the message as
``delivery_unknown`` (visible, and a person may resend it) rather than sending it again.
A send that was claimed but never started has no marker and goes out normally.

The api channel is exempt: its callbacks carry a stable webhook id that receivers
deduplicate, so sending one again is safe.

Redis down: a marker that cannot be written is logged and the send goes ahead (delivery
falls back to at least once); a check that cannot read finds nothing in doubt. A record
whose commit succeeds but whose marker removal fails leaves a marker behind: only a send
retried after a transient failure can meet it, and it is failed as in doubt — the one
false positive, in a window of milliseconds after a worker crash.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

import redis

from shared.config import get_settings
from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: Channels whose sends can be repeated safely (the receiver deduplicates by id).
EXEMPT_CHANNELS = frozenset({"api"})
#: A marker outlives any claim and the sweeper's re-drive after it by this much.
_MARGIN_SECONDS = 3600


def _key(message_id: uuid.UUID) -> str:
    return key("outbound", "started", str(message_id))


def _ttl_seconds() -> int:
    settings = get_settings()
    return int(2 * settings.outbound_claim_seconds + _MARGIN_SECONDS)


def mark(message_id: uuid.UUID, attempt: int) -> None:
    """Attempt ``attempt`` is about to call the provider (call right before it)."""
    try:
        get_redis().set(_key(message_id), attempt, ex=_ttl_seconds())
    except redis.RedisError as exc:
        log.warning(
            "send %s: marker not written (%s); a crash now may send it twice", message_id, exc
        )


#: Delete each marker (KEYS) that still holds its claim's attempt (ARGV, in order).
_CLEAR_OWN = """
for i, name in ipairs(KEYS) do
    if redis.call('GET', name) == ARGV[i] then redis.call('DEL', name) end
end
"""


def clear(attempts: Mapping[uuid.UUID, int]) -> None:
    """The outcomes of these ``{message_id: attempt}`` sends are recorded (call after the
    commit): their markers go, not a later claim's.

    WHY: a record late enough that another worker had claimed the send since removed that
    worker's marker; killed during its call, its send then went out again.
    """
    if not attempts:
        return
    keys = [_key(message_id) for message_id in attempts]
    try:
        get_redis().eval(_CLEAR_OWN, len(keys), *keys, *(str(a) for a in attempts.values()))
    except redis.RedisError as exc:
        log.warning("%d send markers not removed: %s", len(keys), exc)


def in_doubt(attempts: Mapping[uuid.UUID, int]) -> set[uuid.UUID]:
    """Of ``{message_id: this claim's attempt}``, those whose earlier attempt called the
    provider and was never recorded.

    Any earlier attempt's marker, not only the previous one's: every record clears the
    markers, so one still there is a provider call nobody recorded. Checking only the
    previous attempt sent a message again when the claim that found it in doubt was
    lost too (attempt 1 at Meta, attempt 2 killed before its record, attempt 3 sent).
    """
    retried = [message_id for message_id, attempt in attempts.items() if attempt > 1]
    if not retried:
        return set()
    try:
        found = get_redis().mget([_key(message_id) for message_id in retried])
    except redis.RedisError as exc:
        log.warning("send markers not read (%s): %d retried sends go out again", exc, len(retried))
        return set()
    return {
        message_id
        for message_id, value in zip(retried, found, strict=True)
        if value is not None and int(value) < attempts[message_id]
    }
