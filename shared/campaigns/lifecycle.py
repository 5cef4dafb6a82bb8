"""A campaign's life after its draft: send now or later, pause, resume, cancel, and the start.

``draft`` -> ``running`` (send now: ``campaign.started`` and the first batch queued, in
the request's transaction) or ``scheduled`` (a future ``scheduled_at``; a naive time is
wall-clock time in the tenant's timezone) -> ``running`` when
:func:`start_due` (the scheduler's ``start_due_campaigns``) finds it due.
``running`` <-> ``paused``; any of them -> ``cancelled`` (pending recipients
``cancelled``, ``campaign.cancelled``). Pause and cancel change the row only: the
batch running now finishes, the next finds the status and stops.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import activity
from shared.campaigns import queue
from shared.campaigns.campaigns import (
    check_content,
    get_campaign,
    named_account_deleted,
    require_draft,
    sending_account,
    view,
)
from shared.context import Ctx
from shared.errors import Conflict, ValidationFailed
from shared.models import Campaign, CampaignRecipient, Tenant
from shared.timekeeping import schedules
from shared.timekeeping.scheduled_messages import resolve_run_at
from shared.timekeeping.working_hours import validate_timezone

log = logging.getLogger(__name__)

#: The furthest ahead a campaign may be scheduled.
MAX_AHEAD = dt.timedelta(days=366)
#: A running campaign whose next batch is this late lost its job: the scheduler re-sends it.
REDRIVE_AFTER = dt.timedelta(seconds=60)
#: Campaigns one scheduler run starts or re-drives.
CLAIM_BATCH = 500
#: Pending recipients a cancel marks per statement (see :func:`close_pending`).
CANCEL_CHUNK = 10_000


def close_pending(session: Session, campaign_id: uuid.UUID, chunk: int, **values: Any) -> int:
    """Set ``values`` on the campaign's pending recipients, ``chunk`` per statement, in this
    transaction; how many.

    WHY in parts: one ``UPDATE`` of every pending recipient took 3.7 s at 300,000 and
    passes the statement timeout at about a million: the cancel answered 500 and the
    campaign went on sending. Each part is a range of the status index (the rows it
    marks leave ``pending``, so the next part starts past them).
    """
    closed = 0
    while True:
        part = (
            select(CampaignRecipient.id)
            .where(
                CampaignRecipient.campaign_id == campaign_id,
                CampaignRecipient.status == "pending",
            )
            .order_by(CampaignRecipient.id)
            .limit(chunk)
            .scalar_subquery()
        )
        done = session.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.id.in_(part))
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        closed += done
        if done < chunk:
            return closed


class NotRunning(Conflict):
    code = "campaign_not_running"


def _emit(session: Session, ctx: Ctx, event_type: str, campaign: Campaign, **extra: Any) -> dict:
    data = view(session, campaign)
    activity.record_change(
        session, ctx, event_type, "campaign", campaign.id, data | extra, after=data
    )
    return data


def start(session: Session, ctx: Ctx, campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
    """Mark the (locked) campaign running, emit ``campaign.started``, queue its first batch."""
    campaign.status, campaign.started_at = "running", now
    campaign.next_batch_at = now
    campaign.step += 1
    session.flush()
    queue.enqueue_after_commit(session, campaign.id, campaign.step)
    return _emit(session, ctx, "campaign.started", campaign)


def send(
    session: Session,
    ctx: Ctx,
    campaign_id: uuid.UUID,
    *,
    scheduled_at: dt.datetime | None = None,
    timezone: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``POST /api/campaigns/{id}/send``: start now, or schedule (422 for a past time)."""
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    require_draft(campaign, "sent")
    if timezone is not None and scheduled_at is None:
        # WHY: the zone only reads a time; alone, the client meant a schedule whose time
        # got lost (or a zone misspelt): starting now instead cannot be taken back.
        raise ValidationFailed.field(
            "timezone", "give scheduled_at with a timezone (without either, it is sent now)"
        )
    if named_account_deleted(campaign):
        raise ValidationFailed.field(
            "integration_account_id",
            "the account this campaign named was deleted: name another, or null for the"
            " channel's default",
        )
    # The content is checked again: the template may have lost its approval since.
    check_content(
        session,
        ctx,
        channel=campaign.channel,
        account_id=campaign.integration_account_id,
        body=campaign.body,
        template=campaign.template,
    )
    # WHY: a draft may be written before its channel is connected, but started without
    # an account it failed at its first batch with every recipient, for good.
    account_id = campaign.integration_account_id
    if sending_account(session, ctx.tenant_id, campaign.channel, account_id) is None:
        raise ValidationFailed.field(
            "integration_account_id",
            f"the workspace has no {campaign.channel} account to send from: connect one",
        )
    has_recipients = session.scalar(
        select(CampaignRecipient.id).where(CampaignRecipient.campaign_id == campaign.id).limit(1)
    )
    if has_recipients is None:
        raise ValidationFailed.field("recipients", "add recipients before sending")
    now = now or schedules.db_now(session)
    if scheduled_at is None:
        return start(session, ctx, campaign, now)
    if timezone is not None and validate_timezone(timezone):
        raise ValidationFailed.field("timezone", "expected an IANA timezone such as Asia/Jakarta")
    timezone = timezone or schedules.tenant_timezone(session, ctx.tenant_id)
    try:
        instant = resolve_run_at(scheduled_at, timezone)
    except ValidationFailed as exc:
        raise ValidationFailed.field("scheduled_at", exc.details[0]["message"]) from exc
    if instant <= now:
        raise ValidationFailed.field("scheduled_at", "must be in the future")
    if instant > now + MAX_AHEAD:
        raise ValidationFailed.field("scheduled_at", "at most 366 days ahead")
    before = view(session, campaign)
    campaign.status, campaign.scheduled_at, campaign.timezone = "scheduled", instant, timezone
    data = view(session, campaign)
    activity.record(
        session, ctx, "campaign.scheduled", "campaign", campaign.id, before=before, after=data
    )
    return data


