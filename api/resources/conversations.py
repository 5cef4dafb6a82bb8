"""Conversations: the inbox list, assignment, status, read state, tags, bulk and expiry."""

from __future__ import annotations

import falcon

from api.endpoint import Plain, endpoint
from api.schemas.common import Page
from api.schemas.conversations import (
    AssignmentUpdate,
    BulkActionRequest,
    BulkResult,
    ConversationListQuery,
    ExpireResult,
    JobAccepted,
    ReadStateView,
    StatusUpdate,
    TagsUpdate,
)
from shared.inbox import bulk, conversations, expiration
from shared.schemas.inbox import ConversationListItem, ConversationView
from workers.actors import read_receipts as _mark_read_upstream  # noqa: F401  (enqueuer)
from workers.actors.inbox import enqueue_bulk

TAGS = ("Conversations",)


class ConversationsResource:
    @endpoint(
        "List conversations",
        query=ConversationListQuery,
        response=Page[ConversationListItem],
        description="Newest first; only the conversations the caller may see.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: ConversationListQuery):
        page = conversations.list_conversations(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})


class ConversationResource:
    @endpoint("Get a single conversation", response=ConversationListItem, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return Plain(conversations.get_item(req.context.db, ctx, id))


class AssignmentResource:
    @endpoint(
        "Assign or unassign an agent",
        body=AssignmentUpdate,
        response=ConversationView,
        description="Any agent may take an unassigned conversation; anything else needs"
        " `conversations.manage`.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: AssignmentUpdate):
        return conversations.assign(req.context.db, ctx, id, body.assignee_id)


class StatusResource:
    @endpoint(
        "Update conversation status",
        errors=(409,),
        body=StatusUpdate,
        response=ConversationView,
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: StatusUpdate):
        return conversations.set_status(req.context.db, ctx, id, body.status, body.snoozed_until)


class ReadResource:
    @endpoint(
        "Mark conversation as read",
        response=ReadStateView,
        description="On WhatsApp, Messenger and Instagram, when something new was read, the"
        " contact gets a read receipt (`mark_read_upstream`, after commit, retried).",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return conversations.mark_read(req.context.db, ctx, id)


class TagsResource:
    @endpoint("Update conversation tags", body=TagsUpdate, response=ConversationView, tags=TAGS)
    def on_patch(self, req, resp, *, ctx, id, body: TagsUpdate):
        return conversations.update_tags(
            req.context.db, ctx, id, tags=body.tags, add=body.add, remove=body.remove
        )


class BulkResource:
    @endpoint(
        "Bulk conversation actions",
        errors=(409,),
        permission=conversations.MANAGE,
        body=BulkActionRequest,
        response=BulkResult | JobAccepted,
        also=(202,),
        description=f"Up to {bulk.INLINE_LIMIT} ids: applied at once, all or nothing (200)."
        f" Up to {bulk.MAX_IDS}: queued as a job (202 with `job_id`).",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: BulkActionRequest):
        outcome = bulk.run(
            req.context.db,
            ctx,
            ids=body.ids,
            action=body.action,
            params=body.params(),
            enqueue=enqueue_bulk,
        )
        if outcome.job_id is not None:
            resp.status = falcon.HTTP_202
            return {"job_id": outcome.job_id}
        return {"results": outcome.results, "counts": outcome.counts}


class ExpireResource:
    @endpoint(
        "Expire stale conversations",
        permission="settings.manage",
        response=ExpireResult,
        description="Applies the workspace's active chat expiration rules now.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx):
        return expiration.expire_tenant(req.context.db, ctx).as_dict()


ROUTES = [
    ("/api/conversations", ConversationsResource()),
    ("/api/conversations/bulk", BulkResource()),
    ("/api/conversations/expire", ExpireResource()),
    ("/api/conversations/{id:uuid}", ConversationResource()),
    ("/api/conversations/{id:uuid}/assignment", AssignmentResource()),
    ("/api/conversations/{id:uuid}/status", StatusResource()),
    ("/api/conversations/{id:uuid}/read", ReadResource()),
    ("/api/conversations/{id:uuid}/tags", TagsResource()),
]
