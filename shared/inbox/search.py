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
import time
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    Select,
    Subquery,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import ValidationFailed
from shared.inbox.access import EVERYTHING, get_conversation, visibility, visible_bound
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
#: A rare query is read through the full-text index when its words' summed frequency d
#: (column statistics) over the table's T rows has d * d * T <= HISTORY_INDEX_SCALE, i.e.
#: d <= sqrt(MAX_RESULTS / T): there, reading its every match (d * T) costs about what the
#: rows newer than its MAX_RESULTS-th match (MAX_RESULTS / d) cost. See _history_statement.
HISTORY_INDEX_SCALE = MAX_RESULTS
#: The time rings a common history is read in, newest first: hours before ``to`` (or
#: now), each 4 times the last, then everything older (see _history_statement).
HISTORY_RINGS = (2, 8, 32, 128, 512, 2048)
#: A query the column statistics expect in at most this many messages (all tenants) is
#: first read through the full-text index, its matches counted up to RARE_BELOW: fewer
#: are the whole answer, without the window's scan (see _rare_statement). Two windows'
#: worth: the statistics guess every word they do not track at half the frequency of
#: the rarest one they do (on the bench's data ~10,600 messages, for an order reference
#: in 3), and the bitmap of a word really that common costs about one window's scan.
PROBE_MATCHES = 2 * RECENT_WINDOW
#: Seconds a query the statistics called common skips the probe (see _KnownCommon).
KNOWN_COMMON_SECONDS = 600.0
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
        if type(offset) is not int or not 0 < offset < MAX_RESULTS:  # not a bool either
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

    def until(self):
        return self._value("until", Message.created_at)

    def dates(self, m) -> list:
        clauses = []
        if "since" in self.present:
            clauses.append(m.created_at >= self._value("since", m.created_at))
        if "until" in self.present:
            clauses.append(m.created_at < self._value("until", m.created_at))
        return clauses

    def matches(self, m, *, indexed: bool = True) -> Select:
        """Rows of ``m`` (``messages`` or a window over it) matching the query and the filters.

        ``indexed=False`` writes the match so that no full-text index can serve it.
        """
        search = m.search if indexed else func.coalesce(m.search, literal_column("''::tsvector"))
        query = select(m.id, m.conversation_id, m.created_at, m.search).where(
            m.tenant_id == self.tenant_id, search.bool_op("@@")(self.query_ts)
        )
        query = query.where(*self.dates(m))
        for name in ("channel", "conversation_id", "sender_type"):
            if name in self.present:
                query = query.where(m[name] == self._value(name, m[name]))
        return query

    def newest_visible(self, m) -> Select:
        """The newest MAX_RESULTS of ``m``'s rows in conversations the caller may see.

        PERF: visibility is probed once per conversation of the candidates, by primary
        key: the candidates' distinct conversations as one array, looked up with
        ``id = ANY(...)`` into a MATERIALIZED CTE the candidates are then joined with.
        The planner can only read that through ``pk_conversations`` (a bitmap of the
        array's ids, the rows' pages in order), whatever it guesses of the array's size.
        As a plain join, for an agent without ``conversations.manage`` the planner
        hash-joined the few hundred candidates with every conversation the agent may
        see (a bitmap scan of ~25,000 rows, 20-30 ms of the query). Probed per row, the
        estimate grew with the query's estimated matches (10,000 probes for ``-word``)
        until the plan cost enough to be JIT-compiled (~100 ms). Not materialized, the
        probes sat inside a semi-join the planner rescanned per candidate when it
        misjudged a phrase as one match ("where is my order": 125,000 probes, 240 ms).
        One LATERAL probe per conversation (LIMIT 1 each) cost more: an agent's "thanks"
        (678 conversations) 3.0 against 2.3 ms; the statement also lost a bind parameter
        and ~130 bytes, which brought the window's under psycopg's 4 KB cache limit (an
        agent's searches -8 % app CPU, -2 % PostgreSQL CPU, ``--profile-ab``).

        A caller who sees the whole tenant (``conversations.manage``) needs no probe: the
        candidates are the tenant's messages, and :func:`_page` joins each hit's
        conversation on the tenant too. PERF: for a common word that was ~1,000 probes
        (2.5-3 ms, a quarter of the statement) to keep every candidate.
        """
        newest = (
            select(m.id, m.created_at, m.search)
            .order_by(m.created_at.desc(), m.id.desc())
            .limit(MAX_RESULTS)
        )
        if self.shape == EVERYTHING:
            return newest
        seen = func.array(
            select(m.conversation_id).distinct().scalar_subquery(),
            type_=postgresql.ARRAY(Conversation.id.type),
        )
        visible_ids = (
            select(Conversation.id.label("conversation_id"))
            .where(Conversation.id == any_(seen), visible_bound(self.shape))
            .cte("visible")
            .prefix_with("MATERIALIZED")
        )
        return newest.where(m.conversation_id.in_(select(visible_ids.c.conversation_id)))


