"""Campaign drafts: create, read (with live counts), list, edit and delete.

Only a ``draft`` may be edited or deleted (409 otherwise). The content is checked
when it is written: a WhatsApp campaign sends a template, which must exist for the
sending account, be APPROVED and be given its parameters (the very check a template
reply passes, 422 naming what is wrong); other channels send a body. Placeholders
are checked by :mod:`shared.campaigns.content`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from shared import activity
from shared.campaigns import content
from shared.channels.account_lookup import account_for
from shared.channels.templates import sending as template_sending
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import Campaign, CampaignRecipient, IntegrationAccount
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.schemas.campaigns import CampaignCounts, CampaignView

#: Recipient statuses each count includes (``sent`` counts what got at least that far).
_COUNTED = {
    "pending": ("pending",),
    "queued": ("queued",),
    "sent": ("sent", "delivered", "read"),
    "delivered": ("delivered", "read"),
    "read": ("read",),
    "failed": ("failed",),
    "skipped": ("skipped",),
    "cancelled": ("cancelled",),
}


class NotDraft(Conflict):
    code = "campaign_not_draft"


def get_campaign(
    session: Session, ctx: Ctx, campaign_id: uuid.UUID, *, for_update: bool = False
) -> Campaign:
    """The tenant's campaign (another tenant's answers 404 like an unknown id)."""
    query = select(Campaign).where(Campaign.tenant_id == ctx.tenant_id, Campaign.id == campaign_id)
    if for_update:
        query = query.with_for_update()
    campaign = session.scalars(query).one_or_none()
    if campaign is None:
        raise NotFound("Campaign not found")
    return campaign


def require_draft(campaign: Campaign, what: str) -> None:
    if campaign.status != "draft":
        raise NotDraft(f"The campaign is {campaign.status}: only a draft can be {what}")


def counts(session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """The live counts, one ``GROUP BY`` over the recipients (served by their status index)."""
    rows = session.execute(
        select(CampaignRecipient.status, func.count(), func.count(CampaignRecipient.replied_at))
        .where(CampaignRecipient.campaign_id == campaign_id)
        .group_by(CampaignRecipient.status)
    ).all()
    by_status = {status: n for status, n, _ in rows}
    result = {key: sum(by_status.get(s, 0) for s in statuses) for key, statuses in _COUNTED.items()}
    result["total"] = sum(by_status.values())
    result["replied"] = sum(replied for _, _, replied in rows)
    return CampaignCounts(**result).model_dump()


def view(session: Session, campaign: Campaign) -> dict[str, Any]:
    session.flush()
    session.refresh(campaign)
    data = {
        column.key: getattr(campaign, column.key)
        for column in Campaign.__table__.columns
        if column.key in CampaignView.model_fields
    }
    return CampaignView.model_validate(data | {"counts": counts(session, campaign.id)}).model_dump(
        mode="json"
    )


def sending_account(
    session: Session, tenant_id: uuid.UUID, channel: str, account_id: uuid.UUID | None
) -> IntegrationAccount | None:
    """The account the campaign sends from: the one named, else the channel's default."""
    return account_for(session, tenant_id, account_id, channel)


#: Why a campaign whose named account was deleted sends nothing more.
ACCOUNT_DELETED = "account_deleted"


def named_account_deleted(campaign: Campaign) -> bool:
    """Whether the account the campaign named was deleted (its id set null by the FK).

    WHY: null otherwise means "the channel's default"; a campaign that chose its number
    must not go on from another one.
    """
    return campaign.account_named and campaign.integration_account_id is None


