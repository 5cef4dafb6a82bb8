"""Chat expiration rules: per channel, how long a conversation may idle before it expires."""

from __future__ import annotations

from api.endpoint import endpoint
from api.schemas.conversations import ChatExpirationRulePut, ChatExpirationRuleView
from shared.inbox import expiration

TAGS = ("Chat Expiration",)
MANAGE = "settings.manage"


class RulesResource:
    @endpoint(
        "List chat expiration rules",
        permission=MANAGE,
        response=list[ChatExpirationRuleView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return expiration.list_rules(req.context.db, ctx)


class RuleResource:
    @endpoint(
        "Upsert a chat expiration rule for a channel",
        permission=MANAGE,
        body=ChatExpirationRulePut,
        response=ChatExpirationRuleView,
        description="`channel` is whatsapp, instagram, messenger or email; the scheduler's"
        " expire_conversations applies active rules every 5 minutes.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, channel, body: ChatExpirationRulePut):
        return expiration.put_rule(req.context.db, ctx, channel, **body.model_dump())


ROUTES = [
    ("/api/chat-expiration-rules", RulesResource()),
    ("/api/chat-expiration-rules/{channel}", RuleResource()),
]
