"""The per-tenant event feed: a bounded Redis stream each committed event is added to.

:func:`target` is a dispatch target (:mod:`shared.dispatch`): it runs in
``dispatch_event``'s transaction, builds the event's entry (its catalogue envelope,
already serialized, and the *scope* the visibility rule needs) and hands it to
:func:`publish` after that transaction commits, so a rolled-back dispatch adds
nothing. Entries older than :data:`BACKLOG_SECONDS` are trimmed by the next
``XADD`` (``MINID ~``), with :data:`MAX_ENTRIES` as a bound for bursts.

If Redis refuses a publish, the entries are lost to the stream; so that no client
silently misses them, the next successful publish of this process first adds a
``reset`` entry to the tenants concerned (their clients refetch).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from shared import db
from shared.redis_client import get_redis, key
from shared.webhooks.catalogue import envelope, envelope_of

if TYPE_CHECKING:
    from shared.dispatch import Event

log = logging.getLogger(__name__)

TARGET_NAME = "realtime"
#: How far back a reconnecting client can resume (at least; trimming is approximate).
BACKLOG_SECONDS = 600
#: A hard bound on one tenant's stream, whatever its rate.
MAX_ENTRIES = 50_000
#: An idle tenant's stream disappears after this long (a resume from it is then a reset).
IDLE_EXPIRY_SECONDS = 86_400
#: ``session.info`` key of the entries waiting for the dispatch transaction's commit.
_SESSION_KEY = "omnistream.realtime_entries"

#: Field names of a stream entry.
ENVELOPE, SCOPE, KIND = b"env", b"scope", b"kind"
#: Values of ``kind``: a catalogue event, or "refetch everything" after a lost publish, or
#: an agent's access mark (:data:`shared.realtime.access.MARK_LUA`: sent to nobody, it
#: only dates a change of what one agent may see, in the stream's own positions).
EVENT, RESET, ACCESS = "event", "reset", "access"
#: Fields of an access mark: whose access (:func:`shared.realtime.access.principal`), and
#: its fingerprint from then on.
PRINCIPAL, FINGERPRINT = b"principal", b"fp"

#: A stream-only event type: a deleted division's conversations, too many for an entry each
#: (``shared.inbox.divisions.ANNOUNCED_ONE_BY_ONE``), all lost that division at once. Its
#: ``data`` is ``from_division_id`` and ``division_id`` (null); a client refetches the
#: conversations it holds of that division (its list, if it saw them through it). It names
#: no conversation and any agent reads the divisions, so every agent receives it.
DIVISION_RELEASED = "conversations.division_released"
#: A stream-only event type: a deleted AI agent's conversations, too many for an entry each
#: (``shared.inbox.divisions.ANNOUNCED_ONE_BY_ONE``), all lost their AI at once (no AI answers
#: them any more: ``ai_active`` false). Its ``data`` is ``ai_agent_id`` (the deleted agent's);
#: a client refetches the conversations it holds (its list). It names no conversation (nor
#: how many: an agent may not see them all), so every agent receives it.
AI_RELEASED = "conversations.ai_released"
#: A stream-only event type: a bulk ``set_priority`` job changed more conversations than are
#: announced one by one (``shared.inbox.bulk.announced_one_by_one``); sent once per chunk that
#: changed some, as that chunk commits (so a job that fails later has told what it changed).
#: Its ``data`` is ``priority`` and ``job_id``; a client refetches its list. It names no
#: conversation (nor how many: an agent may not see them all), so every agent receives it.
PRIORITIES_CHANGED = "conversations.priority_changed"
#: Event types without a conversation that every agent of the tenant receives (the
#: agents list is readable by any agent); the others go to ``conversations.manage``.
TENANT_WIDE = frozenset(
    {
        "agent.created",
        "agent.updated",
        "agent.deleted",
        "agent.status_changed",
        DIVISION_RELEASED,
        AI_RELEASED,
        PRIORITIES_CHANGED,
    }
)
#: The permission that reads what an event without a conversation is about, by type prefix
#: (its API's own): ``conversations.manage`` alone (a supervisor) does not read roles,
#: webhooks or integrations. Another type goes to ``conversations.manage``.
PERMISSION_OF = {
    "role": "roles.manage",
    "api_key": "api_keys.manage",
    "webhook": "webhooks.manage",
    "integration_account": "integrations.manage",
    "template": "integrations.manage",
    "campaign": "campaigns.manage",
    "automation": "automation.view",
}


class Entry(NamedTuple):
    tenant_id: uuid.UUID
    fields: dict[str, str]


#: A stream-only event type: a conversation's division changed by an edit the webhook
#: catalogue has no event for (a bulk ``set_division``, an automation or AI action). Without
#: it the agents of the old division kept it in their list and those of the new one never
#: got it until they reloaded. Its ``data`` is the conversation, plus ``from_division_id``.
DIVISION_CHANGED = "conversation.division_changed"
#: A stream-only event type: a conversation's priority changed (a bulk ``set_priority``, an
#: automation action). The catalogue has no event for it, so agents' open views kept the
#: old priority until they reloaded. Its ``data`` is the conversation, plus ``from_priority``.
PRIORITY_CHANGED = "conversation.priority_changed"
#: A stream-only event type: a conversation's AI fields changed (the AI agent claiming it,
#: a person's reply, an automation's hand-over) on a path with no catalogue event that
#: carries them, so agents' open views kept showing the AI answering (or not) until they
#: reloaded. Its ``data`` is the conversation, plus ``ai_agent_id`` (not in its view).
AI_CHANGED = "conversation.ai_changed"
#: The event types only the inbox's streams receive (never the outbox, webhooks, automation).
STREAM_ONLY = frozenset(
    {
        DIVISION_CHANGED,
        PRIORITY_CHANGED,
        AI_CHANGED,
        DIVISION_RELEASED,
        AI_RELEASED,
        PRIORITIES_CHANGED,
    }
)


class _StreamOnly(NamedTuple):
    """What :func:`scope_of` reads of an event, for one that is not in the outbox."""

    type: str
    data: dict[str, Any]
    conversation: None = None


def stream_key(tenant_id: Any) -> str:
    return key("realtime", "events", str(tenant_id))


def min_id() -> str:
    """The ``MINID`` that trims a stream to its backlog."""
    return f"{int((time.time() - BACKLOG_SECONDS) * 1000)}-0"


def _id(value: Any) -> str | None:
    return str(value) if value else None


def scope_of(event: Event) -> dict[str, Any]:
    """Who may receive the event: its conversation's assignee and division, now and before.

    ``c`` is the conversation (absent: not about one), ``a``/``d`` its assignee and
    division after the event, ``pa``/``pd`` before it (an assignment or transfer
    also reaches whoever could see the conversation until then, so their client
    drops it). ``t`` marks a tenant-wide event, ``p`` the permission another needs.
    Another event about a conversation (a message, a note...) reaches its conversation's
    assignee and division as dispatch read them with the lock
    (``dispatch.Event.conversation``; none found: managers only).
    PERF: no query here: a query per dispatched batch cost the feed a third of its CPU.
    """
    data = event.data or {}
    if event.type.startswith("conversation."):
        assignee, division = _id(data.get("assignee_id")), _id(data.get("division_id"))
        before_a = data.get("previous_assignee_id", data.get("from_agent_id", assignee))
        before_d = data.get("from_division_id", division)
        return {
            "c": _id(data.get("id")),
            "a": assignee,
            "d": division,
            "pa": _id(before_a),
            "pd": _id(before_d),
        }
    conversation_id = data.get("conversation_id")
    if conversation_id:
        conversation_id = str(conversation_id)
        assignee, division = event.conversation or (None, None)
        return {
            "c": conversation_id,
            "a": assignee,
            "d": division,
            "pa": assignee,
            "pd": division,
        }
    needed = PERMISSION_OF.get(event.type.partition(".")[0])
    return {"t": False, "p": needed} if needed else {"t": event.type in TENANT_WIDE}


#: PERF: built once: ``json.dumps`` with options builds an encoder on every call.
_ENVELOPE_JSON = json.JSONEncoder(separators=(",", ":"), default=str).encode
_SCOPE_JSON = json.JSONEncoder(separators=(",", ":")).encode


def _fields(envelope: dict[str, Any], scope: dict[str, Any]) -> dict[str, str]:
    return {"kind": EVENT, "env": _ENVELOPE_JSON(envelope), "scope": _SCOPE_JSON(scope)}


def target(session: Session, events: Sequence[Event]) -> None:
    """The dispatch target (``batch=True``): queue each event's entry for after the commit."""
    entries = db.collected_until_commit(session, _SESSION_KEY, publish)
    for event in events:
        fields = _fields(envelope_of(event), scope_of(event))
        entries.append(Entry(event.tenant_id, fields))


