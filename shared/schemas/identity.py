"""Representations of tenants, agents, roles and API keys."""

from __future__ import annotations

import datetime as dt
import uuid

from shared.schemas.base import View


class TenantView(View):
    id: uuid.UUID
    name: str
    slug: str
    timezone: str
    status: str
    created_at: dt.datetime


class RoleRef(View):
    id: uuid.UUID
    name: str


class RoleView(View):
    id: uuid.UUID
    name: str
    description: str
    permissions: list[str]
    is_builtin: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class AgentView(View):
    id: uuid.UUID
    email: str
    full_name: str
    avatar_url: str | None
    status: str
    role: RoleRef
    last_login_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ApiKeyView(View):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
