"""Full-text search over the messages of the conversations a caller may see.

Matching uses ``websearch_to_tsquery('simple', q)`` against the stored
``messages.search`` tsvector; ranking is ``ts_rank_cd`` and then newest first.

Pagination: ranked results have no stable, cheap keyset (the rank is a float
computed per query), so the cursor is an offset, bounded to :data:`MAX_RESULTS`,
the same bound as the candidates ranked. Every page re-ranks the (at most
1,000) candidates anyway, so a keyset on (rank, created_at, id) would save
little and would carry float equality into the cursor. Nobody reads past a
thousand search hits; they refine the query.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import html
import json
import uuid
from typing import Any

from sqlalchemy import Select, bindparam, func, literal_column, select, true, union_all
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import ValidationFailed
from shared.inbox.access import get_conversation, visibility, visible_bound
from shared.inbox.messages import MESSAGE_COLUMNS
from shared.models import Contact, Conversation, Message
from shared.pagination import InvalidCursor, Page

#: The text search configuration of ``messages.search`` (no stemming, no stop words).
_SIMPLE = literal_column("'simple'::regconfig")
#: The deepest result a cursor may reach, and how many matches are ranked.
MAX_RESULTS = 1000
#: The newest messages scanned first for candidates (see search_messages).
RECENT_WINDOW = 10_000
#: Fewer matches than this in the window make a query rare: it searches all history.
RARE_BELOW = 50
# APPSEC: ts_headline returns the raw body; it is marked with control characters the
# body cannot contain (they are stripped first), HTML-escaped, then the markers become
# <mark> tags, so a client may render the highlight as HTML safely.
_START, _STOP = "\x02", "\x03"
HEADLINE_OPTIONS = (
    f"StartSel={_START}, StopSel={_STOP}, MaxFragments=2, MaxWords=20, MinWords=6, "
    'FragmentDelimiter=" … "'
)


def _fingerprint(params: dict[str, Any]) -> str:
    raw = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _encode_cursor(offset: int, fingerprint: str) -> str:
    raw = json.dumps([offset, fingerprint], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset, seen = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(offset, int) or not 0 < offset < MAX_RESULTS:
            raise ValueError("offset out of range")
    except (ValueError, TypeError) as exc:
        raise InvalidCursor(
            "Invalid cursor", details=[{"field": "cursor", "message": "not a cursor"}]
        ) from exc
    if seen != fingerprint:
        raise InvalidCursor(
            "The cursor belongs to another search",
            details=[{"field": "cursor", "message": "q or filters changed"}],
        )
    return offset


def _highlight(raw: str | None) -> str:
    escaped = html.escape(raw or "", quote=False)
    return escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")


class _Filters:
    """The WHERE of a search, applicable to ``messages`` or to a window over it.

    Its methods take a column collection (``Message.__table__.c`` or a subquery's
    ``.c``). Values are bind parameters (``v_tenant_id``, ``q``, ``channel``...), so the
    statement is built once per combination of filters. PERF: plain columns, not
    ``aliased()`` ORM entities, whose proxied attributes cost ~1.5 ms of Python per
    search (under the GIL) to build.
    """

    def __init__(self, shape: str, present: frozenset[str]):
        self.shape, self.present = shape, present
        self.tenant_id = bindparam("v_tenant_id", type_=Message.tenant_id.type)
        self.query_ts = _query_ts()

    def _value(self, name: str, column) -> Any:
        return bindparam(name, type_=column.type)

    def dates(self, m) -> list:
        clauses = []
        if "since" in self.present:
            clauses.append(m.created_at >= self._value("since", m.created_at))
        if "until" in self.present:
            clauses.append(m.created_at < self._value("until", m.created_at))
        return clauses

    def matches(self, m) -> Select:
        """Rows of ``m`` (``messages`` or a window over it) matching the query and the filters."""
        query = select(
            m.id, m.tenant_id, m.conversation_id, m.channel, m.sender_type, m.created_at, m.search
        ).where(m.tenant_id == self.tenant_id, m.search.bool_op("@@")(self.query_ts))
        query = query.where(*self.dates(m))
        for name in ("channel", "conversation_id", "sender_type"):
            if name in self.present:
                query = query.where(m[name] == self._value(name, m[name]))
        return query

    def newest_visible(self, m) -> Select:
        """The newest MAX_RESULTS of ``m``'s rows in conversations the caller may see.

        PERF: visibility is probed per candidate row, by primary key (a LATERAL
        subquery with LIMIT 1, which the planner cannot flatten into a join). As a
        plain join, for an agent without ``conversations.manage`` the planner
        hash-joined the few hundred candidates with every conversation the agent
        may see (a bitmap scan of ~25,000 rows, 20-30 ms of the query).
        """
        allowed = (
            select(literal_column("1").label("allowed"))
            .select_from(Conversation)
            .where(Conversation.id == m.conversation_id, visible_bound(self.shape))
            .limit(1)
            .lateral("allowed")
        )
        return (
            select(m.id, m.created_at, m.search)
            .join(allowed, true())
            .order_by(m.created_at.desc(), m.id.desc())
            .limit(MAX_RESULTS)
        )


def _query_ts():
    return func.websearch_to_tsquery(_SIMPLE, bindparam("q", type_=Message.body.type))


def search_messages(
    session: Session,
    ctx: Ctx,
    *,
    q: str,
    limit: int,
    cursor: str | None = None,
    channel: str | None = None,
    conversation_id: uuid.UUID | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sender_type: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of hits shaped like ``MessageSearchHit``, best first.

    NOTE: search favours recent messages. A common query ranks its newest matches: at
    most :data:`MAX_RESULTS`, from the tenant's newest :data:`RECENT_WINDOW` messages
    (within ``from``/``to``, which reach older ones). A rare query (fewer than
    :data:`RARE_BELOW` matches there) ranks its newest MAX_RESULTS matches in the whole
    history. Ranking every match of a common word means reading every matching row
    (90,000 of a 1M-message tenant for "refund": over a second).
    PERF: the rare branch uses the btree_gin index ``ix_messages_search (tenant_id,
    search)`` (tenant and match in one WHERE). ``ts_headline`` (the costly part: it
    re-parses the body) runs in the outermost query, on the returned page only. The
    statement is built once per visibility shape and combination of filters
    (:func:`_search_statement`) and run on the driver.
    """
    if since and until and since >= until:
        raise ValidationFailed.field("from", "must be before 'to'")
    params = {
        "q": q,
        "channel": channel,
        "conversation_id": conversation_id,
        "from": since,
        "to": until,
        "sender_type": sender_type,
    }
    fingerprint = _fingerprint(params)
    offset = _decode_cursor(cursor, fingerprint) if cursor else 0
    limit = min(limit, MAX_RESULTS - offset)
    if conversation_id is not None:
        get_conversation(session, ctx, conversation_id)  # 404 when not visible

    shape, binds = visibility(ctx)
    values = {
        "channel": channel,
        "conversation_id": conversation_id,
        "since": since,
        "until": until,
        "sender_type": sender_type,
    }
    present = frozenset(name for name, value in values.items() if value is not None)
    binds.update((name, values[name]) for name in present)
    binds.update(q=q, page_limit=limit + 1, page_offset=offset)
    statement = _search_statement(shape, present)
    keys = tuple(statement.selected_columns.keys())
    rows = [
        dict(zip(keys, row, strict=True))
        for row in fetch_rows(session.connection(), statement, binds)
    ]
    items = [_hit(row) for row in rows[:limit]]
    next_offset = offset + limit
    next_cursor = None
    if len(rows) > limit and next_offset < MAX_RESULTS:
        next_cursor = _encode_cursor(next_offset, fingerprint)
    return Page(items, next_cursor)


