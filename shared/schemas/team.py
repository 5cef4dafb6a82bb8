"""Representations of what agents share as a team: notes, quick replies and divisions.

GET endpoints answer these shapes and the activity log / events carry them, so a
webhook receiver sees a note exactly as ``GET .../notes`` shows it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from shared.schemas.base import View


class AuthorRef(View):
    id: uuid.UUID
    full_name: str


class NoteView(View):
    id: uuid.UUID
    conversation_id: uuid.UUID
    author: AuthorRef
    body: str
    #: When the author last changed the text; ``None`` if never edited.
    edited_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class QuickReplyView(View):
    """A quick reply itself, the same for every caller (activity logs carry this)."""

    id: uuid.UUID
    scope: str
    #: The owner of a ``personal`` reply; ``None`` for ``shared`` ones.
    owner_id: uuid.UUID | None
    shortcut: str
    title: str
    content: str
    #: Uses by every agent of the tenant.
    usage_count: int
    last_used_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class QuickReplyItem(QuickReplyView):
    """A quick reply as the calling agent sees it: with their own favorite flag and usage."""

    is_favorite: bool
    my_usage_count: int
    my_last_used_at: dt.datetime | None


class ImportResult(View):
    created: int
    updated: int
    unchanged: int


class AgentRef(View):
    id: uuid.UUID
    email: str
    full_name: str
    avatar_url: str | None
    status: str


class DivisionView(View):
    id: uuid.UUID
    name: str
    description: str
    #: Live (not deleted) agents in the division.
    agent_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class DivisionDetail(DivisionView):
    """A division with its live agents (``GET /api/divisions/{id}/agents`` pages them)."""

    agents: list[AgentRef]