class _KnownCommon:
    """Queries the column statistics last called common: they skip the probe.

    PERF: the probe costs a common query ~1 ms (its planning, the statistics' lookup)
    for nothing, and agents search for the same words all day. Only the cost depends on
    an entry, never the answer (every path ranks the same candidates), so an entry may
    go stale and needs no lock: it lapses after KNOWN_COMMON_SECONDS (an ANALYZE may
    have called the query rare since), and a full set is emptied, as AccountCache is.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self._until: dict[str, float] = {}

    def __contains__(self, q: str) -> bool:
        until = self._until.get(q)
        return until is not None and until > time.monotonic()

    def add(self, q: str) -> None:
        if len(self._until) >= self.size:
            self._until.clear()
        self._until[q] = time.monotonic() + KNOWN_COMMON_SECONDS

    def clear(self) -> None:
        self._until.clear()


_KNOWN_COMMON = _KnownCommon()


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
    history. Either way the caller's visibility applies to these candidates. Ranking
    every match of a common word means reading every matching row (90,000 of a
    1M-message tenant for "refund": over a second).
    PERF: a query the statistics call rare is first counted through the full-text index
    (:func:`_rare_statement`): fewer than RARE_BELOW matches in all history are the
    answer, in one statement (an order reference, quiet: 2.6 ms against 10.9 ms for the
    window's scan and then the history's). Otherwise one statement for a common query
    (:func:`_recent_statement`, which also counts the window's matches); a rare one runs
    another (:func:`_history_statement`, its cost bounded whether the word is rare or
    common in the history). Separate statements,
    not one whose branches One-Time Filters pick:
    PostgreSQL plans and costs both branches of such a statement, and the whole-history
    branch, planned for a word's estimated matches, went parallel, or walked the
    history newest first, or cost enough to be JIT-compiled (~100 ms to 2 s) for a
    common word whose branch never ran. Statements are built once per visibility shape
    and combination of filters and run on the driver.
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
    rows = _rare_rows(session, shape, present, binds)
    if rows is None:
        rows = _rows(session, _recent_statement(shape, present), binds)
        if rows[0]["window_matches"] < RARE_BELOW:
            rows = _rows(session, _history_statement(shape, present), binds)
    rows = [row for row in rows if row["id"] is not None]
    items = [_hit(row) for row in rows[:limit]]
    next_offset = offset + limit
    next_cursor = None
    if len(rows) > limit and next_offset < MAX_RESULTS:
        next_cursor = _encode_cursor(next_offset, fingerprint)
    return Page(items, next_cursor)


def _rare_rows(
    session: Session, shape: str, present: frozenset[str], binds: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """The page's rows if the query has fewer than RARE_BELOW matches in all history and
    the statistics let the probe count them (:func:`_rare_statement`); else None."""
    q = binds["q"]
    if q in _KNOWN_COMMON:
        return None
    rows = _rows(session, _rare_statement(shape, present), binds)
    if not rows[0]["probed"]:
        _KNOWN_COMMON.add(q)
        return None
    return rows if rows[0]["matches"] < RARE_BELOW else None


def _rows(session: Session, statement: Select, binds: dict[str, Any]) -> list[dict[str, Any]]:
    keys = tuple(statement.selected_columns.keys())
    return [
        dict(zip(keys, row, strict=True))
        for row in fetch_rows(session.connection(), statement, binds)
    ]


@functools.lru_cache(maxsize=128)
def _recent_statement(shape: str, present: frozenset[str]) -> Select:
    """The page among the newest matches, and how many matches the window holds.

    Candidates are the newest MAX_RESULTS visible matches among the tenant's newest
    RECENT_WINDOW messages (a bounded backward scan of ix_messages_tenant_created,
    within ``from``/``to``). The first column, ``window_matches``, counts the window's
    matches before visibility (for a caller who sees everything, up to MAX_RESULTS); the
    one row with no hit columns stands for an empty page.
    NOTE: rare or common is decided before visibility, so an agent who sees few
    conversations does not send a common word through the whole history. It is decided
    by what the window holds, not by the planner's estimate: the planner misjudges
    phrases and correlated words ("wrong size": estimated 2,000 matches, actually
    48,000) and would then read every match through the GIN index.
    PERF: built once per shape and filters (building cost ~5 ms of Python per search).
    """
    filters = _Filters(shape, present)
    window = (
        select(
            Message.id,
            Message.tenant_id,
            Message.conversation_id,
            Message.created_at,
            Message.search,
            # PERF: only the columns a filter needs: the statement stays under psycopg's
            # 4 KB cache limit (its SQL is not re-parsed for placeholders per search).
            *(Message.__table__.c[name] for name in ("channel", "sender_type") if name in present),
        )
        .where(Message.tenant_id == filters.tenant_id)
        .where(*filters.dates(Message))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(RECENT_WINDOW)
        .subquery("window")
    )
    in_window = filters.matches(window.c)
    if shape == EVERYTHING:
        # PERF: a caller who sees the whole tenant ranks the window's newest MAX_RESULTS
        # matches, so the window's scan stops at the MAX_RESULTS-th: a word in half the
        # messages reads ~2,000 rows, not 10,000 (a word in all of them, on the bench's
        # data: 2.8 against 8.3-10.7 ms a search, the same page). The count stops there
        # too, far above RARE_BELOW. An agent's candidates are the newest *visible*
        # matches, so an agent's search still reads the whole window.
        in_window = in_window.order_by(window.c.created_at.desc(), window.c.id.desc()).limit(
            MAX_RESULTS
        )
    in_window = in_window.cte("recent")
    count = select(func.count().label("window_matches")).select_from(in_window).subquery()
    page = _page(filters, filters.newest_visible(in_window.c).subquery("candidates"))
    return (
        select(count.c.window_matches, *page.c)
        .select_from(count)
        .outerjoin(page, true())
        .order_by(page.c.rank.desc(), page.c.created_at.desc(), page.c.id.desc())
    )


# How common a query is, from the column's statistics: the summed frequencies of its
# words (each word's most-common-element frequency, or half the smallest one kept when
# it is not among them, as the planner takes it), an upper bound of the share of rows
# that match for AND, OR, phrases and negations alike (the planner multiplies a phrase's
# frequencies: 2,000 matches estimated for "wrong size", 48,000 real). No statistics (a
# new table): 0.
_FREQUENCY = """(SELECT coalesce(sum(coalesce(s.freqs[array_position(s.words, w)],
                                   s.freqs[cardinality(s.words) + 1] / 2)), 0)
      FROM (SELECT most_common_elems::text::text[] AS words,
                   most_common_elem_freqs AS freqs
              FROM pg_stats
             WHERE schemaname = current_schema() AND tablename = 'messages'
               AND attname = 'search') AS s,
           unnest(tsvector_to_array(to_tsvector('simple',
               querytree(websearch_to_tsquery('simple', :q))))) AS w)"""
_ROWS = "(SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'messages'::regclass)"
# Whether every term of the query can be looked up in the index: ``querytree`` drops
# negated terms (``-word``, ``a or -b``), whose matches only a full index scan (GIN) or a
# table scan find. Their frequency says how few messages they exclude, not how few match.
_NOTHING_NEGATED = """numnode(querytree(websearch_to_tsquery('simple', :q))::tsquery)
                      = numnode(websearch_to_tsquery('simple', :q))"""


def _on_query(condition: str):
    """A SQL condition over the search's ``:q`` (as _FREQUENCY and _NOTHING_NEGATED read it)."""
    return text(condition).bindparams(bindparam("q", type_=Message.body.type))


