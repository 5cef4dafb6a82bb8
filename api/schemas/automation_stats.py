"""Request and answer shapes of the automation stats and alerts endpoints."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from api.schemas.common import Input, Instant, Nullable, Query, Update
from shared.schemas.base import View

Granularity = Literal["minute", "hour", "day"]


class StatsRangeQuery(Query):
    from_: Instant | None = Field(None, alias="from", description="default: 24 hours before `to`")
    to: Instant | None = Field(None, description="default: now")


class TimeseriesQuery(StatsRangeQuery):
    granularity: Granularity | None = Field(
        None,
        description="default: minute up to 6 hours, hour up to 7 days, else day"
        " (at most 1500 points)",
    )
    timezone: str | None = Field(
        None,
        description="IANA zone whose local days a `day` series counts; default: the tenant's",
        examples=["Europe/Berlin"],
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None and value not in zoneinfo.available_timezones():
            raise ValueError("unknown timezone; use an IANA name such as Europe/Berlin")
        return value


class Figures(View):
    runs: int
    matches: int = Field(description="runs whose conditions matched (their actions ran)")
    skipped: int = Field(description="runs skipped: snoozed, outside schedule or rollout, loops")
    failures: int = Field(description="matched runs with a failed action")
    actions_executed: int
    failure_rate: float | None = Field(description="failures / runs (0-1); null without runs")
    avg_ms: float | None
    p50_ms: float | None = Field(description="from the latency histogram, interpolated")
    p95_ms: float | None


class RuleFigures(Figures):
    rule_id: uuid.UUID
    name: str | None = Field(description="null once the rule was deleted")


class StatsOverview(View):
    start: dt.datetime = Field(description="`from`, to the minute (a series: to its bucket)")
    end: dt.datetime
    totals: Figures
    rules: list[RuleFigures]


class RuleStats(View):
    start: dt.datetime = Field(description="`from`, to the minute (a series: to its bucket)")
    end: dt.datetime
    rule_id: uuid.UUID
    name: str
    totals: Figures


class SeriesPoint(Figures):
    start: dt.datetime


class Timeseries(View):
    start: dt.datetime = Field(description="`from`, to the minute (a series: to its bucket)")
    end: dt.datetime
    rule_id: uuid.UUID | None
    granularity: Granularity
    timezone: str = Field(description="the zone of the day points (minutes and hours: UTC)")
    points: list[SeriesPoint]


# --- alerts -------------------------------------------------------------------------------

Window = Annotated[int, Field(ge=5, le=1440, description="minutes, 5 to 1440")]
MinRuns = Annotated[int, Field(ge=1, le=1_000_000, description="fewer runs: no alert")]


class FailureRateAlert(Input):
    threshold_percent: float = Field(gt=0, le=100, description="alert at this share or more")
    window_minutes: Window = 15
    min_runs: MinRuns = 10


class NoRunsAlert(Input):
    period_minutes: int = Field(ge=5, le=43_200, description="minutes without a run, 5 to 43200")


class LatencyAlert(Input):
    p95_ms: float = Field(gt=0, le=600_000, description="alert when p95 is above this")
    window_minutes: Window = 15
    min_runs: MinRuns = 1


class AlertSettingsUpdate(Update):
    """Only the kinds sent change; null switches a kind off."""

    failure_rate: Nullable[FailureRateAlert] = None
    no_runs: Nullable[NoRunsAlert] = None
    latency: Nullable[LatencyAlert] = None


class AlertStatsQuery(StatsRangeQuery):
    rule_id: uuid.UUID | None = None
    status: Literal["open", "resolved"] | None = None
    limit: int = Field(50, ge=1, le=200)


class AlertItem(View):
    id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: str | None
    kind: Literal["failure_rate", "no_runs", "latency"]
    status: Literal["open", "resolved"]
    triggered_at: dt.datetime
    resolved_at: dt.datetime | None
    observed: float | None = Field(description="failure %, p95 ms, or runs in the period")
    threshold: float
    details: dict[str, Any]


class AlertStats(View):
    start: dt.datetime
    end: dt.datetime
    open_now: int = Field(description="incidents open now, whenever they started")
    triggered: int = Field(description="incidents that started in the range")
    by_kind: dict[str, int]
    by_status: dict[str, int]
    items: list[AlertItem] = Field(description="newest first, at most `limit`")
