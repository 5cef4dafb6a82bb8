"""WhatsApp message templates, per integration account, and each account's template sync.

A template is Meta's: it lives in the WhatsApp Business Account (WABA) and is reviewed
there. ``wa_templates`` is our copy, one row per (account, name, language): what
agents pick from, what a template send is checked against before Meta is called, and
what the review webhook and the sync keep up to date.

``wa_template_syncs`` is one row per WhatsApp account: when its next scheduled sync
is due (``due_at``, every 6 h), the state of its last sync (``queued``, ``running``,
``succeeded``, ``failed``), and the job (``jobs`` row) of the request that asked for it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

SYNC_STATUSES = ("queued", "running", "succeeded", "failed")


class WaTemplate(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "wa_templates"
    __table_args__ = (
        # Meta's own identity of a template inside a WABA: its name and language.
        Index(
            "uq_wa_templates_account_name_language",
            "integration_account_id",
            "name",
            "language",
            unique=True,
        ),
        # PERF: the list, newest first, per tenant (filters narrow it further).
        Index("ix_wa_templates_tenant_created", "tenant_id", text("created_at DESC"), "id"),
        # The review webhook finds a template by Meta's id.
        Index("ix_wa_templates_meta_template", "meta_template_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    integration_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integration_accounts.id", ondelete="CASCADE")
    )
    #: Meta's template id (a numeric string).
    meta_template_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    #: Meta's language code: ``en``, ``en_US``, ``pt_BR``...
    language: Mapped[str] = mapped_column(String(16))
    #: ``MARKETING``, ``UTILITY`` or ``AUTHENTICATION``.
    category: Mapped[str] = mapped_column(String(32))
    #: Meta's status: ``APPROVED``, ``PENDING``, ``REJECTED``, ``PAUSED``, ``DISABLED``,
    #: ``IN_APPEAL``, ``PENDING_DELETION``, ``ARCHIVED``, ``LIMIT_EXCEEDED``; ``DELETED``
    #: when a sync no longer finds it at Meta.
    status: Mapped[str] = mapped_column(String(32))
    #: Meta's components (HEADER, BODY, FOOTER, BUTTONS) as Meta lists them.
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    #: ``POSITIONAL`` ({{1}}) or ``NAMED`` ({{first_name}}).
    parameter_format: Mapped[str] = mapped_column(String(16), server_default="POSITIONAL")
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    quality_score: Mapped[str | None] = mapped_column(String(32))
    #: The media a media header (IMAGE, VIDEO, DOCUMENT) sends when a send gives none.
    header_media_url: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    #: When the status last changed by a review result (the webhook) or a sync; a sync
    #: whose listing began before it keeps the newer status.
    status_updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class WaTemplateSync(Base):
    __tablename__ = "wa_template_syncs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name="status_known"
        ),
        # PERF: the scheduler's claim reads only the due rows.
        Index("ix_wa_template_syncs_due", "due_at"),
    )

    integration_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integration_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    #: When the scheduler next syncs the account (pushed 6 h ahead by each claim).
    due_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: When a sync was last sent to the worker; queued or running long after it, re-sent.
    enqueued_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    #: When the listing of the last applied sync began: an older listing is not applied.
    listed_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    #: The ``jobs`` row of the request that asked for this sync (reported to when done).
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    #: ``{"templates", "created", "updated", "removed", "graph_calls"}`` of the last sync.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
