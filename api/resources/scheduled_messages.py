"""Scheduled messages: "send later" on a conversation, cancellable until sent."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.request_parts import idempotency_key
from api.schemas.common import Page
from api.schemas.timekeeping import ScheduledMessageCreate, ScheduledMessageListQuery
from shared.schemas.timed import ScheduledMessageView
from shared.timekeeping import scheduled_messages

TAGS = ("Scheduled Messages",)


class ScheduledMessagesResource:
    @endpoint(
        "Schedule a message for future delivery",
        body=ScheduledMessageCreate,
        response=ScheduledMessageView,
        status=201,
        errors=(409,),
        description="At `run_at` the scheduler sends it as the author's reply (emits"
        " message.created -> send_outbound). A send refused then (the WhatsApp 24-hour window"
        " closed, the conversation resolved; the author deleted, suspended, or no longer"
        " allowed to see the conversation: `error_code` `author_removed`, `author_suspended`,"
        " `author_lost_access`) marks it `failed` with the reason and emits"
        " scheduled_message.failed. 409 on a resolved conversation, and (`account_deleted`, as"
        " a reply) on one whose account was deleted; a deletion after scheduling fails the"
        " message with that `error_code` when due, as a disabled account does"
        " (`account_disabled`) and a switched-off channel (`channel_disabled`). A WhatsApp"
        " `template` is"
        " checked as a send is (422 naming what is wrong), all but its approval, which is"
        " checked when due. `Idempotency-Key` (up to 255 characters, per API key or user): a"
        " repeat within 24 h returns the first answer and schedules nothing (409 while the"
        " first is still running); the key with another body answers 422.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: ScheduledMessageCreate):
        return scheduled_messages.create(
            req.context.db,
            ctx,
            id,
            run_at=body.run_at,
            body=body.body,
            template=body.template.model_dump() if body.template else None,
            timezone=body.timezone,
            idempotency_key=idempotency_key(req),
        )

    @endpoint(
        "List scheduled messages for a conversation",
        query=ScheduledMessageListQuery,
        response=Page[ScheduledMessageView],
        description="Newest first; every status unless `status` filters.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ScheduledMessageListQuery):
        page = scheduled_messages.list_scheduled(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})


class ScheduledMessageResource:
    @endpoint(
        "Cancel a scheduled message",
        status=204,
        errors=(409,),
        description="The author, or a holder of `conversations.manage`. Status becomes"
        " `cancelled`; 409 once it was sent or failed.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id, scheduled_id):
        scheduled_messages.cancel(req.context.db, ctx, id, scheduled_id)


ROUTES = [
    ("/api/conversations/{id:uuid}/scheduled-messages", ScheduledMessagesResource()),
    (
        "/api/conversations/{id:uuid}/scheduled-messages/{scheduled_id:uuid}",
        ScheduledMessageResource(),
    ),
]
