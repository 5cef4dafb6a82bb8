"""Channels: per-tenant integrations, connected accounts, raw inbound payloads and media files.

An *integration* holds a tenant's settings for one channel; an *integration account* is
one connected sender (a WhatsApp number, an Instagram account, a Messenger page, an email
mailbox). Inbound webhooks carry no tenant credentials: the tenant is found through the
account's globally unique ``(channel, external_id)`` (an api account's is unique within
its tenant: its calls name the account by id).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, column_property, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

#: Inbound payload states: ``pending`` waits for ``process_inbound``; the others are final
#: (``failed`` after the actor's retries, ``dropped`` when no account matches).
INBOUND_STATUSES = ("pending", "processed", "failed", "dropped")
#: Integration account states.
ACCOUNT_STATUSES = ("active", "disabled", "error")
#: Where a media file came from.
MEDIA_SOURCES = ("upload", "inbound")
#: Where a media file's bytes are stored.
STORAGE_BACKENDS = ("local", "s3")

_CHANNEL_CHECK = "channel IN ('whatsapp', 'instagram', 'messenger', 'email', 'api')"


class Integration(UUIDPrimaryKey, Timestamps, Base):
    """A tenant's settings for one channel (at most one per channel)."""

    __tablename__ = "integrations"
    __table_args__ = (
        CheckConstraint(_CHANNEL_CHECK, name="channel_known"),
        Index("uq_integrations_tenant_channel", "tenant_id", "channel", unique=True),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(server_default="true")
    #: Non-secret settings; secrets go to ``credentials_encrypted``.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    #: A Fernet token of a JSON object of secrets (see :mod:`shared.channels.accounts`).
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)