def _through_index(negate: bool = False):
    """The history's choice: the frequency squared times the rows, against HISTORY_INDEX_SCALE."""
    condition = f"{_FREQUENCY} ^ 2 * {_ROWS} <= {HISTORY_INDEX_SCALE}"
    return _on_query(f"NOT ({condition})" if negate else condition)


@functools.lru_cache(maxsize=128)
def _rare_statement(shape: str, present: frozenset[str]) -> Select:
    """The page among every match of a query the statistics call rare, if it has few.

    Columns ``probed`` (the statistics expect at most :data:`PROBE_MATCHES` matches and
    no term is negated, so they were read) and ``matches`` (counted up to
    :data:`RARE_BELOW`) come first; the page follows only when both say the query is
    rare: then its matches in the window are fewer than RARE_BELOW too, so
    :func:`search_messages` would have ranked the newest MAX_RESULTS of every match,
    which is all of them: the same page as the window's and the history's statements
    give, without their scans (order references, names, typos: 30 % of the inbox mix's
    searches). A negated term (``-word``, ``a or -b``) is never probed: its matches are
    most messages, found by a full scan of the index or of the table, where the window
    stops at RECENT_WINDOW rows (before, such a query always filled the window).
    PERF: the matches are a MATERIALIZED CTE read through the GIN index (a bitmap of the
    tenant's matches, ~0.6 us each) and pulled only as far as the count's LIMIT: a
    bitmap heap scan under a plain LIMIT was planned as a sequential scan of the table
    (0.7 s for a reference). The statistics' bound keeps the bitmap small when the query
    turns out common after all (then ~1-10 ms are spent before the window's statement).
    A query the statistics call common costs ~1.1 ms here (planning, mostly), once per
    :data:`KNOWN_COMMON_SECONDS` (:class:`_KnownCommon`).
    NOTE: statistics older than a word's rise call it rare: until the next ANALYZE each
    of its searches builds the bitmap of all its matches first (~0.6 us a match).
    """
    filters = _Filters(shape, present)
    m = Message.__table__.c
    expected_few = _on_query(f"{_FREQUENCY} * {_ROWS} <= {PROBE_MATCHES} AND {_NOTHING_NEGATED}")
    guard = select(type_coerce(expected_few, Boolean).label("probed")).cte("guard")
    probed = select(guard.c.probed).scalar_subquery()
    every = filters.matches(m).where(probed).cte("every").prefix_with("MATERIALIZED")
    counted = select(every.c.id).limit(RARE_BELOW).subquery("counted")
    count = select(func.count().label("matches")).select_from(counted).cte("count")
    few = select(count.c.matches).scalar_subquery() < RARE_BELOW
    candidates = filters.newest_visible(every.c).where(few).subquery("candidates")
    page = _page(filters, candidates)
    return (
        select(guard.c.probed, count.c.matches, *page.c)
        .select_from(guard)
        .join(count, true())
        .outerjoin(page, true())
        .order_by(page.c.rank.desc(), page.c.created_at.desc(), page.c.id.desc())
    )


