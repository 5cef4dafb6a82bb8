"""Quick replies: canned answers agents insert by shortcut.

A reply is ``personal`` (only its owner sees it; anyone else gets 404) or
``shared`` (the whole tenant sees it; changing it needs ``quick_replies.manage``).
Shortcuts are stored lower-case and unique per scope: per tenant for shared
replies, per owner for personal ones (the partial unique indexes of 0002).
Favorites and usage are per agent (``quick_reply_usage``); the reply also keeps
a tenant-wide ``usage_count``.

Shared replies also travel as CSV: :mod:`shared.inbox.quick_reply_csv`.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

from sqlalchemy import and_, false, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared import activity
from shared.automation import rules as automation_rules
from shared.automation.actions import QUICK_REPLIES
from shared.context import Ctx
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.models import QuickReply, QuickReplyUsage
from shared.pagination import InvalidCursor, Page
from shared.schemas.team import QuickReplyView
from shared.sql import contains_pattern, flush_unique, lock_key

MANAGE = "quick_replies.manage"
SCOPES = ("personal", "shared")
#: ``shortcut`` sorts alphabetically (the picker's order); ``most_used`` by tenant-wide uses.
SORTS = ("shortcut", "most_used")
SHORTCUT = re.compile(r"[a-z0-9_-]{1,64}")
SHORTCUT_RULE = "1 to 64 characters among a-z, 0-9, '_' and '-'"
MAX_TITLE = 200
MAX_CONTENT = 4096
#: The fields of a reply its owner may edit (also the CSV columns).
EDITABLE_FIELDS = ("shortcut", "title", "content")
#: Shared replies one workspace may have: one full CSV import (5,000 rows).
#: WHY: the list's search scans every reply the caller sees; it must stay a few thousand.
MAX_SHARED = 5000
#: Personal replies one agent may have, seen on top of the shared ones.
MAX_PERSONAL = 500


class QuickReplyLimitReached(ValidationFailed):
    code = "quick_reply_limit"


# --- validation -------------------------------------------------------------------------------


def check_shortcut(value: str) -> str | None:
    """Return why ``value`` (already normalized) is not a valid shortcut, or ``None``."""
    if not SHORTCUT.fullmatch(value):
        return SHORTCUT_RULE
    return None


def check_text(value: str, maximum: int) -> str | None:
    if not value:
        return "must not be blank"
    if len(value) > maximum:
        return f"at most {maximum} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    """Normalize and check ``shortcut``/``title``/``content`` when present; 422 on any error."""
    cleaned, details = {}, []
    for field, value in fields.items():
        if field == "shortcut":
            value = value.strip().lower()
            problem = check_shortcut(value)
        else:
            value = value.strip()
            problem = check_text(value, MAX_TITLE if field == "title" else MAX_CONTENT)
        if problem:
            details.append({"field": field, "message": problem})
        cleaned[field] = value
    if details:
        raise ValidationFailed("Some fields are invalid", details=details)
    return cleaned


def _shortcut_taken(shortcut: str) -> Conflict:
    return Conflict(
        f"A quick reply with shortcut '{shortcut}' exists in this scope",
        details=[{"field": "shortcut", "message": "already used in this scope"}],
    )


def lock_shared_shortcuts(session: Session, ctx: Ctx) -> None:
    """Serialize writers of the tenant's shared shortcuts (create, rename, import).

    NOTE: an import checks which shortcuts exist, then inserts; without this lock
    a concurrent create could slip in between and turn the insert into a 500.
    """
    lock_key(session, f"quick_replies:{ctx.tenant_id}")


def lock_personal_replies(session: Session, ctx: Ctx, owner_id: uuid.UUID) -> None:
    """Serialize creates of one agent's personal replies, so two cannot both pass the cap."""
    lock_key(session, f"quick_replies:personal:{owner_id}")


def count_replies(session: Session, ctx: Ctx, owner_id: uuid.UUID | None) -> int:
    """The workspace's shared replies (``owner_id`` None) or that agent's personal ones."""
    query = select(func.count()).where(QuickReply.tenant_id == ctx.tenant_id)
    if owner_id is None:
        query = query.where(QuickReply.scope == "shared")
    else:
        query = query.where(QuickReply.scope == "personal", QuickReply.owner_id == owner_id)
    return session.scalar(query)


