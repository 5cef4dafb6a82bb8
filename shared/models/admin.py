"""Platform administration: super admins (outside every tenant) and their audit log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, SmallInteger, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey


class SuperAdmin(UUIDPrimaryKey, Timestamps, Base):
    """An operator of the whole platform; no ``tenant_id``, their own login and tokens."""

    __tablename__ = "super_admins"
    __table_args__ = (Index("uq_super_admins_email", func.lower(text("email")), unique=True),)

    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    #: Tokens issued before this instant are refused (password reset).
    tokens_valid_after: Mapped[dt.datetime | None]
    last_login_at: Mapped[dt.datetime | None]


class PlatformAuditLog(UUIDPrimaryKey, Base):
    """One row per super-admin call (and super-admin login attempt), whatever its outcome."""

    __tablename__ = "platform_audit_logs"
    __table_args__ = (
        Index("ix_platform_audit_logs_created", "created_at", "id"),
        Index("ix_platform_audit_logs_admin", "super_admin_id", "created_at"),
        Index("ix_platform_audit_logs_tenant", "tenant_id", "created_at"),
    )

    #: Null for a failed login or once the super admin is deleted.
    super_admin_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("super_admins.id", ondelete="SET NULL")
    )
    #: What the call was (the endpoint's summary, or ``login`` / ``login_failed``).
    action: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(2048))
    status: Mapped[int] = mapped_column(SmallInteger)
    #: The tenant the call concerned (kept after the tenant is gone: no foreign key).
    tenant_id: Mapped[uuid.UUID | None]
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