@functools.lru_cache(maxsize=128)
def _history_statement(shape: str, present: frozenset[str]) -> Select:
    """The page among the query's newest MAX_RESULTS matches in the whole history.

    Run only for a rare query (few matches in the window). A GIN bitmap scan reads a
    word's every match (~1 us each here, before a LIMIT can stop it), so the index
    serves only a query the statistics call uncommon (``_FREQUENCY``, below
    HISTORY_INDEX_SCALE): all its matches, the newest MAX_RESULTS kept. Any other is
    read in time rings, newest first (:data:`HISTORY_RINGS` hours before ``to``, or
    now, then everything older), through ``ix_messages_tenant_created`` only (the
    match is written so that the GIN index cannot serve it); each ring a MATERIALIZED
    CTE sorted newest first,
    their UNION ALL under ``LIMIT MAX_RESULTS``, which stops pulling: the rings older
    than the one that completes the candidates never run. Same candidates as one
    ``ORDER BY created_at DESC LIMIT`` over every match; the cost is the rows newer
    than the MAX_RESULTS-th match (up to 4 times that, a ring's overshoot), never
    every match. One-Time Filters run one of the two; the other costs its planning.
    NOTE: visibility is applied to these candidates, as to the window's: an agent who
    sees few conversations gets the visible ones among them, not a walk through the
    whole history until MAX_RESULTS visible matches (the old plan: 0.36 s a search on
    a database whose newest rows were the bench's replies, 1.3 s for a phrase).
    """
    filters = _Filters(shape, present)
    m = Message.__table__.c
    every = filters.matches(m).cte("every").prefix_with("MATERIALIZED")
    indexed = (
        select(every.c)
        .where(_through_index())
        .order_by(every.c.created_at.desc(), every.c.id.desc())
        .limit(MAX_RESULTS)
    )
    anchor = filters.until() if "until" in present else func.now()
    edges = [anchor - literal_column(f"interval '{hours} hours'") for hours in HISTORY_RINGS]
    rings = []
    for index in range(len(edges) + 1):
        ring = filters.matches(m, indexed=False)
        if index < len(edges):
            ring = ring.where(m.created_at >= edges[index])
        if index:
            ring = ring.where(m.created_at < edges[index - 1])
        ring = ring.cte(f"ring{index}").prefix_with("MATERIALIZED")
        rings.append(select(ring.c).order_by(ring.c.created_at.desc(), ring.c.id.desc()))
    ringed = union_all(*rings).limit(MAX_RESULTS).subquery("ringed")
    newest = union_all(indexed, select(ringed.c).where(_through_index(negate=True))).cte("newest")
    page = _page(filters, filters.newest_visible(newest.c).subquery("candidates"))
    return select(*page.c).order_by(page.c.rank.desc(), page.c.created_at.desc(), page.c.id.desc())


def _page(filters: _Filters, candidates) -> Subquery:
    """Rank the candidates and cut the page; only the page's rows get their columns.

    PERF: ``ts_headline`` (the costly part: it re-parses the body) runs on the page only.
    """
    rank = func.ts_rank_cd(candidates.c.search, filters.query_ts)
    ranked = (
        select(candidates.c.id, candidates.c.created_at, rank.label("rank"))
        .order_by(rank.desc(), candidates.c.created_at.desc(), candidates.c.id.desc())
        .limit(bindparam("page_limit"))
        .offset(bindparam("page_offset"))
        .subquery("ranked")
    )
    stripped_body = func.translate(Message.body, _START + _STOP, "")
    headline = func.ts_headline(_SIMPLE, stripped_body, filters.query_ts, HEADLINE_OPTIONS)
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
        .join(
            Conversation,
            (Conversation.id == Message.conversation_id)
            & (Conversation.tenant_id == filters.tenant_id),
        )
        .join(Contact, Contact.id == Conversation.contact_id)
        .subquery("hit")
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