def shared_limit(detail: dict[str, str]) -> QuickReplyLimitReached:
    return QuickReplyLimitReached(
        f"A workspace may have at most {MAX_SHARED} shared quick replies", details=[detail]
    )


def _check_room(session: Session, ctx: Ctx, owner_id: uuid.UUID | None) -> None:
    """422 ``quick_reply_limit`` when the scope is full; the caller holds its lock."""
    count = count_replies(session, ctx, owner_id)
    if owner_id is None and count >= MAX_SHARED:
        raise shared_limit(
            {"field": "body", "message": f"at most {MAX_SHARED} shared quick replies"}
        )
    if owner_id is not None and count >= MAX_PERSONAL:
        raise QuickReplyLimitReached(
            f"An agent may have at most {MAX_PERSONAL} personal quick replies",
            details=[
                {"field": "body", "message": f"at most {MAX_PERSONAL} personal quick replies"}
            ],
        )


def _flush_unique(session: Session, shortcut: str) -> None:
    """Flush pending changes; a shortcut taken meanwhile is a 409, not a 500."""
    flush_unique(
        session,
        ("uq_quick_replies_shared_shortcut", "uq_quick_replies_personal_shortcut"),
        _shortcut_taken(shortcut),
    )


# --- reads ------------------------------------------------------------------------------------


def _visible(ctx: Ctx):
    """Shared replies of the tenant and the caller's own personal ones."""
    mine = QuickReply.owner_id == ctx.user_id if ctx.user_id else false()
    return and_(QuickReply.tenant_id == ctx.tenant_id, or_(QuickReply.scope == "shared", mine))


