"""Request shapes of the Quick Replies group."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, StringConstraints

from api.schemas.common import Input, ListQuery, Update
from api.schemas.notes import NoNul
from shared.inbox.quick_replies import MAX_CONTENT, MAX_TITLE, SHORTCUT, SHORTCUT_RULE


def _shortcut(value: str) -> str:
    if not SHORTCUT.fullmatch(value):
        raise ValueError(SHORTCUT_RULE)
    return value


#: Stored lower-case; any case is accepted.
Shortcut = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=64),
    AfterValidator(_shortcut),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE),
    NoNul,
]
Content = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CONTENT),
    NoNul,
]


class QuickReplyListQuery(ListQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    scope: Literal["personal", "shared"] | None = None
    #: Only the caller's favorites.
    favorites: bool = False
    #: ``shortcut`` (alphabetical) or ``most_used`` (tenant-wide usage, highest first).
    sort: Literal["shortcut", "most_used"] = "shortcut"


class QuickReplyCreate(Input):
    shortcut: Shortcut
    title: Title
    content: Content
    scope: Literal["personal", "shared"] = "personal"


class QuickReplyUpdate(Update):
    shortcut: Shortcut | None = None
    title: Title | None = None
    content: Content | None = None
