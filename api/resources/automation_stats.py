"""Automation stats: totals and time series, for all rules and per rule (from the rollups)."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.resources.automation_rules import TAGS
from api.schemas.automation_stats import (
    AlertSettingsUpdate,
    AlertStats,
    AlertStatsQuery,
    RuleStats,
    StatsOverview,
    StatsRangeQuery,
    Timeseries,
    TimeseriesQuery,
)
from shared.automation import alerts, stats_query
from shared.automation.control import MANAGE, VIEW
from shared.automation.views import RuleView

_ROLLUPS = (
    " Read from the rollups the workers keep (a second or two behind the runs), never by"
    " scanning runs. `from` after `to`, or a range over 400 days, is 422 naming `from`."
)
_SERIES = (
    " One point per bucket, empty buckets as zeros: minutes and hours in UTC, days in the"
    " tenant's timezone (or `timezone`; 23 or 25 hours across a daylight-saving change)."
    " More than 1500 points is 422 naming `granularity`; an unknown `timezone` is 400."
)


class StatsOverviewResource:
    @endpoint(
        "Automation stats overview",
        permission=VIEW,
        query=StatsRangeQuery,
        response=StatsOverview,
        errors=(422,),
        description="Runs, matches, skips, failures, actions executed and p50/p95 evaluation"
        " time of every rule together, and per rule (the 100 with most runs)." + _ROLLUPS,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: StatsRangeQuery):
        data = stats_query.overview(req.context.db, ctx, start=query.from_, end=query.to)
        return Plain(data)


class StatsTimeseriesResource:
    @endpoint(
        "Automation stats time series",
        permission=VIEW,
        query=TimeseriesQuery,
        response=Timeseries,
        errors=(422,),
        description="The figures of every rule together per minute, hour or day."
        + _SERIES
        + _ROLLUPS,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: TimeseriesQuery):
        return Plain(
            stats_query.timeseries(
                req.context.db,
                ctx,
                granularity=query.granularity,
                start=query.from_,
                end=query.to,
                timezone=query.timezone,
            )
        )


class RuleStatsResource:
    @endpoint(
        "Get stats for a specific automation rule",
        permission=VIEW,
        query=StatsRangeQuery,
        response=RuleStats,
        errors=(422,),
        description="The rule's figures over the range." + _ROLLUPS,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: StatsRangeQuery):
        return Plain(
            stats_query.rule_stats(req.context.db, ctx, id, start=query.from_, end=query.to)
        )


class RuleTimeseriesResource:
    @endpoint(
        "Get time series stats for a specific automation rule",
        permission=VIEW,
        query=TimeseriesQuery,
        response=Timeseries,
        errors=(422,),
        description="The rule's figures per minute, hour or day." + _SERIES + _ROLLUPS,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: TimeseriesQuery):
        return Plain(
            stats_query.timeseries(
                req.context.db,
                ctx,
                rule_id=id,
                granularity=query.granularity,
                start=query.from_,
                end=query.to,
                timezone=query.timezone,
            )
        )


class AlertStatsResource:
    @endpoint(
        "Automation alert stats",
        permission=VIEW,
        query=AlertStatsQuery,
        response=AlertStats,
        errors=(422,),
        description="Alert incidents that started in the range (newest first), counted by"
        " kind and status, and the number open now. An incident opens when"
        " `evaluate_automation_alerts` first finds its condition (emitting"
        " `automation.alert_triggered` once) and resolves when a check finds it cleared.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: AlertStatsQuery):
        return Plain(
            alerts.alert_stats(
                req.context.db,
                ctx,
                start=query.from_,
                end=query.to,
                rule_id=query.rule_id,
                status=query.status,
                limit=query.limit,
            )
        )


class RuleAlertsResource:
    @endpoint(
        "Update alert settings for an automation rule",
        permission=MANAGE,
        body=AlertSettingsUpdate,
        response=RuleView,
        description="Per kind, an object sets it and null switches it off: `failure_rate`"
        " (percent of runs failed over a window), `no_runs` (no run for a period),"
        " `latency` (p95 evaluation time above a bound over a window). Checked every"
        " 5 minutes by `evaluate_automation_alerts`. Out-of-range values are 422 naming"
        " the field.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: AlertSettingsUpdate):
        # NOTE: a kind sent is stored whole, with its defaults (only the top level is partial).
        changes = {
            kind: None if value is None else value.model_dump(mode="json")
            for kind in body.model_fields_set
            for value in (getattr(body, kind),)
        }
        return alerts.update_settings(req.context.db, ctx, id, changes)


ROUTES = [
    ("/api/automation/stats/alerts", AlertStatsResource()),
    ("/api/automation/rules/{id:uuid}/alerts", RuleAlertsResource()),
    ("/api/automation/stats", StatsOverviewResource()),
    ("/api/automation/stats/timeseries", StatsTimeseriesResource()),
    ("/api/automation/rules/{id:uuid}/stats", RuleStatsResource()),
    ("/api/automation/rules/{id:uuid}/stats/timeseries", RuleTimeseriesResource()),
]
