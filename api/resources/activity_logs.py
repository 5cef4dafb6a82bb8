"""Activity logs: the audit trail of every state change."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.common import Page
from api.schemas.identity import ActivityLogQuery, ActivityLogView
from shared import activity


class ActivityLogsResource:
    @endpoint(
        "List activity logs",
        permission="activity_logs.view",
        query=ActivityLogQuery,
        response=Page[ActivityLogView],
        errors=(422,),
        description="`from` (inclusive) not before `to` (exclusive) is 422 naming `from`.",
        tags=("Activity Logs",),
    )
    def on_get(self, req, resp, *, ctx, query: ActivityLogQuery):
        page = activity.list_logs(
            req.context.db,
            ctx,
            actor_id=query.actor_id,
            action=query.action,
            entity_type=query.entity_type,
            entity_id=query.entity_id,
            since=query.from_,
            until=query.to,
            limit=query.limit,
            cursor=query.cursor,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


ROUTES = [("/api/activity-logs", ActivityLogsResource())]
