"""CSAT: a conversation's survey, the public rating, the analytics and the settings."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.request_parts import idempotency_key
from api.schemas.analytics import CsatReport
from api.schemas.csat import CsatAnalyticsQuery, RatingBody, SettingsBody
from shared import idempotency
from shared.csat import analytics, surveys
from shared.csat import settings as csat_settings
from shared.schemas.csat import PublicSurveyView, SettingsView, SurveyView

TAGS = ("CSAT",)


class ConversationCsatResource:
    @endpoint(
        "Get CSAT survey for a conversation",
        response=SurveyView,
        description="The conversation's latest survey (404 when it has none).",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        return surveys.latest(req.context.db, ctx, id)

    @endpoint(
        "Create a CSAT survey for a conversation",
        response=SurveyView,
        status=201,
        errors=(409, 422),
        description="Sends the tenant's survey message (with the rating link, and the ratings"
        " as the channel's reply buttons: a tap rates the survey once) through the"
        " conversation's channel and emits `csat.survey_sent`. 409 `survey_exists` when a"
        " survey went out within the tenant's resend window; 409 `opted_out` when the"
        " conversation's contact opted out (nothing is sent); 409 `account_deleted` when the"
        " conversation's account was deleted; 409 `window_closed` for"
        " WhatsApp outside the 24-hour window. `Idempotency-Key` (up to 255 characters, per"
        " API key or user): a repeat within 24 h returns the first answer and sends nothing"
        " again (409 while the first is still running); the key with another conversation"
        " answers 422.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        # WHY: a client retrying a survey whose answer it lost must get that answer, not a
        # 409 it cannot tell from another agent's survey (API.md: POSTs that send messages).
        session = req.context.db
        claim, first = idempotency.claim_or_replay(
            session, ctx, "csat", "survey", idempotency_key(req), {"conversation_id": str(id)}
        )
        if first is not None:
            return first
        return idempotency.remember(session, claim, SurveyView.data(surveys.send(session, ctx, id)))


class PublicSurveyResource:
    @endpoint(
        "Submit a CSAT rating",
        public=True,
        body=RatingBody,
        response=PublicSurveyView,
        errors=(404, 409),
        description="The customer's answer, with the token of the survey link: a rating"
        " from 1 to 5 and an optional comment, once (409 `already_rated`). An unknown"
        " survey and a wrong token both answer 404. Emits `csat.submitted`.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, id, body: RatingBody):
        return surveys.submit(
            req.context.db, id, token=body.token, rating=body.rating, comment=body.comment
        )


class CsatAnalyticsResource:
    @endpoint(
        "CSAT analytics",
        permission="analytics.view",
        query=CsatAnalyticsQuery,
        response=CsatReport,
        errors=(422,),
        description="The shape of `/api/analytics/csat` over the local days `from`..`to`"
        " (`YYYY-MM-DD`, else 422; default: the last 30), filtered by the agent, division"
        " and channel each survey was sent under. `period` is `from/to`.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: CsatAnalyticsQuery):
        return Plain(
            analytics.report(
                req.context.db,
                ctx,
                first=query.from_,
                last=query.to,
                agent_id=query.agent_id,
                division_id=query.division_id,
                channel=query.channel,
            )
        )


class CsatSettingsResource:
    @endpoint(
        "Get CSAT settings",
        permission=csat_settings.MANAGE,
        response=SettingsView,
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return csat_settings.load(req.context.db, ctx.tenant_id)

    @endpoint(
        "Replace CSAT settings",
        permission=csat_settings.MANAGE,
        body=SettingsBody,
        response=SettingsView,
        description="Which channels get a survey when a conversation is resolved, the message"
        " (with `{link}`), and the window in which a conversation resolved again gets none.",
        tags=TAGS,
    )
    def on_put(self, req, resp, *, ctx, body: SettingsBody):
        return csat_settings.put(req.context.db, ctx, **body.model_dump())


ROUTES = [
    ("/api/conversations/{id:uuid}/csat", ConversationCsatResource()),
    ("/api/public/csat-surveys/{id:uuid}", PublicSurveyResource()),
    ("/api/csat-surveys/analytics", CsatAnalyticsResource()),
    ("/api/csat-surveys/settings", CsatSettingsResource()),
]