def announce(
    session: Session,
    tenant_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    actor: dict[str, Any],
    occurred_at: Any,
) -> None:
    """Queue a :data:`STREAM_ONLY` event's entry for after the caller's commit (none on
    rollback), scoped as a dispatched event of the same ``data`` would be.

    Straight to the feed, not through the outbox: webhooks and automation have no such
    event, only the inbox's streams need it.
    """
    if event_type not in STREAM_ONLY:
        raise ValueError(f"{event_type!r} is not a stream-only event type")
    event = _StreamOnly(event_type, data)
    body = envelope(uuid.uuid4(), event.type, occurred_at, data, tenant_id=tenant_id, actor=actor)
    entries = db.collected_until_commit(session, _SESSION_KEY, publish)
    entries.append(Entry(tenant_id, _fields(body, scope_of(event))))


def announce_reset(session: Session, tenant_id: uuid.UUID) -> None:
    """Queue a ``reset`` of the tenant's streams for after the caller's commit: their
    clients refetch. For a change of more conversations than entries can say one by one."""
    entries = db.collected_until_commit(session, _SESSION_KEY, publish)
    entries.append(Entry(tenant_id, {"kind": RESET}))


_lost_lock = threading.Lock()
#: Tenants whose entries a failed publish of this process lost (a reset is owed to them),
#: each with the number of its latest such failure: a publish that wrote a tenant's reset
#: pays only the losses it saw, not one that another thread's publish met meanwhile.
_lost: dict[uuid.UUID, int] = {}
_failures = itertools.count(1)


