"""CSAT: one survey per resolved conversation (per resend window), and each tenant's settings.

A survey row is written with the outbound message that carries its link, in one
transaction. Only the SHA-256 of the link's token is kept (``token_hash``): the token
is 256 random bits, made when the survey is created, so a dump of this table holds no
usable link. The agent, division and channel are the conversation's at sending time,
so later reassignments do not move a rating between agents.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey

#: How a survey came to be: an agent's ``POST`` or the resolve transition.
SURVEY_TRIGGERS = ("manual", "resolve")


class CsatSurvey(UUIDPrimaryKey, Base):
    __tablename__ = "csat_surveys"
    __table_args__ = (
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        CheckConstraint("(rating IS NULL) = (rated_at IS NULL)", name="rated_together"),
        CheckConstraint("trigger IN ('manual', 'resolve')", name="trigger_known"),
        Index("uq_csat_surveys_token_hash", "token_hash", unique=True),
        # The conversation's latest survey (GET, the resend window).
        Index("ix_csat_surveys_conversation", "conversation_id", text("sent_at DESC")),
        # PERF: the analytics filters read sent and rated surveys by tenant and time.
        Index("ix_csat_surveys_sent", "tenant_id", "sent_at"),
        Index(
            "ix_csat_surveys_rated",
            "tenant_id",
            "rated_at",
            postgresql_where=text("rated_at IS NOT NULL"),
        ),
        # The foreign key's ON DELETE (tests/migrations/test_foreign_key_indexes.py).
        Index(
            "ix_csat_surveys_division",
            "division_id",
            postgresql_where=text("division_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    #: The outbound message carrying the link.
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    division_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("divisions.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    #: SHA-256 hex of the link's token.
    token_hash: Mapped[str] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    sent_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    rated_at: Mapped[dt.datetime | None]


class CsatSettings(Base):
    """Per tenant: the channels surveyed on resolve, the message, the resend window."""

    __tablename__ = "csat_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    #: Channels whose resolved conversations get a survey (empty: none, the default).
    enabled_channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{}")
    #: The survey message; ``{link}`` is replaced by the rating link.
    message_template: Mapped[str | None] = mapped_column(Text)
    #: A conversation resolved again within this many hours of its last survey gets none.
    resend_window_hours: Mapped[int] = mapped_column(server_default="168")
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