def cancel(session: Session, ctx: Ctx, campaign_id: uuid.UUID) -> dict[str, Any]:
    """Cancel a campaign not yet finished: its pending recipients are never sent."""
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    if campaign.status in ("completed", "cancelled", "failed"):
        raise Conflict(f"The campaign is {campaign.status}; there is nothing to cancel")
    now = schedules.db_now(session)
    close_pending(session, campaign.id, CANCEL_CHUNK, status="cancelled", processed_at=now)
    campaign.status, campaign.cancelled_at, campaign.next_batch_at = "cancelled", now, None
    return _emit(session, ctx, "campaign.cancelled", campaign)


def pause(session: Session, ctx: Ctx, campaign_id: uuid.UUID) -> dict[str, Any]:
    """Stop a running campaign after its current batch."""
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    if campaign.status != "running":
        raise NotRunning(f"The campaign is {campaign.status}; only a running one can be paused")
    before = view(session, campaign)
    campaign.status, campaign.next_batch_at = "paused", None
    data = view(session, campaign)
    activity.record(
        session, ctx, "campaign.paused", "campaign", campaign.id, before=before, after=data
    )
    return data


def resume(session: Session, ctx: Ctx, campaign_id: uuid.UUID) -> dict[str, Any]:
    """Run a paused campaign again: its next batch is queued now."""
    campaign = get_campaign(session, ctx, campaign_id, for_update=True)
    if campaign.status != "paused":
        raise Conflict(f"The campaign is {campaign.status}; only a paused one can be resumed")
    before = view(session, campaign)
    campaign.status = "running"
    campaign.next_batch_at = schedules.db_now(session)
    campaign.step += 1
    session.flush()
    queue.enqueue_after_commit(session, campaign.id, campaign.step)
    data = view(session, campaign)
    activity.record(
        session, ctx, "campaign.resumed", "campaign", campaign.id, before=before, after=data
    )
    return data


def start_due(session: Session, *, now: dt.datetime | None = None) -> dict[str, int]:
    """The scheduler's ``start_due_campaigns``: start scheduled campaigns now due, and send
    again the batch of running campaigns whose job was lost (``next_batch_at`` long past).

    SKIP LOCKED: a campaign a batch holds right now is neither started nor re-driven.
    """
    now = now or schedules.db_now(session)
    # A suspended workspace's campaigns wait: started or re-driven once it is reactivated.
    active = select(Tenant.id).where(Tenant.id == Campaign.tenant_id, Tenant.status == "active")
    due = session.scalars(
        select(Campaign)
        .where(Campaign.status == "scheduled", Campaign.scheduled_at <= now, active.exists())
        .order_by(Campaign.scheduled_at)
        .limit(CLAIM_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for campaign in due:
        start(session, Ctx.system(campaign.tenant_id), campaign, now)
    lost = session.scalars(
        select(Campaign)
        .where(
            Campaign.status == "running",
            Campaign.next_batch_at <= now - REDRIVE_AFTER,
            active.exists(),
        )
        .order_by(Campaign.next_batch_at)
        .limit(CLAIM_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for campaign in lost:
        # The same step: whichever of the two jobs runs first makes the batch (and moves
        # the step on), the other is then stale. WHY not a new step: a job only late (a
        # backlog on the queue) was made stale by it, and so was its copy, late in its
        # turn: under a backlog of over a minute no batch ever ran. next_batch_at = now
        # spaces the re-drives a minute apart.
        campaign.next_batch_at = now
        queue.enqueue_after_commit(session, campaign.id, campaign.step)
    if lost:
        log.warning("re-driving %d campaign batch(es) whose job was lost", len(lost))
    session.flush()
    return {"started": len(due), "redriven": len(lost)}
