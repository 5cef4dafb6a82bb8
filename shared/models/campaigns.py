"""Campaigns: one message to many contacts, sent in paced batches by ``run_campaign``.

A campaign owns one ``campaign_recipients`` row per contact (unique per campaign, so
adding the same contact twice adds it once). A recipient moves ``pending`` ->
``queued`` (its outbound message created, in the transaction that marks the row) ->
``sent`` / ``delivered`` / ``read`` / ``failed`` as the provider's statuses arrive;
``skipped`` (opted out) and ``cancelled`` (the campaign was cancelled) never send.
The counts a campaign shows are a ``GROUP BY`` over these rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "completed", "cancelled", "failed")
RECIPIENT_STATUSES = (
    "pending",
    "queued",
    "sent",
    "delivered",
    "read",
    "failed",
    "skipped",
    "cancelled",
)


def _known(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Campaign(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(_known("status", CAMPAIGN_STATUSES), name="status_known"),
        CheckConstraint("(body IS NULL) <> (template IS NULL)", name="body_or_template"),
        Index("ix_campaigns_tenant_created", "tenant_id", text("created_at DESC"), "id"),
        # PERF: the scheduler's two probes: scheduled ones due, running ones whose job was lost.
        Index(
            "ix_campaigns_scheduled_due",
            "scheduled_at",
            postgresql_where=text("status = 'scheduled'"),
        ),
        Index(
            "ix_campaigns_running_next",
            "next_batch_at",
            postgresql_where=text("status = 'running'"),
        ),
        # The foreign key's ON DELETE (tests/migrations/test_foreign_key_indexes.py).
        Index(
            "ix_campaigns_integration_account",
            "integration_account_id",
            postgresql_where=text("integration_account_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    #: The sending account; null: the channel's default account when the campaign runs.
    integration_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_accounts.id", ondelete="SET NULL")
    )
    #: Whether ``integration_account_id`` was named: null with this set means the named
    #: account was deleted (SET NULL), and the campaign must not fall back to the default.
    account_named: Mapped[bool] = mapped_column(server_default="false")
    body: Mapped[str | None] = mapped_column(Text)
    #: A WhatsApp template (``name``, ``language``, ``components``) with placeholders.
    template: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    scheduled_at: Mapped[dt.datetime | None]
    timezone: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    #: Bumped by every batch: a job carrying an older step is a duplicate and does nothing.
    step: Mapped[int] = mapped_column(server_default="0")
    #: When the next batch may run (pacing, or a backoff after Meta throttled the last one).
    next_batch_at: Mapped[dt.datetime | None]
    #: The current throttling backoff in seconds (0: not throttled).
    backoff_seconds: Mapped[int] = mapped_column(server_default="0")
    #: The step of the last batch that claimed recipients: the sends a throttle check reads.
    claim_step: Mapped[int | None]
    #: When the last batch ran: a send throttled since then means "slow down".
    checked_at: Mapped[dt.datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class CampaignRecipient(Base):
    __tablename__ = "campaign_recipients"
    __table_args__ = (
        CheckConstraint(_known("status", RECIPIENT_STATUSES), name="status_known"),
        Index("uq_campaign_recipients_contact", "campaign_id", "contact_id", unique=True),
        # The batch claim (pending, in id order), the counts and the status filter.
        Index("ix_campaign_recipients_status", "campaign_id", "status", "id"),
        # The throttle check reads the sends of the last batch.
        Index("ix_campaign_recipients_batch", "campaign_id", "batch"),
        # The status callbacks find a recipient by its message.
        Index(
            "ix_campaign_recipients_message",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
        # A contact's reply marks the recipients that messaged it.
        Index(
            "ix_campaign_recipients_contact_sent",
            "tenant_id",
            "contact_id",
            postgresql_where=text("message_id IS NOT NULL AND replied_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    #: Per-recipient values for the message's ``{{var.name}}`` placeholders.
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    #: The batch (campaign ``step``) that processed it: its sends are what a throttle check reads.
    batch: Mapped[int | None]
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    processed_at: Mapped[dt.datetime | None]
    replied_at: Mapped[dt.datetime | None]
