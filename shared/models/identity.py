"""Who may call the API: users (agents), roles, API keys and revoked tokens."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, Timestamps, UUIDPrimaryKey


class Role(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "roles"
    __table_args__ = (
        Index("uq_roles_tenant_name", "tenant_id", func.lower(text("name")), unique=True),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500), default="")
    permissions: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    is_builtin: Mapped[bool] = mapped_column(default=False)


class User(UUIDPrimaryKey, Timestamps, Base):
    """A tenant's human user; the API calls them agents."""

    __tablename__ = "users"
    __table_args__ = (
        Index(
            "uq_users_tenant_email",
            "tenant_id",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_users_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_users_email_lower", func.lower(text("email"))),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roles.id"))
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    #: Availability for routing: ``online`` or ``offline``.
    status: Mapped[str] = mapped_column(String(16), default="offline")
    #: Tokens issued before this instant are refused (password change, suspension).
    tokens_valid_after: Mapped[dt.datetime | None]
    last_login_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]
    #: Set by a super admin: login, tokens and API keys are refused while set.
    suspended_at: Mapped[dt.datetime | None]

    # PERF: every read of an agent shows its role; one joined query, never N+1.
    role: Mapped[Role] = relationship(lazy="joined", innerjoin=True)


class ApiKey(UUIDPrimaryKey, Base):
    """A long-lived credential acting as the user who created it; only its hash is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant_user", "tenant_id", "user_id", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class RevokedToken(Base):
    """A logged-out JWT, refused until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
