"""Request shapes of the WA Templates group.

The schema checks the shape; :mod:`shared.channels.templates.components` checks what
the components mean (types, lengths, variables) and names each bad field.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, HttpUrl, StringConstraints

from api.schemas.common import Input, ListQuery
from shared.channels.templates.components import LANGUAGE, LANGUAGE_RULE, NAME, NAME_RULE


def _matches(pattern, rule: str):
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


TemplateName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=512), _matches(NAME, NAME_RULE)
]
TemplateLanguage = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=16),
    _matches(LANGUAGE, LANGUAGE_RULE),
]
Category = Literal["MARKETING", "UTILITY", "AUTHENTICATION"]
Status = Literal[
    "APPROVED",
    "PENDING",
    "REJECTED",
    "PAUSED",
    "DISABLED",
    "IN_APPEAL",
    "PENDING_DELETION",
    "DELETED",
    "ARCHIVED",
    "LIMIT_EXCEEDED",
]


def _https(value: HttpUrl) -> str:
    if value.scheme != "https":
        raise ValueError("an https URL")
    return str(value)


MediaUrl = Annotated[HttpUrl, AfterValidator(_https)]


class WaTemplateListQuery(ListQuery):
    integration_account_id: uuid.UUID | None = None
    status: Status | None = None
    category: Category | None = None
    language: TemplateLanguage | None = None
    #: Part of the template's name.
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class WaTemplateCreate(Input):
    integration_account_id: uuid.UUID
    name: TemplateName
    language: TemplateLanguage
    category: Category
    #: Meta's components: HEADER, BODY (required), FOOTER, BUTTONS.
    components: list[dict[str, Any]] = Field(min_length=1, max_length=4)
    parameter_format: Literal["POSITIONAL", "NAMED"] = "POSITIONAL"
    #: Let Meta move the template to the category its content calls for.
    allow_category_change: bool = True


class WaTemplateSyncRequest(Input):
    #: One account; without it, every WhatsApp account of the tenant.
    integration_account_id: uuid.UUID | None = None


class HeaderMediaUpdate(Input):
    #: An https URL of the header's image, video or document; ``null`` removes it.
    header_media_url: MediaUrl | None
