"""Request and response shapes of the Working Hours, Scheduled Messages and SLA groups.

The schema checks the shape; :func:`shared.timekeeping.schedules.clean_schedule` checks the
meaning (times, overlaps, duplicate weekdays and holidays) and names each bad field.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.schemas.common import BodyDay, Input, ListQuery, Nullable, Query, Update, WallTime
from api.schemas.conversations import Tag
from api.schemas.messages import Body, Channel, TemplateRef
from api.schemas.notes import NoNul
from shared.models.inbox import CHANNELS
from shared.timekeeping.sla_policies import MAX_TARGET_MINUTES
from shared.timekeeping.working_hours import MAX_HOLIDAY_NAME, MAX_HOLIDAYS, MAX_INTERVALS_PER_DAY

ClockTime = Annotated[str, StringConstraints(max_length=5), Field(examples=["09:00"])]


class IntervalBody(Input):
    start: ClockTime
    end: ClockTime = Field(description='"24:00" ends the day; an interval never crosses midnight')


class DayBody(Input):
    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    intervals: list[IntervalBody] = Field(max_length=MAX_INTERVALS_PER_DAY)


class HolidayBody(Input):
    date: BodyDay
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
    run_at: WallTime = Field(
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


# --- SLA ----------------------------------------------------------------------------------

PolicyName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
]
PolicyDescription = Annotated[str, StringConstraints(max_length=500), NoNul]
TargetMinutes = Annotated[int, Field(ge=1, le=MAX_TARGET_MINUTES)]
Priority = Annotated[int, Field(ge=0, le=10_000, description="Lower is checked first")]
Channels = Annotated[list[Channel], Field(max_length=len(CHANNELS))]
DivisionIds = Annotated[list[uuid.UUID], Field(max_length=100)]
PolicyTags = Annotated[list[Tag], Field(max_length=50)]


class SlaPolicyCreate(Input):
    """Match conditions (empty: any), targets in minutes (at least one), how time counts."""

    name: PolicyName
    description: PolicyDescription = ""
    is_active: bool = True
    priority: Priority = 0
    channels: Channels = Field(default_factory=list)
    division_ids: DivisionIds = Field(default_factory=list)
    tags: PolicyTags = Field(default_factory=list, description="Matches conversations with any")
    first_response_minutes: TargetMinutes | None = None
    next_response_minutes: TargetMinutes | None = None
    resolution_minutes: TargetMinutes | None = None
    business_hours_only: bool = False
    pause_on_pending: bool = True
    pause_on_snoozed: bool = True


class SlaPolicyUpdate(Update):
    name: PolicyName | None = None
    description: PolicyDescription | None = None
    is_active: bool | None = None
    priority: Priority | None = None
    channels: Channels | None = None
    division_ids: DivisionIds | None = None
    tags: PolicyTags | None = None
    #: ``null`` removes the target.
    first_response_minutes: Nullable[TargetMinutes] = None
    next_response_minutes: Nullable[TargetMinutes] = None
    resolution_minutes: Nullable[TargetMinutes] = None
    business_hours_only: bool | None = None
    pause_on_pending: bool | None = None
    pause_on_snoozed: bool | None = None


class SlaPolicyView(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    is_active: bool
    priority: int
    channels: list[str]
    division_ids: list[uuid.UUID]
    tags: list[str]
    first_response_minutes: int | None
    next_response_minutes: int | None
    resolution_minutes: int | None
    business_hours_only: bool
    pause_on_pending: bool
    pause_on_snoozed: bool
    #: Bumped by each change of targets or time rules.
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class SlaBreachView(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    policy_id: uuid.UUID
    #: ``first_response``, ``next_response`` or ``resolution``.
    kind: str
    #: When the missed target's clock started.
    cycle_started_at: dt.datetime
    due_at: dt.datetime
    #: When ``check_sla`` recorded it.
    breached_at: dt.datetime


class SlaTargetStatus(BaseModel):
    kind: str
    target_minutes: int
    started_at: dt.datetime | None
    due_at: dt.datetime | None
    met_at: dt.datetime | None
    #: The due time that was missed (null while not breached).
    breached_at: dt.datetime | None
    #: ``pending``, ``paused``, ``met``, ``breached`` or ``not_started`` (next response).
    status: str


class SlaPolicyRef(BaseModel):
    id: uuid.UUID
    name: str
    business_hours_only: bool
    deleted: bool


class ConversationSlaView(BaseModel):
    """``policy: null`` when no policy matched the conversation when it opened."""

    policy: SlaPolicyRef | None
    started_at: dt.datetime | None
    paused_at: dt.datetime | None
    targets: list[SlaTargetStatus]
    breaches: list[SlaBreachView]
