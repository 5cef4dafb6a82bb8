"""The audit trail: who did what to which entity, written in the change's transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UUIDPrimaryKey


class ActivityLog(UUIDPrimaryKey, Base):
    __tablename__ = "activity_logs"
    __table_args__ = (
        Index("ix_activity_logs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_activity_logs_tenant_entity", "tenant_id", "entity_type", "entity_id"),
        Index("ix_activity_logs_tenant_actor", "tenant_id", "actor_id", "created_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    #: ``user``, ``api_key``, ``system``, ``automation`` or ``ai_agent``.
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[uuid.UUID | None]
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    #: The super admin acting through an impersonation token (``imp`` claim), if any.
    impersonator_id: Mapped[uuid.UUID | None]
    #: Their email when the row was written (kept after the super admin is deleted).
    impersonator_email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    @property
    def impersonated_by(self) -> dict[str, Any] | None:
        """``{"id", "email"}`` of the super admin behind the action, as envelopes name them."""
        if self.impersonator_id is None:
            return None
        return {"id": str(self.impersonator_id), "email": self.impersonator_email}
