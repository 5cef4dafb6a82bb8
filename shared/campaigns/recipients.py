"""A draft campaign's recipients: added by contact ids or by a contact filter, listed, cleared.

Adding is one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: a contact already on
the campaign (or named twice) is added once, and only contacts of the campaign's
tenant and channel can be selected. Contact ids that are not the tenant's contacts
on that channel answer 422 listing them, and nothing is added.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.campaigns.campaigns import get_campaign, require_draft
from shared.context import Ctx
from shared.digits import ascii_digits
from shared.errors import ValidationFailed
from shared.models import CampaignRecipient, Contact
from shared.pagination import InvalidCursor, Page
from shared.schemas.campaigns import RecipientView
from shared.timekeeping import schedules

#: Ids one request may name (a bigger list goes in several requests, or a filter).
MAX_IDS = 10_000
#: Contacts a filter adds per statement (see ``_add_filtered``).
FILTER_CHUNK = 10_000
#: The largest recipient id (a bigint): a cursor past it is not one of this list's.
_LAST_ID = 2**63 - 1


def _total(session: Session, campaign_id: uuid.UUID) -> int:
    return session.scalar(select(func.count()).where(CampaignRecipient.campaign_id == campaign_id))


def add(
    session: Session,
    ctx: Ctx,
    campaign_id: uuid.UUID,
    *,
    recipients: list[dict[str, Any]] | None = None,
    contact_filter: dict[str, Any] | None = None,
    field: str = "contact_ids",
) -> dict[str, int]:
    """Add ``recipients`` (``[{"contact_id", "variables"}]``) or every contact the filter selects.

    The filter's keys (all optional, all must hold): ``tags`` (the contact has every
    one), ``custom_attributes`` (JSON containment), ``last_inbound_after`` /
    ``last_inbound_before`` (a naive time is the tenant's wall-clock time); ``channel``
    must be the campaign's (contacts are per channel). ``field`` is the body's field
    that carried the ids (``contact_ids`` or ``recipients``): a 422 names it.
    """
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    require_draft(campaign, "given recipients")
    if (recipients is None) == (contact_filter is None):
        raise ValidationFailed.field("contact_ids", "send contact_ids, recipients or a filter")
    if recipients is not None:
        added = _add_ids(session, ctx, campaign.id, campaign.channel, recipients, field)
    else:
        added = _add_filtered(session, ctx, campaign.id, campaign.channel, contact_filter or {})
    result = {"added": added, "total": _total(session, campaign.id)}
    activity.record(
        session, ctx, "campaign.recipients_added", "campaign", campaign.id, after=result
    )
    return result


def _add_ids(
    session: Session,
    ctx: Ctx,
    campaign_id: uuid.UUID,
    channel: str,
    recipients: list[dict[str, Any]],
    field: str = "contact_ids",
) -> int:
    wanted: dict[uuid.UUID, dict[str, Any]] = {}
    for item in recipients:
        wanted.setdefault(item["contact_id"], item.get("variables") or {})
    if len(wanted) > MAX_IDS:
        raise ValidationFailed.field(field, f"at most {MAX_IDS} ids per request")
    found = set(
        session.scalars(
            select(Contact.id).where(
                Contact.tenant_id == ctx.tenant_id,
                Contact.channel == channel,
                Contact.id.in_(list(wanted)),
            )
        )
    )
    unknown = [contact_id for contact_id in wanted if contact_id not in found]
    if unknown:
        # APPSEC: another tenant's contact and a missing one read the same.
        raise ValidationFailed(
            f"{len(unknown)} contact id(s) are not {channel} contacts of this workspace;"
            " no recipient was added",
            details=[
                {"field": field, "message": f"unknown {channel} contact {contact_id}"}
                for contact_id in unknown[:50]
            ],
        )
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "campaign_id": campaign_id,
            "contact_id": contact_id,
            "variables": variables,
        }
        for contact_id, variables in wanted.items()
    ]
    if not rows:
        return 0  # NOTE: insert().values([]) would insert one row of defaults
    inserted = session.scalars(
        insert(CampaignRecipient)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"])
        .returning(CampaignRecipient.id)
    ).all()
    return len(inserted)


def _add_filtered(
    session: Session, ctx: Ctx, campaign_id: uuid.UUID, channel: str, contact_filter: dict[str, Any]
) -> int:
    if contact_filter.get("channel") not in (None, channel):
        raise ValidationFailed.field(
            "filter.channel", f"the campaign sends on {channel}; contacts are per channel"
        )
    conditions = [Contact.tenant_id == ctx.tenant_id, Contact.channel == channel]
    if contact_filter.get("tags"):
        conditions.append(Contact.tags.contains(list(contact_filter["tags"])))
    if contact_filter.get("custom_attributes"):
        conditions.append(Contact.custom_attributes.contains(contact_filter["custom_attributes"]))
    zone = ZoneInfo(schedules.tenant_timezone(session, ctx.tenant_id))
    after = _instant(contact_filter.get("last_inbound_after"), zone)
    before = _instant(contact_filter.get("last_inbound_before"), zone)
    if after is not None:
        conditions.append(Contact.last_inbound_at >= after)
    if before is not None:
        conditions.append(Contact.last_inbound_at < before)
    # WHY in parts: one INSERT ... SELECT of the whole audience ran past the statement
    # timeout at about a million contacts (300,000 took 6.9 s), and nothing was added.
    # The ids are read through a server-side cursor and inserted FILTER_CHUNK at a time,
    # in this transaction: still all or nothing, each statement bounded.
    chosen = session.execute(
        select(Contact.id).where(and_(*conditions)),
        execution_options={"yield_per": FILTER_CHUNK},
    )
    added = 0
    for part in chosen.scalars().partitions():
        params = {"tenant": ctx.tenant_id, "campaign": campaign_id, "ids": list(part)}
        added += session.execute(_ADD_CONTACTS, params).rowcount
    return added


#: One part of a filter's audience added (arrays: one statement text whatever the part).
_ADD_CONTACTS = text(
    """
    INSERT INTO campaign_recipients (tenant_id, campaign_id, contact_id)
    SELECT :tenant, :campaign, k.id FROM unnest(CAST(:ids AS uuid[])) AS k(id)
        ON CONFLICT (campaign_id, contact_id) DO NOTHING
    """
)


def _instant(value: dt.datetime | None, zone: ZoneInfo) -> dt.datetime | None:
    """``value``, a naive one read as wall-clock time in ``zone`` (the tenant's), as a
    naive ``scheduled_at`` is; else the database server's timezone would decide."""
    if value is None or (value.tzinfo is not None and value.utcoffset() is not None):
        return value
    return value.replace(tzinfo=zone)


def clear(session: Session, ctx: Ctx, campaign_id: uuid.UUID) -> None:
    """Remove every recipient of a draft (409 once sent)."""
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    require_draft(campaign, "cleared of recipients")
    removed = session.execute(
        CampaignRecipient.__table__.delete().where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.tenant_id == ctx.tenant_id,
        )
    ).rowcount
    activity.record(
        session,
        ctx,
        "campaign.recipients_cleared",
        "campaign",
        campaign.id,
        before={"total": removed},
    )


def list_recipients(
    session: Session,
    ctx: Ctx,
    campaign_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> Page[dict[str, Any]]:
    """In the order they were added; the cursor is the last id seen."""
    campaign = get_campaign(session, ctx, campaign_id)
    query = select(CampaignRecipient).where(
        CampaignRecipient.tenant_id == ctx.tenant_id, CampaignRecipient.campaign_id == campaign.id
    )
    if status is not None:
        query = query.where(CampaignRecipient.status == status)
    if cursor:
        if not ascii_digits(cursor) or len(cursor) > 19 or int(cursor) > _LAST_ID:
            detail = {"field": "cursor", "message": "not a cursor of this list"}
            raise InvalidCursor("Invalid cursor", details=[detail])
        query = query.where(CampaignRecipient.id > int(cursor))
    rows = session.scalars(query.order_by(CampaignRecipient.id).limit(limit + 1)).all()
    items = [RecipientView.data(row) for row in rows[:limit]]
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return Page(items, next_cursor)
