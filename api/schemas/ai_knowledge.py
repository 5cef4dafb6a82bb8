"""Request and answer shapes of knowledge sources and QnA pairs (AI Agents group)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from api.schemas.common import Input, ListQuery
from api.schemas.notes import NoNul
from shared.ai.knowledge.sources import MAX_ANSWER, MAX_QUESTION, MAX_TEXT, MAX_TITLE
from shared.schemas.base import View

Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE), NoNul
]
#: Which field each kind needs; the others must be left out.
_NEEDS = {"text": "content", "url": "url", "file": "media_id"}


class KnowledgeSourceCreate(Input):
    """``text`` with ``content``; ``url`` with ``url``; ``file`` with the ``media_id`` of an
    upload (``POST /api/media``). A file can also be sent directly as multipart/form-data."""

    kind: Literal["text", "url", "file"]
    #: Defaults to the URL or the file's name; required for ``text``.
    title: Title | None = None
    content: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT), NoNul] | None = (
        None
    )
    url: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=2048),
            NoNul,
        ]
        | None
    ) = None
    media_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> KnowledgeSourceCreate:
        needed = _NEEDS[self.kind]
        if getattr(self, needed) is None:
            raise ValueError(f"a {self.kind} source needs {needed}")
        extra = [name for name in _NEEDS.values() if name != needed and getattr(self, name)]
        if extra:
            raise ValueError(f"a {self.kind} source takes no {', '.join(extra)}")
        if self.kind == "text" and self.title is None:
            raise ValueError("a text source needs a title")
        return self


class KnowledgeSourceListQuery(ListQuery):
    """Newest first; ``cursor`` continues after the last source of a page."""


class KnowledgeSourceView(View):
    id: uuid.UUID
    ai_agent_id: uuid.UUID
    kind: Literal["text", "url", "file"]
    title: str
    url: str | None
    media_id: uuid.UUID | None
    #: ``pending`` -> ``processing`` -> ``ready`` | ``failed``.
    status: Literal["pending", "processing", "ready", "failed"]
    #: Why the last attempt failed (kept while a retry is pending).
    error: str | None
    chunk_count: int
    attempts: int
    processed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class QnaPairCreate(Input):
    question: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUESTION), NoNul
    ]
    answer: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ANSWER), NoNul
    ]


class QnaPairListQuery(ListQuery):
    """Newest first."""


class QnaPairView(View):
    id: uuid.UUID
    ai_agent_id: uuid.UUID
    source_id: uuid.UUID
    question: str
    answer: str
    created_at: dt.datetime
    updated_at: dt.datetime
