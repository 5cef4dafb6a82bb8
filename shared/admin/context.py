"""Who is acting on the platform: the super admin behind an /api/admin call."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdminCtx:
    """The caller of an admin service: a super admin and the request's metadata."""

    super_admin_id: uuid.UUID
    email: str
    request_id: str | None = None
    ip: str | None = None
    token_jti: uuid.UUID | None = None
    token_expires_at: dt.datetime | None = None
