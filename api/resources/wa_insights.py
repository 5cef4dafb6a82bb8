"""WhatsApp insights: Meta's figures for the tenant's WhatsApp account (supervisor/admin)."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.analytics import (
    ConversationInsights,
    InsightsQuery,
    MessageInsights,
    TemplateInsights,
)
from shared.analytics import wa_insights
from shared.channels import graph_errors

TAGS = ("Analytics",)
PERMISSION = "analytics.view"
_WHAT = (
    "Asks Meta's Graph API with the WhatsApp account's token (`integration_account_id`, else"
    " the default WhatsApp account); answers are cached 5 minutes per account and range."
    " `start` and `end` are inclusive dates (`YYYY-MM-DD`), at most 366 days apart, `start`"
    " from 2015-01-01 to tomorrow in the tenant's timezone (else 422); 404"
    " `integration_not_found` without a WhatsApp account; 409 when Meta refuses the token,"
    " or `too_many_pages` when the account lists more templates than one answer reads"
    " (6,000: Meta's paging is followed up to 60 pages of 100),"
    " 429 while Meta throttles it, 502 when Meta fails."
)


def _resource(kind: str, summary: str, response: type):
    class InsightsResource:
        @endpoint(
            summary,
            permission=PERMISSION,
            query=InsightsQuery,
            response=response,
            description=_WHAT,
            errors=(404, *graph_errors.STATUSES),
            tags=TAGS,
        )
        def on_get(self, req, resp, *, ctx, query: InsightsQuery):
            return Plain(
                wa_insights.insights(
                    req.context.db,
                    ctx,
                    kind,
                    start=query.start,
                    end=query.end,
                    account_id=query.integration_account_id,
                )
            )

    InsightsResource.__name__ = f"{kind.title()}InsightsResource"
    return InsightsResource()


ROUTES = [
    (
        "/api/wa-insights/messages",
        _resource("messages", "WhatsApp message analytics", MessageInsights),
    ),
    (
        "/api/wa-insights/conversations",
        _resource("conversations", "WhatsApp conversation analytics", ConversationInsights),
    ),
    (
        "/api/wa-insights/templates",
        _resource("templates", "WhatsApp template analytics", TemplateInsights),
    ),
]
