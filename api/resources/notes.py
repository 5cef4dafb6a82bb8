"""Notes: private notes on a conversation, never sent to the contact."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import Page
from api.schemas.notes import NoteCreate, NoteListQuery, NoteUpdate
from shared.inbox import notes
from shared.schemas.team import NoteView

TAGS = ("Notes",)


class NotesResource:
    @endpoint(
        "List notes for a conversation",
        query=NoteListQuery,
        response=Page[NoteView],
        description="Oldest first.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: NoteListQuery):
        page = notes.list_notes(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint("Create a note", body=NoteCreate, response=NoteView, status=201, tags=TAGS)
    def on_post(self, req, resp, *, ctx, id, body: NoteCreate):
        return notes.create_note(req.context.db, ctx, id, body=body.body)


class NoteResource:
    @endpoint(
        "Update a note",
        body=NoteUpdate,
        response=NoteView,
        description="Only the author may edit; the previous text is kept as a revision.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, note_id, body: NoteUpdate):
        return notes.update_note(req.context.db, ctx, id, note_id, body=body.body)

    @endpoint(
        "Delete a note",
        status=204,
        description="The author, or a holder of `conversations.manage`.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id, note_id):
        notes.delete_note(req.context.db, ctx, id, note_id)


ROUTES = [
    ("/api/conversations/{id:uuid}/notes", NotesResource()),
    ("/api/conversations/{id:uuid}/notes/{note_id:uuid}", NoteResource()),
]