#: XADD each entry (``key index, field count, fields...`` in ARGV after the bounds), then bound
#: and refresh each stream once: what a pipeline of XADDs did, in one command.
_PUBLISH_LUA = """
local min_id, max_len, expiry = ARGV[1], ARGV[2], ARGV[3]
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  local command = {'XADD', KEYS[tonumber(ARGV[i])], 'MINID', '~', min_id, '*'}
  for j = 1, 2 * n do command[6 + j] = ARGV[i + 1 + j] end
  redis.call(unpack(command))
  i = i + 2 + 2 * n
end
for _, stream in ipairs(KEYS) do
  redis.call('XTRIM', stream, 'MAXLEN', '~', max_len)
  redis.call('EXPIRE', stream, expiry)
end
return #KEYS
"""


@functools.cache
def _publish_script() -> Any:
    return get_redis().register_script(_PUBLISH_LUA)


def publish(entries: Sequence[Entry]) -> None:
    """XADD the entries to their tenants' streams in one round trip; never raises.

    PERF: one script call, not a pipeline of an XADD per entry: packing and parsing each
    command cost the worker more than twice the CPU (0.39 -> 0.17 ms for 20 entries).
    """
    if not entries:
        return
    with _lost_lock:
        owed = dict(_lost)
    streams: dict[Any, int] = {}
    args: list[Any] = [min_id(), MAX_ENTRIES, IDLE_EXPIRY_SECONDS]
    for tenant_id, fields in [*((t, {KIND: RESET}) for t in owed), *entries]:
        index = streams.setdefault(tenant_id, len(streams) + 1)
        args += (index, len(fields))
        for name, value in fields.items():
            args += (name, value)
    try:
        _publish_script()(keys=[stream_key(t) for t in streams], args=args)
    except RedisError:
        with _lost_lock:
            failure = next(_failures)
            _lost.update((e.tenant_id, failure) for e in entries)
        log.warning(
            "could not publish %d realtime entries; their clients get a reset", len(entries)
        )
        return
    with _lost_lock:
        for tenant_id, failure in owed.items():
            if _lost.get(tenant_id) == failure:
                del _lost[tenant_id]
