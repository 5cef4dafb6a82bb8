"""Request and response shapes of the Working Hours, Scheduled Messages and SLA groups.

The schema checks the shape; :func:`shared.timekeeping.schedules.clean_schedule` checks the
meaning (times, overlaps, duplicate weekdays and holidays) and names each bad field.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.schemas.common import Input, ListQuery, Query
from api.schemas.messages import Body, TemplateRef
from shared.timekeeping.working_hours import MAX_HOLIDAY_NAME, MAX_HOLIDAYS, MAX_INTERVALS_PER_DAY

ClockTime = Annotated[str, StringConstraints(max_length=5), Field(examples=["09:00"])]


class IntervalBody(Input):
    start: ClockTime
    end: ClockTime = Field(description='"24:00" ends the day; an interval never crosses midnight')


class DayBody(Input):
    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    intervals: list[IntervalBody] = Field(max_length=MAX_INTERVALS_PER_DAY)


class HolidayBody(Input):
    date: dt.date
    name: Annotated[str, StringConstraints(max_length=MAX_HOLIDAY_NAME)] = ""


class ScheduleBody(Input):
    """A weekly schedule in the tenant timezone; a weekday not listed is closed."""

    days: list[DayBody] = Field(max_length=7)
    holidays: list[HolidayBody] = Field(default_factory=list, max_length=MAX_HOLIDAYS)

    def as_schedule(self) -> dict:
        data = self.model_dump(mode="json")
        return data


class TimezoneBody(Input):
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        examples=["Asia/Jakarta"], description="An IANA timezone name"
    )


class StatusQuery(Query):
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=63)] = Field(
        description="The tenant's slug"
    )
    division_id: uuid.UUID | None = None


class Interval(BaseModel):
    start: str
    end: str


class Day(BaseModel):
    weekday: int
    intervals: list[Interval]


class Holiday(BaseModel):
    date: dt.date
    name: str


class WorkingHoursView(BaseModel):
    """``configured: false``: no hours were ever set, and the tenant counts as always open."""

    days: list[Day]
    holidays: list[Holiday]
    configured: bool
    timezone: str
    updated_at: dt.datetime | None


class DivisionWorkingHoursView(WorkingHoursView):
    division_id: uuid.UUID
    #: True when the division has no override and the tenant's schedule applies.
    inherits_global: bool


class TimezoneView(BaseModel):
    timezone: str


class WorkingHoursStatus(BaseModel):
    is_open: bool
    timezone: str
    now: dt.datetime
    #: When open/closed next flips; null when it never does (e.g. no hours set).
    next_change_at: dt.datetime | None


# --- Scheduled Messages -------------------------------------------------------------------


class ScheduledMessageCreate(Input):
    """A message to send later: a ``body`` or a WhatsApp ``template``, at ``run_at``."""

    body: Body | None = None
    template: TemplateRef | None = None
    run_at: dt.datetime = Field(
        description="RFC 3339; without an offset it is wall-clock time in `timezone`"
        " (else the tenant's). Must be in the future, at most 366 days ahead."
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="The sender's IANA timezone, for a `run_at` without an offset"
    )

    @model_validator(mode="after")
    def _one_content(self) -> ScheduledMessageCreate:
        if (self.body is None) == (self.template is None):
            raise ValueError("send either a body or a template")
        return self


class ScheduledMessageListQuery(ListQuery):
    status: Literal["pending", "sent", "cancelled", "failed"] | None = None
