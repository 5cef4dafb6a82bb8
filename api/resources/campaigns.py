"""Campaigns: drafts, recipients, send or schedule, pause, resume and cancel."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.request_parts import idempotency_key
from api.schemas.campaigns import (
    CampaignCreate,
    CampaignListQuery,
    CampaignSend,
    CampaignUpdate,
    RecipientListQuery,
    RecipientsAdd,
)
from api.schemas.common import Page
from shared import idempotency
from shared.campaigns import campaigns, lifecycle, recipients
from shared.errors import ValidationFailed
from shared.schemas.campaigns import CampaignView, RecipientsAdded, RecipientView
from workers.actors import campaigns as _run_campaign  # noqa: F401  (installs the enqueuer)

TAGS = ("Campaigns",)
MANAGE = "campaigns.manage"


class CampaignsResource:
    @endpoint(
        "List campaigns",
        permission=MANAGE,
        query=CampaignListQuery,
        response=Page[CampaignView],
        description="Newest first, each with its counts; `status` filters.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: CampaignListQuery):
        page = campaigns.list_campaigns(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Create a new campaign (draft)",
        permission=MANAGE,
        body=CampaignCreate,
        response=CampaignView,
        status=201,
        description="A WhatsApp campaign sends a `template` that must exist for the sending"
        " account and be APPROVED, with its parameters (422 naming what is wrong); other"
        " channels send a `body`. Placeholders: `{{name}}`, `{{phone}}`, `{{email}}`,"
        " `{{attr.KEY}}`, `{{var.KEY}}`.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: CampaignCreate):
        return campaigns.create(
            req.context.db,
            ctx,
            name=body.name,
            channel=body.channel,
            integration_account_id=body.integration_account_id,
            body=body.body,
            template=body.template.model_dump() if body.template else None,
        )


class CampaignResource:
    @endpoint(
        "Get a campaign",
        permission=MANAGE,
        response=CampaignView,
        description="With live counts (total, pending, queued, sent, delivered, read, failed,"
        " replied, skipped, cancelled) from the recipients' message statuses.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        return campaigns.get(req.context.db, ctx, id)

    @endpoint(
        "Delete a draft campaign",
        permission=MANAGE,
        status=204,
        errors=(409,),
        description="409 `campaign_not_draft` once it was sent or scheduled.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        campaigns.delete(req.context.db, ctx, id)

    @endpoint(
        "Update a draft campaign",
        permission=MANAGE,
        body=CampaignUpdate,
        response=CampaignView,
        errors=(409,),
        description="Only the fields sent change; the content is checked again as on create."
        " 409 `campaign_not_draft` once it was sent or scheduled.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: CampaignUpdate):
        changes = body.model_dump(exclude_unset=True)
        if body.template is not None:
            changes["template"] = body.template.model_dump()
        return campaigns.update(req.context.db, ctx, id, **changes)


class RecipientsResource:
    @endpoint(
        "List campaign recipients",
        permission=MANAGE,
        query=RecipientListQuery,
        response=Page[RecipientView],
        description="In the order they were added; `status` filters.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: RecipientListQuery):
        page = recipients.list_recipients(req.context.db, ctx, id, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})

    @endpoint(
        "Add recipients to a campaign",
        permission=MANAGE,
        body=RecipientsAdd,
        response=RecipientsAdded,
        errors=(409,),
        description="`contact_ids`, `recipients` (ids with per-recipient `variables`) or a"
        " contact `filter` (tags, channel, custom attributes, last inbound time). Duplicates"
        " are ignored. Ids that are not this workspace's contacts on the campaign's channel"
        " answer 422 and nothing is added. 409 unless a draft.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: RecipientsAdd):
        given = [x is not None for x in (body.contact_ids, body.recipients, body.filter)]
        if sum(given) != 1:
            raise ValidationFailed.field(
                "contact_ids", "send exactly one of contact_ids, recipients or filter"
            )
        items = None
        if body.contact_ids is not None:
            items = [{"contact_id": i, "variables": {}} for i in body.contact_ids]
        elif body.recipients is not None:
            items = [r.model_dump() for r in body.recipients]
        return recipients.add(
            req.context.db,
            ctx,
            id,
            recipients=items,
            contact_filter=body.filter.model_dump() if body.filter else None,
            field="recipients" if body.recipients is not None else "contact_ids",
        )

    @endpoint(
        "Clear all recipients from a campaign",
        permission=MANAGE,
        status=204,
        errors=(409,),
        description="409 unless a draft.",
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        recipients.clear(req.context.db, ctx, id)


class SendResource:
    @endpoint(
        "Send or schedule a campaign",
        permission=MANAGE,
        body=CampaignSend,
        response=CampaignView,
        errors=(409,),
        description="Without `scheduled_at`: status `running`, emits campaign.started and"
        " queues `run_campaign`, which creates the messages in paced batches (backing off"
        " while Meta throttles) and emits campaign.completed. With a future `scheduled_at`"
        " (a naive time is in the tenant's timezone): status `scheduled`, started by the"
        " scheduler then; a past one answers 422, and so does a `timezone` without"
        " `scheduled_at` (nothing is sent). 409 unless a draft; 422 without"
        " recipients, without an account of its channel to send from, when the template is no"
        " longer approved, or when the account the"
        " campaign named was deleted (`integration_account_id`). That account deleted"
        " while the campaign runs fails it (`error_code` `account_deleted`), and its"
        " recipients not yet sent with it: they never go out from another account. A"
        " campaign that fails (that, or its template refused) emits campaign.failed with"
        " its `error_code` and `error_message`."
        " `Idempotency-Key` (up to 255 characters, per API key or user): a repeat within"
        " 24 h returns the first answer and sends nothing again (409 while the first is"
        " still running); the key with another campaign or body answers 422.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: CampaignSend):
        # WHY: a client retrying a send whose answer it lost must get that answer, not a
        # 409 it cannot tell from another caller's send (API.md: POSTs that send messages).
        session = req.context.db
        claim, first = idempotency.claim_or_replay(
            session,
            ctx,
            "campaigns",
            "send",
            idempotency_key(req),
            {"campaign_id": str(id), **body.model_dump(mode="json")},
        )
        if first is not None:
            return first
        data = lifecycle.send(
            session, ctx, id, scheduled_at=body.scheduled_at, timezone=body.timezone
        )
        return idempotency.remember(session, claim, data)


class CancelResource:
    @endpoint(
        "Cancel a campaign",
        permission=MANAGE,
        response=CampaignView,
        errors=(409,),
        description="Unsent recipients become `cancelled`, also those whose message still waits"
        " for its send (their messages fail as `campaign_cancelled`); a send already at the"
        " provider goes out, and the next batch does not run. Emits campaign.cancelled. 409"
        " once completed, cancelled or failed.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return lifecycle.cancel(req.context.db, ctx, id)


class PauseResource:
    @endpoint(
        "Pause a running campaign",
        permission=MANAGE,
        response=CampaignView,
        errors=(409,),
        description="Status `paused`: the batch running now finishes, no other starts. 409"
        " unless running.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return lifecycle.pause(req.context.db, ctx, id)


class ResumeResource:
    @endpoint(
        "Resume a paused campaign",
        permission=MANAGE,
        response=CampaignView,
        errors=(409,),
        description="Status `running`, its next batch queued now. 409 unless paused.",
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return lifecycle.resume(req.context.db, ctx, id)


ROUTES = [
    ("/api/campaigns", CampaignsResource()),
    ("/api/campaigns/{id:uuid}", CampaignResource()),
    ("/api/campaigns/{id:uuid}/recipients", RecipientsResource()),
    ("/api/campaigns/{id:uuid}/send", SendResource()),
    ("/api/campaigns/{id:uuid}/cancel", CancelResource()),
    ("/api/campaigns/{id:uuid}/pause", PauseResource()),
    ("/api/campaigns/{id:uuid}/resume", ResumeResource()),
]
