"""The inbox: contacts, conversations, messages, and what agents attach to them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

#: Channels a conversation or contact can live on.
CHANNELS = ("whatsapp", "instagram", "messenger", "email", "api")


class Division(UUIDPrimaryKey, Timestamps, Base):
    """A team of agents (sales, support...); conversations can be routed to one."""

    __tablename__ = "divisions"
    __table_args__ = (
        Index("uq_divisions_tenant_name", "tenant_id", func.lower(text("name")), unique=True),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), server_default="")


class DivisionMember(Base):
    __tablename__ = "division_members"
    __table_args__ = (
        PrimaryKeyConstraint("division_id", "user_id"),
        Index("ix_division_members_tenant_user", "tenant_id", "user_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    division_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("divisions.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Contact(UUIDPrimaryKey, Timestamps, Base):
    """A customer on one channel, keyed by (tenant, channel, account, external id).

    ``integration_account_id`` is set on the api channel only: a ``source_id`` is an id
    in one account's system (two systems' "42" are two people). Elsewhere it is null and
    the key is (tenant, channel, external id): a phone number, a page-scoped id or an
    email address is the same person whichever of the tenant's accounts it writes to.
    """

    __tablename__ = "contacts"
    __table_args__ = (
        Index(
            "uq_contacts_tenant_channel_account_external",
            "tenant_id",
            "channel",
            "integration_account_id",
            "external_id",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ix_contacts_tenant_created", "tenant_id", "created_at", "id"),
        # PERF: trigram indexes serve the contains-search on name, phone and email.
        Index(
            "ix_contacts_search_trgm",
            "tenant_id",
            text(
                "(coalesce(name, '') || ' ' || coalesce(phone, '') || ' ' || coalesce(email, ''))"
                " gin_trgm_ops"
            ),
            postgresql_using="gin",
        ),
        Index("ix_contacts_tags", "tenant_id", "tags", postgresql_using="gin"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(255))
    #: The api account whose system the ``external_id`` belongs to (null: other channels).
    #: No foreign key, as the conversations' own: a deleted account's contacts stay.
    integration_account_id: Mapped[uuid.UUID | None]
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    country: Mapped[str | None] = mapped_column(String(2))
    language: Mapped[str | None] = mapped_column(String(16))
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    custom_attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    #: Last message from the contact: WhatsApp's 24-hour customer window opens here.
    last_inbound_at: Mapped[dt.datetime | None]
    #: When the contact opted out of campaigns (null: not opted out); campaigns skip them.
    opted_out_at: Mapped[dt.datetime | None]


class Conversation(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'pending', 'snoozed', 'resolved')", name="status_known"
        ),
        CheckConstraint(
            "status <> 'snoozed' OR snoozed_until IS NOT NULL", name="snoozed_has_until"
        ),
        # PERF: the inbox list, newest first, by status and assignee ("open, mine").
        Index(
            "ix_conversations_inbox",
            "tenant_id",
            "status",
            "assignee_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index(
            "ix_conversations_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")
        ),
        Index("ix_conversations_assignee", "tenant_id", "assignee_id", text("created_at DESC")),
        Index("ix_conversations_division", "tenant_id", "division_id", text("created_at DESC")),
        Index("ix_conversations_contact", "tenant_id", "contact_id", text("created_at DESC")),
        Index("ix_conversations_tags", "tenant_id", "tags", postgresql_using="gin"),
        # Serves the foreign key's ON DELETE SET NULL when an AI agent is deleted.
        Index(
            "ix_conversations_ai_agent",
            "ai_agent_id",
            postgresql_where=text("ai_agent_id IS NOT NULL"),
        ),
        Index(
            "ix_conversations_snoozed_due",
            "snoozed_until",
            postgresql_where=text("status = 'snoozed'"),
        ),
        Index(
            "ix_conversations_active_activity",
            "tenant_id",
            "channel",
            "last_activity_at",
            postgresql_where=text("status IN ('open', 'pending')"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    #: The channel account the conversation runs on (the channels issue adds the table).
    integration_account_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    snoozed_until: Mapped[dt.datetime | None]
    resolution_reason: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[dt.datetime | None]
    priority: Mapped[str] = mapped_column(String(16), server_default="normal")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    division_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("divisions.id", ondelete="SET NULL")
    )
    subject: Mapped[str | None] = mapped_column(String(500))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    custom_attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    #: Whether an AI agent owns the conversation and has not been taken over by a human.
    ai_active: Mapped[bool] = mapped_column(server_default="false")
    #: The AI agent that owns the conversation (chosen by assignments and orchestration).
    ai_agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ai_agents.id", ondelete="SET NULL")
    )
    #: AI replies since the AI last took the conversation (for ``max_turns`` handoffs).
    ai_turns: Mapped[int] = mapped_column(server_default="0")
    #: Inbound messages ever received; per-agent unread = this minus what they read.
    inbound_count: Mapped[int] = mapped_column(server_default="0")
    message_count: Mapped[int] = mapped_column(server_default="0")
    last_message_at: Mapped[dt.datetime | None]
    last_inbound_at: Mapped[dt.datetime | None]
    last_message_preview: Mapped[str | None] = mapped_column(String(200))
    last_activity_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    first_response_at: Mapped[dt.datetime | None]


class ConversationRead(Base):
    """How far one agent has read one conversation."""

    __tablename__ = "conversation_reads"
    __table_args__ = (PrimaryKeyConstraint("conversation_id", "user_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: ``conversations.inbound_count`` when the agent last read it.
    read_inbound_count: Mapped[int] = mapped_column(server_default="0")
    last_read_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Message(UUIDPrimaryKey, Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction_known"),
        Index(
            "ix_messages_conversation",
            "tenant_id",
            "conversation_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        # PERF: tenant-wide newest-first scans: search candidates (the newest matches of a
        # common word), date-range filters.
        Index("ix_messages_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        # PERF: btree_gin puts tenant_id inside the full-text index, so a search
        # never scans another tenant's postings.
        Index("ix_messages_search", "tenant_id", "search", postgresql_using="gin"),
        Index(
            "uq_messages_provider_id",
            "tenant_id",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))
    #: ``contact``, ``user``, ``ai_agent``, ``automation`` or ``system``.
    sender_type: Mapped[str] = mapped_column(String(16))
    sender_id: Mapped[uuid.UUID | None]
    #: ``text``, ``image``, ``audio``, ``video``, ``document``, ``template``, ``unsupported``...
    content_type: Mapped[str] = mapped_column(String(32), server_default="text")
    body: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    template: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: ``queued``, ``sent``, ``delivered``, ``read``, ``failed`` (outbound) or ``received``.
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default="{}")
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('simple', coalesce(body, ''))", persisted=True),
        deferred=True,
    )
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Note(UUIDPrimaryKey, Timestamps, Base):
    """A private note on a conversation: never sent to the contact."""

    __tablename__ = "notes"
    __table_args__ = (
        Index("ix_notes_conversation", "tenant_id", "conversation_id", "created_at", "id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    edited_at: Mapped[dt.datetime | None]


class NoteRevision(UUIDPrimaryKey, Base):
    """A note's previous text, kept when its author edits it."""

    __tablename__ = "note_revisions"
    __table_args__ = (Index("ix_note_revisions_note", "note_id", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    note_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    editor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class Transfer(UUIDPrimaryKey, Base):
    """A change of hands: a transfer to an agent or division, or a takeover."""

    __tablename__ = "transfers"
    __table_args__ = (
        Index("ix_transfers_conversation", "tenant_id", "conversation_id", "created_at", "id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    #: ``transfer`` or ``takeover``.
    kind: Mapped[str] = mapped_column(String(16))
    from_agent_id: Mapped[uuid.UUID | None]
    from_division_id: Mapped[uuid.UUID | None]
    from_ai: Mapped[bool] = mapped_column(server_default="false")
    to_agent_id: Mapped[uuid.UUID | None]
    to_division_id: Mapped[uuid.UUID | None]
    note: Mapped[str | None] = mapped_column(Text)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class QuickReply(UUIDPrimaryKey, Timestamps, Base):
    """A canned answer: ``personal`` (its owner's) or ``shared`` (the whole tenant's)."""

    __tablename__ = "quick_replies"
    __table_args__ = (
        CheckConstraint("scope IN ('personal', 'shared')", name="scope_known"),
        CheckConstraint(
            "(scope = 'personal') = (owner_id IS NOT NULL)", name="owner_matches_scope"
        ),
        Index(
            "uq_quick_replies_shared_shortcut",
            "tenant_id",
            func.lower(text("shortcut")),
            unique=True,
            postgresql_where=text("scope = 'shared'"),
        ),
        Index(
            "uq_quick_replies_personal_shortcut",
            "tenant_id",
            "owner_id",
            func.lower(text("shortcut")),
            unique=True,
            postgresql_where=text("scope = 'personal'"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    shortcut: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    usage_count: Mapped[int] = mapped_column(server_default="0")
    last_used_at: Mapped[dt.datetime | None]


class QuickReplyUsage(Base):
    """Per-agent use of a quick reply (favorites and usage are per user)."""

    __tablename__ = "quick_reply_usage"
    __table_args__ = (PrimaryKeyConstraint("quick_reply_id", "user_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    quick_reply_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("quick_replies.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    usage_count: Mapped[int] = mapped_column(server_default="0")
    last_used_at: Mapped[dt.datetime | None]
    is_favorite: Mapped[bool] = mapped_column(server_default="false")


class ChatExpirationRule(Base):
    """Per channel: resolve conversations idle longer than ``inactive_minutes``."""

    __tablename__ = "chat_expiration_rules"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "channel"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    inactive_minutes: Mapped[int]
    is_active: Mapped[bool] = mapped_column(server_default="true")
    closing_message: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Job(UUIDPrimaryKey, Base):
    """A long-running request answered 202: bulk actions and other batch work."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        # PERF: the scheduler's re-drive of jobs whose message was lost.
        Index(
            "ix_jobs_unfinished_enqueued",
            "enqueued_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    #: ``queued``, ``running``, ``succeeded`` or ``failed``.
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: When its actor was last sent, or (a bulk job) last finished a chunk: a job idle long
    #: after this is re-driven (see shared.jobs.claim_stale).
    enqueued_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
