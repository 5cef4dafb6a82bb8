"""Messages: the list query, an outbound send and the search query."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from api.schemas.common import Input, Instant, ListQuery
from shared.models.inbox import CHANNELS

Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]
TemplateName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)
]
#: A template's language as Meta names it (``en_US``, ``pt_BR``), no longer than the
#: stored templates' column.
Language = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"
    ),
]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class TemplateRef(Input):
    """A WhatsApp template: sent as-is to the provider by the channel worker."""

    name: TemplateName
    language: Language
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=20)


class AttachmentRef(Input):
    """A file uploaded with ``POST /api/media`` (or an inbound file already fetched)."""

    media_id: uuid.UUID


class MessageCreate(Input):
    body: Body | None = None
    template: TemplateRef | None = None
    #: Files to send: one on WhatsApp (``body`` is its caption), Messenger and Instagram
    #: (without ``body``); up to 10 on email.
    attachments: list[AttachmentRef] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _exactly_one(self) -> MessageCreate:
        if self.template is not None and (self.body is not None or self.attachments):
            raise ValueError("a template is sent alone, without body or attachments")
        if self.template is None and self.body is None and not self.attachments:
            raise ValueError("send a body, a template or attachments")
        return self


class MessageSearchQuery(ListQuery):
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    channel: Channel | None = None
    conversation_id: uuid.UUID | None = None
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None
    sender_type: Literal["contact", "user", "ai_agent", "automation", "system"] | None = None
