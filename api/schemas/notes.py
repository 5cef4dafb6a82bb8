"""Request shapes of the Notes group."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from api.schemas.common import Input, ListQuery
from shared.inbox.notes import MAX_BODY


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: NOTE: PostgreSQL text cannot hold NUL; refusing it in the schema makes it a 422, not a 500.
NoNul = AfterValidator(_no_nul)

NoteBody = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BODY), NoNul
]


class NoteListQuery(ListQuery):
    """Notes list oldest first; ``cursor`` continues after the last note of a page."""


class NoteCreate(Input):
    body: NoteBody


class NoteUpdate(Input):
    body: NoteBody