class IntegrationAccount(UUIDPrimaryKey, Timestamps, Base):
    """One connected sender of a channel, with its encrypted credentials."""

    __tablename__ = "integration_accounts"
    __table_args__ = (
        CheckConstraint(_CHANNEL_CHECK, name="channel_known"),
        CheckConstraint("status IN ('active', 'disabled', 'error')", name="status_known"),
        # NOTE: global, not per tenant: an inbound webhook finds its tenant through it.
        Index(
            "uq_integration_accounts_channel_external_routed",
            "channel",
            "external_id",
            unique=True,
            postgresql_where=text("channel <> 'api'"),
        ),
        # An api account's id is the tenant's own label (its calls name the account by id).
        Index(
            "uq_integration_accounts_api_external",
            "tenant_id",
            "external_id",
            unique=True,
            postgresql_where=text("channel = 'api'"),
        ),
        Index("ix_integration_accounts_tenant_channel", "tenant_id", "channel", "created_at"),
        Index(
            "uq_integration_accounts_default",
            "tenant_id",
            "channel",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    #: WhatsApp phone_number_id, Messenger page id, Instagram account id, or the
    #: lower-cased email address.
    external_id: Mapped[str] = mapped_column(String(255))
    #: Non-secret settings: waba_id, display_phone_number, smtp_host, smtp_port, ...
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    #: A Fernet token of a JSON object: access_token, app_secret, verify_token (Meta);
    #: smtp_password, inbound_signing_key (email).
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(server_default="false")
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    #: SHA-256 (hex) of the ``verify_token`` credential: the public GET handshake finds
    #: a matching account with one indexed lookup instead of decrypting every account.
    verify_token_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    #: Whether the channel's integration is enabled, read with the account (a correlated
    #: subquery, no column): a switched-off channel's accounts work as disabled ones
    #: (:func:`shared.channels.accounts.switched_off`).
    channel_enabled: Mapped[bool] = column_property(
        select(Integration.enabled)
        .where(Integration.id == integration_id)
        .correlate_except(Integration)
        .scalar_subquery()
    )


class IntegrationAccountTombstone(Base):
    """The id a tenant's deleted sender had, kept for the day it connects that sender again.

    WHY: conversations and api contacts name their account by id, with no foreign key
    (they outlive it), and a conversation refuses to answer from another account once it
    is gone. The same number, page or address connected again is not another account: it
    takes this id back (:mod:`shared.channels.tombstones`), and the row goes. Per tenant:
    another tenant connecting the same sender gets a new id.
    """

    __tablename__ = "integration_account_tombstones"
    __table_args__ = (CheckConstraint(_CHANNEL_CHECK, name="channel_known"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: The deleted account's ``external_id``, normalised as it was stored.
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: The deleted account's id (no foreign key: the account is gone).
    account_id: Mapped[uuid.UUID]
    deleted_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class InboundEvent(UUIDPrimaryKey, Base):
    """One raw provider callback (or one Meta entry's worth), stored before any parsing.

    ``(channel, provider_event_id)`` is the dedupe: a provider's retry of the same
    payload inserts nothing.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processed', 'failed', 'dropped')", name="status_known"
        ),
        Index(
            "uq_inbound_events_channel_provider_event", "channel", "provider_event_id", unique=True
        ),
        Index("ix_inbound_events_tenant_received", "tenant_id", "received_at"),
        # PERF: the sweeper's query; finished rows cost it nothing.
        Index(
            "ix_inbound_events_pending",
            "sweep_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # PERF: the retention purge's oldest-final-first scan.
        Index(
            "ix_inbound_events_final_received",
            "received_at",
            postgresql_where=text("status IN ('processed', 'failed', 'dropped')"),
        ),
    )

    #: whatsapp, instagram, messenger or email (the POST route, refined by the payload).
    channel: Mapped[str] = mapped_column(String(16))
    provider_event_id: Mapped[str] = mapped_column(String(512))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE")
    )
    #: NOTE: no foreign key: the ack path may store for an account deleted a moment ago
    #: (its resolution is cached for seconds); processing then drops the row.
    account_id: Mapped[uuid.UUID | None]
    #: The JSON payload as received (Meta); for email, the verified JSON envelope.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: Request headers worth keeping (signature, user agent, content type).
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    received_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: When the sweeper last (re-)enqueued it; a pending row is swept again a while after.
    sweep_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    #: What processing produced: counts of messages/statuses and per-item errors.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    processed_at: Mapped[dt.datetime | None]


class MediaFile(UUIDPrimaryKey, Base):
    """A file sent or received: an agent's upload or an inbound attachment.

    Inbound rows are created by ``process_inbound`` before their bytes are fetched
    (``storage_backend`` and ``fetched_at`` stay null until then); message attachments
    reference them by ``media_id``.
    """

    __tablename__ = "media_files"
    __table_args__ = (
        CheckConstraint("source IN ('upload', 'inbound')", name="source_known"),
        CheckConstraint(
            "storage_backend IS NULL OR storage_backend IN ('local', 's3')", name="backend_known"
        ),
        Index("ix_media_files_tenant_created", "tenant_id", "created_at"),
        # The files the prefetch sweep re-drives (``shared.channels.media_prefetch``).
        Index(
            "ix_media_files_owed",
            "created_at",
            postgresql_where=text("source = 'inbound' AND storage_key IS NULL"),
        ),
        Index(
            "ix_media_files_provider",
            "tenant_id",
            "channel",
            "provider_media_id",
            postgresql_where=text("provider_media_id IS NOT NULL"),
        ),
        # The foreign key's ON DELETE (tests/migrations/test_foreign_key_indexes.py).
        Index(
            "ix_media_files_account",
            "account_id",
            postgresql_where=text("account_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_accounts.id", ondelete="SET NULL")
    )
    #: WhatsApp media id, or the attachment URL Meta sent for Messenger/Instagram.
    provider_media_id: Mapped[str | None] = mapped_column(Text)
    storage_backend: Mapped[str | None] = mapped_column(String(8))
    storage_key: Mapped[str | None] = mapped_column(String(1024))
    mime_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None]
    filename: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    fetched_at: Mapped[dt.datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