def _items(ctx: Ctx):
    """Replies the caller sees, with their own favorite flag and usage (dicts: QuickReplyItem)."""
    usage = QuickReplyUsage
    joined = and_(
        usage.quick_reply_id == QuickReply.id,
        usage.user_id == ctx.user_id if ctx.user_id else false(),
    )
    return (
        select(
            QuickReply.id,
            QuickReply.scope,
            QuickReply.owner_id,
            QuickReply.shortcut,
            QuickReply.title,
            QuickReply.content,
            QuickReply.usage_count,
            QuickReply.last_used_at,
            QuickReply.created_at,
            QuickReply.updated_at,
            func.coalesce(usage.is_favorite, false()).label("is_favorite"),
            func.coalesce(usage.usage_count, 0).label("my_usage_count"),
            usage.last_used_at.label("my_last_used_at"),
        )
        .outerjoin(usage, joined)
        .where(_visible(ctx))
    )


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> list[Any]:
    """The sort key after which the page starts; the cursor must come from the same sort."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if values[0] != sort:
            raise ValueError("cursor of another sort")
        # NOTE: exact types: JSON may hold 1e400 (int() overflows) or a number for the id.
        if sort == "most_used":
            count, shortcut, row_id = values[1:4]
            if type(count) is not int or not isinstance(shortcut, str):
                raise ValueError("not a most_used cursor")
            if not -(2**31) <= count < 2**31:
                raise ValueError("not a usage count")  # the column is an integer
        else:
            shortcut, row_id = values[1:3]
            if not isinstance(shortcut, str):
                raise ValueError("not a shortcut cursor")
        if not isinstance(row_id, str):
            raise ValueError("the id is not a string")
        if "\x00" in shortcut:
            # NOTE: PostgreSQL text cannot hold NUL: the query would fail, not find nothing.
            raise ValueError("not a shortcut")
        # NOTE: nor can the driver encode a lone UTF-16 surrogate (UnicodeEncodeError, a
        # ValueError): the query failed to be sent, a 500.
        shortcut.encode()
        if sort == "most_used":
            return [count, shortcut, uuid.UUID(row_id)]
        return [shortcut, uuid.UUID(row_id)]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise InvalidCursor(
            "Invalid cursor", details=[{"field": "cursor", "message": "not a cursor"}]
        ) from exc


def list_quick_replies(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    q: str | None = None,
    scope: str | None = None,
    favorites: bool = False,
    sort: str = "shortcut",
) -> Page[dict[str, Any]]:
    """A page of the replies the caller sees, as dicts shaped like ``QuickReplyItem``.

    ``sort=shortcut`` (default) orders by shortcut then id; ``sort=most_used`` by the
    tenant-wide ``usage_count`` (highest first), then shortcut and id. Both are keyset
    paginated on their own sort key.

    PERF: the contains-filter scans the replies the caller sees: at most :data:`MAX_SHARED`
    shared and :data:`MAX_PERSONAL` of their own (enforced on create and import).
    """
    query = _items(ctx)
    if q:
        pattern = contains_pattern(q)
        query = query.where(
            QuickReply.shortcut.ilike(pattern)
            | QuickReply.title.ilike(pattern)
            | QuickReply.content.ilike(pattern)
        )
    if scope:
        query = query.where(QuickReply.scope == scope)
    if favorites:
        query = query.where(QuickReplyUsage.is_favorite.is_(True))
    if sort == "most_used":
        if cursor:
            count, shortcut, after_id = _decode(cursor, sort)
            query = query.where(
                or_(
                    QuickReply.usage_count < count,
                    and_(
                        QuickReply.usage_count == count,
                        tuple_(QuickReply.shortcut, QuickReply.id) > tuple_(shortcut, after_id),
                    ),
                )
            )
        query = query.order_by(QuickReply.usage_count.desc(), QuickReply.shortcut, QuickReply.id)
    else:
        if cursor:
            shortcut, after_id = _decode(cursor, "shortcut")
            query = query.where(
                tuple_(QuickReply.shortcut, QuickReply.id) > tuple_(shortcut, after_id)
            )
        query = query.order_by(QuickReply.shortcut, QuickReply.id)
    rows = [dict(row._mapping) for row in session.execute(query.limit(limit + 1))]
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        key = [last["shortcut"], str(last["id"])]
        if sort == "most_used":
            key.insert(0, last["usage_count"])
        next_cursor = _encode([sort, *key])
    return Page(items, next_cursor)


def _item(session: Session, ctx: Ctx, reply_id: uuid.UUID) -> dict[str, Any]:
    row = session.execute(_items(ctx).where(QuickReply.id == reply_id)).one_or_none()
    if row is None:
        raise NotFound("Quick reply not found")
    return dict(row._mapping)


def _get_reply(
    session: Session,
    ctx: Ctx,
    reply_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_share: bool = False,
) -> QuickReply:
    """A reply the caller sees; another agent's personal one is 404 (it is invisible).

    ``for_share``: kept until the caller commits, for a write that refers to the reply (a
    use, a favorite): a deletion running meanwhile waits for it, or it waits for the
    deletion and answers 404. Unlocked, its usage row failed on the foreign key (a 409).
    """
    query = select(QuickReply).where(_visible(ctx), QuickReply.id == reply_id)
    if for_update:
        query = query.with_for_update()
    elif for_share:
        # NOTE: KEY SHARE, which the use's own counter UPDATE does not conflict with: two
        # uses at once holding SHARE, each waiting to UPDATE, deadlocked.
        query = query.with_for_update(read=True, key_share=True)
    reply = session.scalars(query).one_or_none()
    if reply is None:
        raise NotFound("Quick reply not found")
    return reply


def _get_writable(session: Session, ctx: Ctx, reply_id: uuid.UUID) -> QuickReply:
    reply = _get_reply(session, ctx, reply_id, for_update=True)
    if reply.scope == "shared":
        ctx.require(MANAGE)
    return reply


def _require_user(ctx: Ctx) -> uuid.UUID:
    if ctx.user_id is None:
        raise Forbidden("Only agents have personal quick replies, favorites and usage")
    return ctx.user_id


# --- writes -----------------------------------------------------------------------------------


def create_quick_reply(
    session: Session,
    ctx: Ctx,
    *,
    shortcut: str,
    title: str,
    content: str,
    scope: str = "personal",
) -> dict[str, Any]:
    """Create a reply: any agent a personal one, ``quick_replies.manage`` a shared one."""
    if scope not in SCOPES:
        raise ValidationFailed.field("scope", f"one of {', '.join(SCOPES)}")
    if scope == "shared":
        ctx.require(MANAGE)
        owner_id = None
    else:
        owner_id = _require_user(ctx)
    fields = _clean({"shortcut": shortcut, "title": title, "content": content})
    if scope == "shared":
        lock_shared_shortcuts(session, ctx)
    else:
        lock_personal_replies(session, ctx, owner_id)
    _check_room(session, ctx, owner_id)
    reply = QuickReply(tenant_id=ctx.tenant_id, scope=scope, owner_id=owner_id, **fields)
    session.add(reply)
    _flush_unique(session, fields["shortcut"])
    session.refresh(reply)
    data = QuickReplyView.data(reply)
    activity.record(session, ctx, "quick_reply.created", "quick_reply", reply.id, after=data)
    return _item(session, ctx, reply.id)


def update_quick_reply(
    session: Session, ctx: Ctx, reply_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change ``shortcut``, ``title`` or ``content``: the owner, or a manager for shared ones."""
    unknown = changes.keys() - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationFailed.field(sorted(unknown)[0], "cannot be changed")
    fields = _clean(changes)
    if "shortcut" in fields:
        # NOTE: before the reply's row, in the order an import takes them (the lock, then
        # the rows it updates): taken after it, a rename and an import deadlocked.
        lock_shared_shortcuts(session, ctx)
    reply = _get_writable(session, ctx, reply_id)
    before = QuickReplyView.data(reply)
    for field, value in fields.items():
        setattr(reply, field, value)
    if session.is_modified(reply):
        _flush_unique(session, reply.shortcut)
        session.refresh(reply)
        after = QuickReplyView.data(reply)
        activity.record(
            session, ctx, "quick_reply.updated", "quick_reply", reply.id, before=before, after=after
        )
    return _item(session, ctx, reply.id)


