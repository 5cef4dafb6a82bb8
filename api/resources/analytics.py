"""Analytics: dashboard figures read from the rollups (supervisor/admin)."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.analytics import (
    AgentLoads,
    ChannelsReport,
    CsatQuery,
    CsatReport,
    Overview,
    Trends,
    TrendsQuery,
)
from shared.analytics import reports

TAGS = ("Analytics",)
PERMISSION = "analytics.view"


class OverviewResource:
    @endpoint("Dashboard overview KPIs", permission=PERMISSION, response=Overview, tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        return Plain(reports.overview(req.context.db, ctx))


class TrendsResource:
    @endpoint(
        "Conversation and message trends",
        permission=PERMISSION,
        query=TrendsQuery,
        response=Trends,
        description="One entry per day of the tenant's timezone, zeros included.",
        errors=(422,),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: TrendsQuery):
        return Plain(reports.trends(req.context.db, ctx, query.period))


class AgentsResource:
    @endpoint("Per-agent workload metrics", permission=PERMISSION, response=AgentLoads, tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        return Plain(reports.agents(req.context.db, ctx))


class ChannelsResource:
    @endpoint("Per-channel metrics", permission=PERMISSION, response=ChannelsReport, tags=TAGS)
    def on_get(self, req, resp, *, ctx):
        return Plain(reports.channels(req.context.db, ctx))


class CsatResource:
    @endpoint(
        "CSAT analytics",
        permission=PERMISSION,
        query=CsatQuery,
        response=CsatReport,
        description="Surveys sent and ratings received in the period, overall and per agent.",
        errors=(422,),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: CsatQuery):
        return Plain(reports.csat(req.context.db, ctx, query.period))


ROUTES = [
    ("/api/analytics/overview", OverviewResource()),
    ("/api/analytics/trends", TrendsResource()),
    ("/api/analytics/agents", AgentsResource()),
    ("/api/analytics/channels", ChannelsResource()),
    ("/api/analytics/csat", CsatResource()),
]