@functools.lru_cache(maxsize=128)
def _search_statement(shape: str, present: frozenset[str]) -> Select:
    """The search for one visibility shape and set of filters, built once.

    PERF: building it (subqueries, CTE, LATERAL probes, their column proxies) cost
    ~5 ms of Python per search, more than PostgreSQL spent running it.
    """
    filters = _Filters(shape, present)
    query_ts = filters.query_ts
    # 1. Candidates: the newest MAX_RESULTS matches the caller may see (narrow rows),
    # looked for among the tenant's newest RECENT_WINDOW messages (a bounded backward
    # scan of ix_messages_tenant_created). Only a rare query, with fewer than
    # RARE_BELOW matches there, looks through the whole history (the GIN index, which
    # then fetches few rows). PERF: One-Time Filters run exactly one of the two branches.
    # Two plans chosen by what the window holds, not by the planner's estimate, because
    # the planner misjudges phrases and correlated words ("wrong size": estimated 2,000
    # matches, actually 48,000) and would then read every match through the GIN index.
    window = (
        select(
            Message.id,
            Message.tenant_id,
            Message.conversation_id,
            Message.channel,
            Message.sender_type,
            Message.created_at,
            Message.search,
        )
        .where(Message.tenant_id == filters.tenant_id)
        .where(*filters.dates(Message))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(RECENT_WINDOW)
        .subquery("window")
    )
    in_window = filters.matches(window.c).cte("in_window")
    recent = filters.newest_visible(in_window.c).subquery("recent")
    all_matches = filters.matches(Message.__table__.c).subquery("all_matches")
    everywhere = filters.newest_visible(all_matches.c).subquery("everywhere")
    # NOTE: rare or common is decided before visibility, so an agent who sees few
    # conversations does not send a common word through the whole history.
    common = select(func.count()).select_from(in_window).scalar_subquery() >= RARE_BELOW
    candidates = union_all(
        select(recent.c.id, recent.c.created_at, recent.c.search).where(common),
        select(everywhere.c.id, everywhere.c.created_at, everywhere.c.search).where(~common),
    ).subquery("candidates")
    # 2. Rank them and cut the page.
    rank = func.ts_rank_cd(candidates.c.search, query_ts)
    ranked = (
        select(candidates.c.id, candidates.c.created_at, rank.label("rank"))
        .order_by(rank.desc(), candidates.c.created_at.desc(), candidates.c.id.desc())
        .limit(bindparam("page_limit"))
        .offset(bindparam("page_offset"))
        .subquery("ranked")
    )
    # 3. Only the page's rows get their columns, refs and highlight.
    stripped_body = func.translate(Message.body, _START + _STOP, "")
    headline = func.ts_headline(_SIMPLE, stripped_body, query_ts, HEADLINE_OPTIONS)
    return (
        select(
            *MESSAGE_COLUMNS,
            ranked.c.rank,
            headline.label("highlight"),
            Conversation.channel.label("conv_channel"),
            Conversation.status.label("conv_status"),
            Conversation.assignee_id.label("conv_assignee_id"),
            Contact.id.label("contact_id"),
            Contact.name.label("contact_name"),
            Contact.channel.label("contact_channel"),
            Contact.phone.label("contact_phone"),
            Contact.email.label("contact_email"),
            Contact.avatar_url.label("contact_avatar_url"),
        )
        .select_from(ranked)
        .join(Message, (Message.id == ranked.c.id) & (Message.tenant_id == filters.tenant_id))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .order_by(ranked.c.rank.desc(), ranked.c.created_at.desc(), ranked.c.id.desc())
    )


_MESSAGE_KEYS = tuple(column.key for column in MESSAGE_COLUMNS)


def _hit(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": {k: row[k] for k in _MESSAGE_KEYS},
        "highlight": _highlight(row["highlight"]),
        "rank": float(row["rank"]),
        "conversation": {
            "id": row["conversation_id"],
            "channel": row["conv_channel"],
            "status": row["conv_status"],
            "assignee_id": row["conv_assignee_id"],
        },
        "contact": {
            "id": row["contact_id"],
            "name": row["contact_name"],
            "channel": row["contact_channel"],
            "phone": row["contact_phone"],
            "email": row["contact_email"],
            "avatar_url": row["contact_avatar_url"],
        },
    }
