"""evaluate_rules: a batch of automation events' rules, on the ``automation`` queue;
roll_up_automation_stats: the stats rollups of a tenant.

Importing this module registers the ``automation`` dispatch target (queue rows in
``dispatch_event``'s transaction) and installs the after-commit enqueuer, in the
worker and in the API (retry, reprocess).

PERF: a batch smaller than :data:`~shared.automation.queue.EVALUATION_BATCH` (most
transactions emit one event) joins the ``evaluate_rules`` message that already waits
or runs, if there is one, instead of sending its own: its ids go to a Redis list that
message takes when it starts (up to a full batch; the rest goes out in full batches)
and again when it ends (sent on as the next message, which keeps the flag). One event
per message evaluated each batch's claim, locks, run states, facts, targets, runs and
finish (eight statements, two commits) and its message's broker work for one event:
about three quarters of its CPU. A quiet deployment's event still goes at once, alone;
a busy one's are evaluated together, in queue order. The flag expires after
:data:`WAITING_FLAG_MS`; ids left in the list (a worker killed between a take and a
send) are hints only: the rows stay pending and the scheduler's sweeper re-drives them.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
from redis.exceptions import RedisError

from shared import dispatch
from shared.automation import evaluator, queue, stats
from shared.redis_client import get_redis, key
from workers import queues
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name=queues.AUTOMATION,
    # NOTE: the row counts its own attempts and turns failed after AUTOMATION_MAX_ATTEMPTS;
    # Dramatiq's retries (with backoff) are what re-runs it until then.
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
)
def evaluate_rules(automation_event_ids: str | list[str]) -> None:
    """Evaluate the events' rules and apply the matched actions; a duplicate is a no-op.

    One row id (a dead letter's redo, an older message) or a batch of them, plus the ids
    smaller batches left for the waiting message (see the module's note). If the
    evaluation raises for a retry, Dramatiq retries this message's own ids; the joined
    ones are sent again on their own, after the same backoff.
    """
    ids = [automation_event_ids] if isinstance(automation_event_ids, str) else automation_event_ids
    joined = _take_joined(ids)
    try:
        outcomes = evaluator.evaluate_events([uuid.UUID(event_id) for event_id in ids + joined])
    except Exception:
        if joined:
            evaluate_rules.send_with_options(args=(joined,), delay=_RETRY_JOINED_MS)
        raise
    finally:
        # Joined while this message ran: sent on now, their message keeping the flag.
        _send_batches(_end_turn())
    log.debug("automation events: %s", outcomes)


def enqueue_evaluations(ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.automation.queue` enqueuer: a message per batch of queue rows.

    PERF: a message per row cost its broker round trips, middleware and claim
    transaction each; a batch shares them and is evaluated in one transaction. A last
    batch smaller than a full one joins the waiting message if there is one.
    """
    size = queue.EVALUATION_BATCH
    batches = [[str(i) for i in ids[first : first + size]] for first in range(0, len(ids), size)]
    last = batches.pop() if batches and len(batches[-1]) < size else None
    for batch in batches:
        evaluate_rules.send(batch)
    if last is None or _join_waiting(last):
        return
    try:
        evaluate_rules.send(last)  # the flag is ours: others join this message
    except BaseException:
        _clear_waiting()
        raise


# --- one waiting message for the small batches -----------------------------------------------

#: How long a sent ``evaluate_rules`` holds the small batches' flag at most (a lost message).
WAITING_FLAG_MS = 5_000
#: How long the list of joined ids is kept without a message taking it.
JOINED_TTL_MS = 60_000
#: Joined ids of a failed evaluation go again after this (the actor's ``min_backoff``).
_RETRY_JOINED_MS = 500

#: The flag is free: take it (the caller sends its batch); else add the ids to the list.
_JOIN = """
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 1 end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 0
"""
#: Everything joined so far (the flag stays: this message still runs).
_TAKE = """
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return ids
"""
#: Nothing joined: free the flag; else everything joined (the flag stays, for its message).
_END_TURN = """
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
if #ids == 0 then redis.call('DEL', KEYS[1]) return ids end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return ids
"""


def _keys() -> list[str]:
    return [key("automation", "evaluation_waiting"), key("automation", "evaluation_joined")]


@functools.cache
def _script(source: str) -> Any:
    return get_redis().register_script(source)


def _join_waiting(ids: list[str]) -> bool:
    """Whether the ids joined a waiting message; False: the caller sends them (and now
    holds the flag). Redis down: False (sent alone, as before)."""
    try:
        return _script(_JOIN)(keys=_keys(), args=[WAITING_FLAG_MS, JOINED_TTL_MS, *ids]) == 0
    except RedisError:
        return False


def _take_joined(own: list[str]) -> list[str]:
    """The ids joined while this message waited, up to a full batch with its own; the rest
    is sent in full batches."""
    try:
        taken = [raw.decode() for raw in _script(_TAKE)(keys=_keys())]
    except RedisError:
        return []
    mine = set(own)
    taken = [event_id for event_id in dict.fromkeys(taken) if event_id not in mine]
    room = max(queue.EVALUATION_BATCH - len(own), 0)
    _send_batches(taken[room:])
    return taken[:room]


def _end_turn() -> list[str]:
    """What joined while this message ran (its sender keeps the flag), or [] (flag freed)."""
    try:
        return [raw.decode() for raw in _script(_END_TURN)(keys=_keys(), args=[WAITING_FLAG_MS])]
    except RedisError:
        return []


def _clear_waiting() -> None:
    """Let the next small batch send its own message (this one was not sent)."""
    try:
        get_redis().delete(_keys()[0])
    except RedisError:
        log.warning("could not clear the evaluation flag; it expires")


def _send_batches(ids: list[str]) -> None:
    size = queue.EVALUATION_BATCH
    for first in range(0, len(ids), size):
        evaluate_rules.send(ids[first : first + size])


@dramatiq.actor(
    queue_name=queues.AUTOMATION,
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    time_limit=120_000,
)
def roll_up_automation_stats(tenant_id: str) -> None:
    """Add the tenant's queued run figures to the stats rollups; duplicates are harmless."""
    counted, again = stats.drain(uuid.UUID(tenant_id))
    log.debug("automation stats of %s: %d event(s) counted", tenant_id, counted)
    if again:
        roll_up_automation_stats.send_with_options(
            args=(tenant_id,), delay=stats.ROLLUP_DELAY_MS, tenant_id=tenant_id
        )


def enqueue_stats_rollups(tenant_ids: Sequence[uuid.UUID]) -> None:
    """The :mod:`shared.automation.stats` enqueuer: a delayed message per tenant and second."""
    for tenant_id in stats.throttled(tenant_ids):
        roll_up_automation_stats.send_with_options(
            args=(str(tenant_id),), delay=stats.ROLLUP_DELAY_MS, tenant_id=str(tenant_id)
        )


dispatch.register_target(queue.TARGET_NAME, queue.target_many, batch=True)
queue.set_enqueuer(enqueue_evaluations)
stats.set_enqueuer(enqueue_stats_rollups)
