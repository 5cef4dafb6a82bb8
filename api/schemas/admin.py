"""Super Admin group: super admins, tenants, their users, impersonation, health and usage."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import EmailStr, field_validator

from api.schemas.auth import LoginPassword, Password, Slug
from api.schemas.common import Input, ListQuery, Name, Update
from shared.schemas.base import View
from shared.schemas.identity import RoleRef, TenantView
from shared.timekeeping.working_hours import is_known_timezone

TenantStatus = Literal["active", "suspended"]


def _known_timezone(value: str | None) -> str | None:
    if value is not None and not is_known_timezone(value):
        raise ValueError("not an IANA time zone, e.g. Europe/Madrid")
    return value


class SuperAdminLogin(Input):
    email: EmailStr
    password: LoginPassword


class SuperAdminView(View):
    id: uuid.UUID
    email: str
    full_name: str
    last_login_at: dt.datetime | None
    created_at: dt.datetime


class SuperAdminLoginResponse(View):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int
    super_admin: SuperAdminView


class SuperAdminCreate(Input):
    email: EmailStr
    full_name: Name
    password: Password


class TemporaryPassword(View):
    super_admin_id: uuid.UUID
    temporary_password: str


class TenantProvision(Input):
    name: Name
    slug: Slug | None = None
    timezone: str = "UTC"
    admin_email: EmailStr
    admin_full_name: Name

    _tz = field_validator("timezone")(_known_timezone)


class TenantUpdate(Update):
    name: Name | None = None
    slug: Slug | None = None
    timezone: str | None = None
    status: TenantStatus | None = None

    _tz = field_validator("timezone")(_known_timezone)


class AdminTenantView(TenantView):
    updated_at: dt.datetime


class TenantListQuery(ListQuery):
    status: TenantStatus | None = None


class ProvisionedTenant(View):
    tenant: AdminTenantView
    admin: TenantUserView
    invitation_id: uuid.UUID


class TenantUserView(View):
    id: uuid.UUID
    email: str
    full_name: str
    role: RoleRef
    status: str
    suspended_at: dt.datetime | None
    last_login_at: dt.datetime | None
    created_at: dt.datetime


class PasswordResetSent(View):
    user_id: uuid.UUID
    invitation_id: uuid.UUID
    tokens_valid_after: dt.datetime | None


class ImpersonationToken(View):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int
    expires_at: dt.datetime
    user: TenantUserView


class TenantUsage(View):
    conversations: int
    messages: int
    inbound_messages: int
    outbound_messages: int
    agents: int
    ai_replies: int
    storage_bytes: int


class TenantWithUsage(View):
    tenant: AdminTenantView
    usage: TenantUsage


class AdminHealth(View):
    status: Literal["ok", "down"]
    down: list[str]
    checks: dict[str, dict[str, Any]]
    workers: list[dict[str, Any]]
    scheduler_jobs: list[dict[str, Any]]


ProvisionedTenant.model_rebuild()