def check_content(
    session: Session,
    ctx: Ctx,
    *,
    channel: str,
    account_id: uuid.UUID | None,
    body: str | None,
    template: dict[str, Any] | None,
    newly_named: bool = False,
) -> dict[str, Any] | None:
    """422 unless the content suits the channel; the template as it will be stored.

    The template is stored as given: a media header given no parameter takes the
    template's header media URL when each batch makes its messages, not the one set now.
    An account ``newly_named`` (not the campaign's already) is share-locked: read
    unlocked, one whose disconnection had not committed yet was found, and the campaign's
    foreign key then waited for the disconnection and failed (the net's bare 409). The
    campaign's own account is left unlocked: its disconnection, holding it, waits for the
    campaign (to set the key null) that an edit holds.
    """
    if account_id is not None:
        query = select(IntegrationAccount).where(
            IntegrationAccount.tenant_id == ctx.tenant_id, IntegrationAccount.id == account_id
        )
        if newly_named:
            query = query.with_for_update(read=True, key_share=True)
        account = session.scalar(query)
        if account is None or account.channel != channel:
            raise ValidationFailed.field(
                "integration_account_id", f"no {channel} account of this tenant has this id"
            )
    if channel == "whatsapp":
        if template is None or body is not None:
            raise ValidationFailed.field(
                "template", "a WhatsApp campaign sends an approved template (and no body)"
            )
        account = sending_account(session, ctx.tenant_id, channel, account_id)
        if account is None:
            raise ValidationFailed.field(
                "integration_account_id", "the tenant has no default WhatsApp account: name one"
            )
        content.check(None, template)
        template_sending.check_for_account(session, ctx.tenant_id, account.id, template)
    else:
        if body is None or template is not None:
            raise ValidationFailed.field("body", f"a {channel} campaign sends a body")
        content.check(body, None)
    return template


def create(
    session: Session,
    ctx: Ctx,
    *,
    name: str,
    channel: str,
    integration_account_id: uuid.UUID | None = None,
    body: str | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    template = check_content(
        session,
        ctx,
        channel=channel,
        account_id=integration_account_id,
        body=body,
        template=template,
        newly_named=True,
    )
    campaign = Campaign(
        tenant_id=ctx.tenant_id,
        name=name,
        channel=channel,
        integration_account_id=integration_account_id,
        account_named=integration_account_id is not None,
        body=body,
        template=template,
        status="draft",
        created_by=ctx.user_id,
    )
    session.add(campaign)
    data = view(session, campaign)
    activity.record(session, ctx, "campaign.created", "campaign", campaign.id, after=data)
    return data


def get(session: Session, ctx: Ctx, campaign_id: uuid.UUID) -> dict[str, Any]:
    return view(session, get_campaign(session, ctx, campaign_id))


def list_campaigns(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> Page[dict[str, Any]]:
    """Newest first, each with its counts (one small query per campaign on the page)."""
    query = select(Campaign).where(Campaign.tenant_id == ctx.tenant_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    if cursor:
        query = query.where(
            tuple_(Campaign.created_at, Campaign.id) < tuple_(*decode_cursor(cursor))
        )
    rows = session.scalars(
        query.order_by(Campaign.created_at.desc(), Campaign.id.desc()).limit(limit + 1)
    ).all()
    items = [view(session, row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
    return Page(items, next_cursor)


def update(session: Session, ctx: Ctx, campaign_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    """Change the fields sent; content is re-checked as a whole. 409 unless a draft."""
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    require_draft(campaign, "edited")
    before = view(session, campaign)
    fields = {
        "integration_account_id": campaign.integration_account_id,
        "body": campaign.body,
        "template": campaign.template,
    }
    fields.update({k: v for k, v in changes.items() if k in fields})
    if "body" in changes and changes["body"] is not None:
        fields["template"] = changes.get("template")
    if "template" in changes and changes["template"] is not None:
        fields["body"] = changes.get("body")
    template = check_content(
        session,
        ctx,
        channel=campaign.channel,
        account_id=fields["integration_account_id"],
        body=fields["body"],
        template=fields["template"],
        newly_named=fields["integration_account_id"] != campaign.integration_account_id,
    )
    if "name" in changes:
        campaign.name = changes["name"]
    campaign.integration_account_id = fields["integration_account_id"]
    if "integration_account_id" in changes:  # a new choice: an account, or the default
        campaign.account_named = changes["integration_account_id"] is not None
    campaign.body, campaign.template = fields["body"], template
    data = view(session, campaign)
    activity.record(
        session, ctx, "campaign.updated", "campaign", campaign.id, before=before, after=data
    )
    return data


def delete(session: Session, ctx: Ctx, campaign_id: uuid.UUID) -> None:
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    require_draft(campaign, "deleted")
    before = view(session, campaign)
    session.delete(campaign)
    session.flush()
    activity.record(session, ctx, "campaign.deleted", "campaign", campaign_id, before=before)
