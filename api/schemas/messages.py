"""Messages: the list query, an outbound send and the search query."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from api.schemas.common import Input, ListQuery
from shared.models.inbox import CHANNELS

Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]
TemplateName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)
]
Language = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")
]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class TemplateRef(Input):
    """A WhatsApp template: sent as-is to the provider by the channel worker."""

    name: TemplateName
    language: Language
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=20)


class MessageCreate(Input):
    body: Body | None = None
    template: TemplateRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MessageCreate:
        if (self.body is None) == (self.template is None):
            raise ValueError("send exactly one of body or template")
        return self


class MessageSearchQuery(ListQuery):
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    channel: Channel | None = None
    conversation_id: uuid.UUID | None = None
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None
    sender_type: Literal["contact", "user", "ai_agent", "automation", "system"] | None = None
