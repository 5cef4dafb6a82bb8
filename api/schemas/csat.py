"""CSAT: the public rating body, the analytics filters and the settings body."""

from __future__ import annotations

import uuid

from pydantic import Field, StrictInt

from api.schemas.common import DayParam, Input, Query

MAX_COMMENT_CHARS = 2000


class RatingBody(Input):
    #: The token from the survey link.
    token: str = Field(min_length=1, max_length=200)
    rating: StrictInt = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)


class CsatAnalyticsQuery(Query):
    #: First local day (tenant timezone), included; default: 29 days before ``to``.
    from_: DayParam | None = Field(None, alias="from")
    #: Last local day, included; default: today.
    to: DayParam | None = None
    agent_id: uuid.UUID | None = None
    division_id: uuid.UUID | None = None
    channel: str | None = Field(None, max_length=16)


class SettingsBody(Input):
    """The whole settings (PUT replaces them): only the message may be left out."""

    #: Channels whose conversations get a survey when resolved.
    enabled_channels: list[str] = Field(max_length=10)
    #: The survey message; must contain ``{link}``. Null: the default message.
    message_template: str | None = Field(None, min_length=1, max_length=1000)
    #: No second survey for a conversation resolved again within this many hours.
    resend_window_hours: int = Field(ge=0, le=24 * 365)
