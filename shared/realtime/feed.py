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

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import db
from shared.models import Conversation, OutboxEvent
from shared.redis_client import get_redis, key
from shared.webhooks.catalogue import envelope_of

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
#: Values of ``kind``: a catalogue event, or "refetch everything" after a lost publish.
EVENT, RESET = "event", "reset"

#: Event types without a conversation that every agent of the tenant receives (the
#: agents list is readable by any agent); the others go to ``conversations.manage``.
TENANT_WIDE = frozenset({"agent.created", "agent.updated", "agent.deleted", "agent.status_changed"})


class Entry(NamedTuple):
    tenant_id: uuid.UUID
    fields: dict[str, str]


def stream_key(tenant_id: Any) -> str:
    return key("realtime", "events", str(tenant_id))


def _id(value: Any) -> str | None:
    return str(value) if value else None


def scope_of(
    session: Session, event: OutboxEvent, known: dict[tuple, tuple] | None = None
) -> dict[str, Any]:
    """Who may receive the event: its conversation's assignee and division, now and before.

    ``c`` is the conversation (absent: not about one), ``a``/``d`` its assignee and
    division after the event, ``pa``/``pd`` before it (an assignment or transfer
    also reaches whoever could see the conversation until then, so their client
    drops it). ``t`` marks a tenant-wide event. ``known`` holds conversations already
    read (:func:`_conversations`, by tenant and id); another is read here.
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
        found = (event.tenant_id, uuid.UUID(str(conversation_id)))
        if known is None or found not in known:
            known = _conversations(session, event.tenant_id, [found[1]])
        row = known.get(found)
        assignee, division = (_id(row[0]), _id(row[1])) if row else (None, None)
        return {
            "c": str(conversation_id),
            "a": assignee,
            "d": division,
            "pa": assignee,
            "pd": division,
        }
    return {"t": event.type in TENANT_WIDE}


def _conversations(
    session: Session, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[tuple, tuple]:
    """``{(tenant_id, id): (assignee_id, division_id)}`` of the tenant's ``ids``, one query."""
    rows = session.execute(
        select(Conversation.id, Conversation.assignee_id, Conversation.division_id).where(
            Conversation.tenant_id == tenant_id, Conversation.id.in_(ids)
        )
    )
    return {(tenant_id, row[0]): (row[1], row[2]) for row in rows}


def target(session: Session, event: OutboxEvent) -> None:
    """The dispatch target: queue the event's entry for publication after the commit."""
    target_many(session, [event])


def target_many(session: Session, events: Sequence[OutboxEvent]) -> None:
    """:func:`target` for a dispatch batch: the conversations read in one query per tenant."""
    wanted: dict[uuid.UUID, set[uuid.UUID]] = {}
    for event in events:
        conversation_id = (event.data or {}).get("conversation_id")
        if conversation_id and not event.type.startswith("conversation."):
            wanted.setdefault(event.tenant_id, set()).add(uuid.UUID(str(conversation_id)))
    known: dict[tuple, tuple] = {}
    for tenant_id, ids in wanted.items():
        known |= _conversations(session, tenant_id, list(ids))
    entries = db.collected_until_commit(session, _SESSION_KEY, publish)
    for event in events:
        fields = {
            "kind": EVENT,
            "env": json.dumps(envelope_of(event), separators=(",", ":"), default=str),
            "scope": json.dumps(scope_of(session, event, known), separators=(",", ":")),
        }
        entries.append(Entry(event.tenant_id, fields))


_lost_lock = threading.Lock()
#: Tenants whose entries a failed publish of this process lost (a reset is owed to them).
_lost: set[uuid.UUID] = set()


def publish(entries: Sequence[Entry]) -> None:
    """XADD the entries to their tenants' streams in one round trip; never raises."""
    if not entries:
        return
    with _lost_lock:
        owed = set(_lost)
    min_id = f"{int((time.time() - BACKLOG_SECONDS) * 1000)}-0"
    pipe = get_redis().pipeline(transaction=False)
    for tenant_id in owed:
        _add(pipe, tenant_id, {"kind": RESET}, min_id)
    for entry in entries:
        _add(pipe, entry.tenant_id, entry.fields, min_id)
    try:
        pipe.execute()
    except RedisError:
        with _lost_lock:
            _lost.update(e.tenant_id for e in entries)
        log.warning(
            "could not publish %d realtime entries; their clients get a reset", len(entries)
        )
        return
    with _lost_lock:
        _lost.difference_update(owed)


def _add(pipe: Any, tenant_id: uuid.UUID, fields: dict[str, str], min_id: str) -> None:
    name = stream_key(tenant_id)
    pipe.xadd(name, fields, minid=min_id, approximate=True)
    pipe.xtrim(name, maxlen=MAX_ENTRIES, approximate=True)
    pipe.expire(name, IDLE_EXPIRY_SECONDS)
