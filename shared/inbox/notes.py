"""Private notes on a conversation: written by agents, never sent to the contact.

Every function first resolves the conversation through
:func:`shared.inbox.access.get_conversation`, so a note of a conversation the
caller may not see answers 404 exactly like one that does not exist.

Notes list oldest first (they read as a thread) with keyset pagination on
``(created_at, id)``: notes per conversation are few, but a bounded list would
silently drop the tail of a long one, and the index
``ix_notes_conversation (tenant_id, conversation_id, created_at, id)`` serves
the ascending range scan directly.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.db import fetch_rows
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.inbox.access import EVERYTHING, get_conversation, visibility, visible_bound
from shared.models import Conversation, Note, NoteRevision, User
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.schemas.team import NoteView
from shared.sql import tenant_row

#: Longest note body, in characters.
MAX_BODY = 10_000

_NOTE_COLUMNS = (
    Note.id,
    Note.conversation_id,
    User.id.label("author_id"),
    User.full_name.label("author_name"),
    Note.body,
    Note.edited_at,
    Note.created_at,
    Note.updated_at,
)


def _shape(row: Any) -> dict[str, Any]:
    """A ``(note, author)`` row (its mapping) as a plain dict shaped like :class:`NoteView`."""
    data = dict(row)
    data["author"] = {"id": data.pop("author_id"), "full_name": data.pop("author_name")}
    return data


def _notes(ctx: Ctx, conversation_id: uuid.UUID):
    # NOTE: the author is joined without a deleted_at filter: a deleted agent's
    # notes stay readable and keep their name.
    return (
        select(*_NOTE_COLUMNS)
        .join(User, User.id == Note.author_id)
        .where(Note.tenant_id == ctx.tenant_id, Note.conversation_id == conversation_id)
    )


def _clean_body(body: str) -> str:
    """Trim and check a note body (workers and automation call us without the API's schema)."""
    body = body.strip()
    if not body:
        raise ValidationFailed.field("body", "must not be blank")
    if len(body) > MAX_BODY:
        raise ValidationFailed.field("body", f"at most {MAX_BODY} characters")
    if "\x00" in body:
        raise ValidationFailed.field("body", "must not contain NUL characters")
    return body


def _author_id(ctx: Ctx) -> uuid.UUID:
    if ctx.user_id is None:
        raise Forbidden("Notes are written and edited by agents")
    return ctx.user_id


def list_notes(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of the conversation's notes, oldest first, as dicts shaped like ``NoteView``."""
    get_conversation(session, ctx, conversation_id)
    query = _notes(ctx, conversation_id)
    if cursor:
        after = decode_cursor(cursor)
        query = query.where(tuple_(Note.created_at, Note.id) > tuple_(*after))
    rows = session.execute(query.order_by(Note.created_at, Note.id).limit(limit + 1)).all()
    items = [_shape(row._mapping) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(items[-1]["created_at"], items[-1]["id"])
    return Page(items, next_cursor)


def _note_data(session: Session, ctx: Ctx, note: Note) -> dict[str, Any]:
    """The note as its GET shows it, read back after the pending change is flushed."""
    session.flush()
    # NOTE: no refresh of ``note``: the row below carries every column (and the author).
    row = session.execute(_notes(ctx, note.conversation_id).where(Note.id == note.id)).one()
    return NoteView.data(_shape(row._mapping))


def _get_note(session: Session, ctx: Ctx, conversation_id: uuid.UUID, note_id: uuid.UUID) -> Note:
    """The note, locked for the change, of a conversation the caller may see; else 404."""
    get_conversation(session, ctx, conversation_id)
    return tenant_row(
        session,
        Note,
        ctx.tenant_id,
        note_id,
        Note.conversation_id == conversation_id,
        missing="Note not found",
        lock=True,
    )


def create_note(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, *, body: str
) -> dict[str, Any]:
    """Add a note by the calling agent; emits ``note.created`` with the note as data."""
    author_id = _author_id(ctx)
    body = _clean_body(body)
    note_id = uuid.uuid4()
    shape, params = visibility(ctx)
    # PERF: on the driver's cursor (db.fetch_rows), not through SQLAlchemy's execution.
    rows = fetch_rows(
        session.connection(),
        _insert_note_statement(shape),
        params
        | {
            "id": note_id,
            "tenant_id": ctx.tenant_id,
            "conversation_id": conversation_id,
            "author_id": author_id,
            "body": body,
        },
    )
    if not rows:
        raise NotFound("Conversation not found")
    (row,) = rows
    data = NoteView.data(_shape(zip(_INSERTED_KEYS, row, strict=True)))
    activity.record_change(session, ctx, "note.created", "note", note_id, data, after=data)
    return data


@functools.cache
def _insert_note_statement(shape: str):
    """``INSERT`` a note on a conversation the caller may see (``shape``:
    :func:`~shared.inbox.access.visibility`) and read it back with its author, in one
    statement; no row when the conversation is not one the caller may see.

    PERF: built once per shape. Adding a note cost ~5 ms CPU through the ORM (the
    conversation loaded as an object, the note's flush, then a second query for the note
    and its author); then a visibility probe and the insert; now one round trip.
    """
    table = Note.__table__
    conversations = Conversation.__table__
    visible = select(
        *(bindparam(name, type_=table.c[name].type) for name in _BOUND),
        conversations.c.id,
    ).where(
        visible_bound(shape),
        conversations.c.id == bindparam("conversation_id", type_=conversations.c.id.type),
    )
    inserted = (
        insert(table)
        .from_select([*_BOUND, "conversation_id"], visible)
        .returning(*table.c)
        .cte("inserted")
    )
    return select(
        inserted.c.id,
        inserted.c.conversation_id,
        User.id.label("author_id"),
        User.full_name.label("author_name"),
        inserted.c.body,
        inserted.c.edited_at,
        inserted.c.created_at,
        inserted.c.updated_at,
    ).join(User, User.id == inserted.c.author_id)


#: The columns a new note is given from bind parameters (its conversation_id comes from
#: the visible conversation's row; the rest are the table's defaults).
_BOUND = ("id", "tenant_id", "author_id", "body")
_INSERTED_KEYS = tuple(_insert_note_statement(EVERYTHING).selected_columns.keys())


def update_note(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID, note_id: uuid.UUID, *, body: str
) -> dict[str, Any]:
    """Change a note's text (author only), keeping the previous text as a revision.

    Sending the current text again changes nothing and records nothing.
    """
    editor_id = _author_id(ctx)
    body = _clean_body(body)
    note = _get_note(session, ctx, conversation_id, note_id)
    if note.author_id != editor_id:
        raise Forbidden("Only the author may edit a note")
    before = _note_data(session, ctx, note)
    if note.body == body:
        return before
    session.add(
        NoteRevision(tenant_id=ctx.tenant_id, note_id=note.id, body=note.body, editor_id=editor_id)
    )
    note.body = body
    note.edited_at = func.now()
    after = _note_data(session, ctx, note)
    activity.record(session, ctx, "note.updated", "note", note.id, before=before, after=after)
    return after


def delete_note(session: Session, ctx: Ctx, conversation_id: uuid.UUID, note_id: uuid.UUID) -> None:
    """Delete a note: its author, or a moderator holding ``conversations.manage``."""
    note = _get_note(session, ctx, conversation_id, note_id)
    if not ctx.is_self(note.author_id) and not ctx.can("conversations.manage"):
        raise Forbidden("Only the author or a holder of 'conversations.manage' may delete a note")
    before = _note_data(session, ctx, note)
    session.delete(note)
    activity.record(session, ctx, "note.deleted", "note", note.id, before=before)
