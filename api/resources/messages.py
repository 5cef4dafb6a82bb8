"""Messages: a conversation's messages, outbound sends and the full-text search."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.request_parts import idempotency_key
from api.schemas.common import ListQuery, Page
from api.schemas.messages import MessageCreate, MessageSearchQuery
from shared.inbox import messages, search
from shared.schemas.messages import MessageSearchHit, MessageView

TAGS = ("Messages",)


class ConversationMessagesResource:
    @endpoint(
        "List messages in a conversation",
        query=ListQuery,
        response=Page[MessageView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        page = messages.list_messages(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Send an outbound message",
        errors=(402, 409, 503),
        body=MessageCreate,
        response=MessageView,
        status=201,
        description=(
            "Stores the message as `queued` and emits message.created. A `body`, `attachments`"
            " (uploaded media ids; one on WhatsApp, with `body` as its caption, or on"
            " Messenger/Instagram without `body`; up to 10 on email), or a `template` alone"
            " (WhatsApp and api-channel conversations only: elsewhere 422)."
            " On WhatsApp, outside the contact's 24-hour window (the contact wrote to the"
            " conversation's number in the last 24 hours), only a template may be sent"
            " (409 `window_closed`). A conversation whose account (number, page, address or"
            " api system) was deleted is not answered from another one (409"
            " `account_deleted`). A WhatsApp `template` must exist for the conversation's"
            " account, be `APPROVED`, be in that `language` and be given each of its"
            " parameters, or it answers 422 naming what is wrong, before anything is stored or"
            " sent. `Idempotency-Key` (up to 255 characters, per API key or user): a repeat"
            " within 24 h returns the first message; the key with another `body`,"
            " `template` or `attachments`, or in another conversation, answers 422."
            " 402 `plan_limit_reached` when the plan's"
            " monthly messages are spent (nothing is stored)."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: MessageCreate):
        fields = body.model_dump(exclude_none=True, exclude={"attachments"})
        sent = messages.send_message(
            req.context.db,
            ctx,
            id,
            **fields,
            attachments=[a.media_id for a in body.attachments],
            idempotency_key=idempotency_key(req),
        )
        return Plain(sent)


class MessageSearchResource:
    @endpoint(
        "Search messages across conversations",
        errors=(404, 422),
        query=MessageSearchQuery,
        response=Page[MessageSearchHit],
        description=(
            'Full-text search (web-search syntax: `"exact phrase"`, `or`, `-word`) over the'
            " messages of the conversations the caller may see, best match first. Search"
            f" favours recent messages: it ranks the workspace's newest {search.MAX_RESULTS}"
            " matches, and a caller who may see only some conversations gets those of them"
            " in their conversations; `from`, `to` and `conversation_id` reach older ones."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: MessageSearchQuery):
        fields = query.model_dump()
        page = search.search_messages(
            req.context.db,
            ctx,
            **{k: v for k, v in fields.items() if k not in ("from_", "to")},
            since=fields["from_"],
            until=fields["to"],
        )
        return Plain({"items": page.items, "next_cursor": page.next_cursor})


ROUTES = [
    ("/api/conversations/{id:uuid}/messages", ConversationMessagesResource()),
    ("/api/messages/search", MessageSearchResource()),
]