def delete_quick_reply(session: Session, ctx: Ctx, reply_id: uuid.UUID) -> None:
    """Delete a reply (its per-agent usage rows cascade); the automation rules sending it
    forget it."""
    reply = _get_writable(session, ctx, reply_id)
    before = QuickReplyView.data(reply)
    automation_rules.forget_referent(session, ctx, QUICK_REPLIES, reply.id)
    session.delete(reply)
    activity.record(session, ctx, "quick_reply.deleted", "quick_reply", reply.id, before=before)


def record_usage(session: Session, ctx: Ctx, reply_id: uuid.UUID) -> dict[str, Any]:
    """Count one use by the caller: the tenant-wide counter and the caller's own."""
    user_id = _require_user(ctx)
    reply = _get_reply(session, ctx, reply_id, for_share=True)
    # NOTE: SQL-side increments, so concurrent uses never lose a count.
    session.execute(
        update(QuickReply)
        .where(QuickReply.id == reply.id)
        .values(usage_count=QuickReply.usage_count + 1, last_used_at=func.now())
        .execution_options(synchronize_session=False)
    )
    statement = pg_insert(QuickReplyUsage).values(
        tenant_id=ctx.tenant_id,
        quick_reply_id=reply.id,
        user_id=user_id,
        usage_count=1,
        last_used_at=func.now(),
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[QuickReplyUsage.quick_reply_id, QuickReplyUsage.user_id],
            set_={
                "usage_count": QuickReplyUsage.usage_count + 1,
                "last_used_at": func.now(),
            },
        )
    )
    activity.record(session, ctx, "quick_reply.used", "quick_reply", reply.id)
    return _item(session, ctx, reply.id)


def set_favorite(session: Session, ctx: Ctx, reply_id: uuid.UUID, favorite: bool) -> dict[str, Any]:
    """Set the caller's favorite flag; idempotent, and only a real change is logged."""
    user_id = _require_user(ctx)
    reply = _get_reply(session, ctx, reply_id, for_share=True)
    if favorite:
        statement = (
            pg_insert(QuickReplyUsage)
            .values(
                tenant_id=ctx.tenant_id, quick_reply_id=reply.id, user_id=user_id, is_favorite=True
            )
            .on_conflict_do_update(
                index_elements=[QuickReplyUsage.quick_reply_id, QuickReplyUsage.user_id],
                set_={"is_favorite": True},
                where=QuickReplyUsage.is_favorite.is_(False),
            )
        )
    else:
        # NOTE: no usage row means "not a favorite" already: nothing to insert.
        statement = (
            update(QuickReplyUsage)
            .where(
                QuickReplyUsage.quick_reply_id == reply.id,
                QuickReplyUsage.user_id == user_id,
                QuickReplyUsage.is_favorite.is_(True),
            )
            .values(is_favorite=False)
        )
    changed = session.execute(statement.returning(QuickReplyUsage.user_id)).first()
    if changed is not None:
        action = "quick_reply.favorited" if favorite else "quick_reply.unfavorited"
        activity.record(
            session, ctx, action, "quick_reply", reply.id, after={"is_favorite": favorite}
        )
    return _item(session, ctx, reply.id)
