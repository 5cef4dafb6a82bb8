"""The automation event queue: lists, stats, one event, retry, reprocess, cleanup, CSV export."""

from __future__ import annotations

import datetime as dt

from api.endpoint import Plain, endpoint
from api.resources.automation_rules import TAGS, page_of
from api.schemas.automation import (
    CleanupBody,
    CleanupResult,
    EventExportQuery,
    EventListQuery,
    EventStats,
    RetryFailedResult,
    StatsQuery,
)
from api.schemas.common import ListQuery, Page
from shared.automation import history, retries, rules
from shared.automation.views import EventView

# NOTE: retry and reprocess enqueue evaluate_rules after commit through the enqueuer
# this import installs (the sweeper would otherwise pick them up).
from workers.actors import automation as _evaluate_rules  # noqa: F401


class EventsResource:
    @endpoint(
        "List automation event queue items",
        permission=rules.VIEW,
        query=EventListQuery,
        response=Page[EventView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: EventListQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        page = history.list_events(
            req.context.db, ctx, since=query.from_, until=query.to, **filters
        )
        return page_of(EventView, page)


class EventStatsResource:
    @endpoint(
        "Automation event queue stats",
        permission=rules.VIEW,
        query=StatsQuery,
        response=EventStats,
        description="Counts by status and the age of the oldest pending event.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: StatsQuery):
        return history.event_stats(req.context.db, ctx, since=query.from_, until=query.to)


class EventsExportResource:
    @endpoint(
        "Export automation events as CSV",
        permission=rules.VIEW,
        query=EventExportQuery,
        produces="text/csv",
        description="Streams CSV, newest first (filters as the list).",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: EventExportQuery):
        filters = query.model_dump(exclude={"from_", "to"})
        resp.stream = history.export_events(ctx, since=query.from_, until=query.to, **filters)
        resp.content_type = "text/csv; charset=utf-8"
        today = dt.datetime.now(dt.UTC).date().isoformat()
        resp.downloadable_as = f"automation-events-{today}.csv"


class RetryFailedResource:
    @endpoint(
        "Retry all failed automation events",
        permission=rules.MANAGE,
        response=RetryFailedResult,
        status=202,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx):
        return retries.retry_failed(req.context.db, ctx)


class CleanupResource:
    @endpoint(
        "Clean up old failed automation events",
        permission=rules.MANAGE,
        body=CleanupBody,
        response=CleanupResult,
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: CleanupBody):
        return retries.cleanup_failed(req.context.db, ctx, older_than_days=body.older_than_days)


class EventResource:
    @endpoint(
        "Get a single automation event by ID", permission=rules.VIEW, response=EventView, tags=TAGS
    )
    def on_get(self, req, resp, *, ctx, id):
        return history.get_event(req.context.db, ctx, id)


class EventRetryResource:
    @endpoint(
        "Retry a single automation event",
        errors=(409,),
        permission=rules.MANAGE,
        response=EventView,
        status=202,
        description="409 unless the event is failed; rules already settled are not re-run.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return retries.retry_event(req.context.db, ctx, id)


class EventReprocessResource:
    @endpoint(
        "Reprocess an automation event with the current rule set",
        errors=(409,),
        permission=rules.MANAGE,
        response=EventView,
        status=202,
        description="Every current rule evaluates the stored event again; runs are new and"
        " flagged reprocess.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return retries.reprocess_event(req.context.db, ctx, id)


class FingerprintEventsResource:
    @endpoint(
        "List automation events by payload fingerprint",
        permission=rules.VIEW,
        query=ListQuery,
        response=Page[EventView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, fingerprint, query: ListQuery):
        if "\x00" in fingerprint:  # a hex digest never holds one; PostgreSQL refuses it
            return Plain({"items": [], "next_cursor": None})
        page = history.list_events(
            req.context.db, ctx, fingerprint=fingerprint[:64], **query.model_dump()
        )
        return page_of(EventView, page)


class ConversationEventsResource:
    @endpoint(
        "List automation events for a conversation",
        permission=rules.VIEW,
        query=ListQuery,
        response=Page[EventView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        page = history.list_conversation_events(req.context.db, ctx, id, **query.model_dump())
        return page_of(EventView, page)


ROUTES = [
    ("/api/automation/events", EventsResource()),
    ("/api/automation/events/stats", EventStatsResource()),
    ("/api/automation/events/export", EventsExportResource()),
    ("/api/automation/events/retry-failed", RetryFailedResource()),
    ("/api/automation/events/cleanup", CleanupResource()),
    ("/api/automation/events/by-fingerprint/{fingerprint}", FingerprintEventsResource()),
    ("/api/automation/events/{id:uuid}", EventResource()),
    ("/api/automation/events/{id:uuid}/retry", EventRetryResource()),
    ("/api/automation/events/{id:uuid}/reprocess", EventReprocessResource()),
    ("/api/conversations/{id:uuid}/automation-events", ConversationEventsResource()),
]
