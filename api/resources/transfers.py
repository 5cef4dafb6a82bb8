"""Transfers and takeovers: who handed a conversation to whom."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.common import ListQuery, Page
from api.schemas.conversations import TransferCreate, TransferView
from shared.inbox import transfers
from shared.schemas.inbox import ConversationView

TAGS = ("Transfers",)


class TransferResource:
    @endpoint(
        "Transfer a conversation",
        errors=(409,),
        body=TransferCreate,
        response=ConversationView,
        description="By the assigned agent or `conversations.manage`; to an agent and/or a"
        " division (a division alone leaves it unassigned in that division's queue).",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: TransferCreate):
        return transfers.transfer(req.context.db, ctx, id, **body.model_dump())


class TransfersResource:
    @endpoint(
        "List transfer history for a conversation",
        query=ListQuery,
        response=Page[TransferView],
        description="Transfers and takeovers, oldest first.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        page = transfers.list_transfers(
            req.context.db, ctx, id, limit=query.limit, cursor=query.cursor
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


class TakeoverResource:
    @endpoint(
        "Takeover a conversation",
        errors=(409,),
        response=ConversationView,
        description="From an AI agent: any agent who sees it. From another agent:"
        " `conversations.manage`. Pauses the AI agent on the conversation.",
        tags=("Conversations",),
    )
    def on_post(self, req, resp, *, ctx, id):
        return transfers.takeover(req.context.db, ctx, id)


ROUTES = [
    ("/api/conversations/{id:uuid}/transfer", TransferResource()),
    ("/api/conversations/{id:uuid}/transfers", TransfersResource()),
    ("/api/conversations/{id:uuid}/takeover", TakeoverResource()),
]
