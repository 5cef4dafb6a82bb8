"""Automation runs: lists, one run, its replay context, CSV export."""

from __future__ import annotations

import datetime as dt

from api.endpoint import endpoint
from api.resources.automation_rules import TAGS, page_of
from api.schemas.automation import ReplayContext, RunExportQuery, RunListQuery
from api.schemas.common import Page
from shared.automation import history, rules
from shared.automation.views import RunDetail, RunView


class RunsResource:
    @endpoint(
        "List automation rule runs",
        permission=rules.VIEW,
        query=RunListQuery,
        response=Page[RunView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: RunListQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        page = history.list_runs(req.context.db, ctx, since=query.from_, until=query.to, **filters)
        return page_of(RunView, page)


class RunsExportResource:
    @endpoint(
        "Export automation runs as CSV",
        permission=rules.VIEW,
        query=RunExportQuery,
        produces="text/csv",
        description="Streams CSV, newest first (filters as the list).",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: RunExportQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        resp.stream = history.export_runs(ctx, since=query.from_, until=query.to, **filters)
        resp.content_type = "text/csv; charset=utf-8"
        resp.downloadable_as = f"automation-runs-{dt.datetime.now(dt.UTC).date().isoformat()}.csv"


class RunResource:
    @endpoint(
        "Get a single automation run by ID", permission=rules.VIEW, response=RunDetail, tags=TAGS
    )
    def on_get(self, req, resp, *, ctx, id):
        return history.get_run(req.context.db, ctx, id)


class RunReplayResource:
    @endpoint(
        "Get replay context for an automation run",
        permission=rules.VIEW,
        response=ReplayContext,
        description=(
            "The event payload, the rule snapshot at run time, the facts and condition"
            " results, and `replayed`: the same evaluation computed now from the snapshots."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        return history.replay_context(req.context.db, ctx, id)


class EventRunsResource:
    @endpoint(
        "List automation runs for a specific event",
        permission=rules.VIEW,
        query=RunListQuery,
        response=Page[RunView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: RunListQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        page = history.list_runs(
            req.context.db, ctx, event_id=id, since=query.from_, until=query.to, **filters
        )
        return page_of(RunView, page)


ROUTES = [
    ("/api/automation/runs", RunsResource()),
    ("/api/automation/runs/export", RunsExportResource()),
    ("/api/automation/runs/{id:uuid}", RunResource()),
    ("/api/automation/runs/{id:uuid}/replay-context", RunReplayResource()),
    ("/api/automation/events/{id:uuid}/runs", EventRunsResource()),
]
