"""Agents, roles, API keys and activity logs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import EmailStr, Field, StringConstraints

from api.schemas.auth import Password
from api.schemas.common import Input, Instant, ListQuery, Name, Nullable, Query, Update
from shared.schemas.base import View
from shared.schemas.identity import ApiKeyView

RoleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
AvatarUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://")]
#: Checked, never stored: any length a password was ever set with.
CurrentPassword = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class AgentListQuery(ListQuery):
    status: Literal["online", "offline"] | None = None
    role_id: uuid.UUID | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class AgentCreate(Input):
    email: EmailStr
    full_name: Name
    role: RoleName = Field(description="role name or id")
    password: Password | None = Field(
        None, description="omitted: the agent is emailed an invitation to set one"
    )
    avatar_url: AvatarUrl | None = None
    division_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=100, description="divisions the agent joins"
    )


class AgentUpdate(Update):
    email: EmailStr | None = None
    full_name: Name | None = None
    role: RoleName | None = Field(None, description="role name or id")
    password: Password | None = None
    current_password: CurrentPassword | None = Field(
        None, description="your current password: required with `password` to change your own"
    )
    avatar_url: Nullable[AvatarUrl] = Field(None, description="null removes the avatar")


class AgentStatusUpdate(Input):
    status: Literal["online", "offline"]


class RoleCreate(Input):
    name: RoleName
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    permissions: list[Annotated[str, StringConstraints(max_length=64)]] = Field(max_length=100)


class RoleUpdate(Update):
    name: RoleName | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    permissions: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        None, max_length=100
    )


class PermissionView(View):
    key: str
    description: str
    default_roles: list[str]


class ApiKeyCreate(Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    expires_at: Instant | None = None


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="the secret; shown only in this response")


class ActivityLogQuery(ListQuery):
    actor_id: uuid.UUID | None = None
    action: Annotated[str, StringConstraints(max_length=64)] | None = None
    entity_type: Annotated[str, StringConstraints(max_length=64)] | None = None
    entity_id: uuid.UUID | None = None
    from_: Instant | None = Field(None, alias="from")
    to: Instant | None = None


class ImpersonatorView(View):
    id: uuid.UUID
    email: str | None = Field(description="null for rows written before it was recorded")


class ActivityLogView(View):
    id: uuid.UUID
    actor_type: str
    actor_id: uuid.UUID | None
    action: str
    entity_type: str
    entity_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    ip_address: str | None
    #: The super admin behind the action (an impersonation, or a platform operation).
    impersonator_id: uuid.UUID | None = None
    #: ``{"id", "email"}`` of that super admin (the ``actor.impersonated_by`` of events).
    impersonated_by: ImpersonatorView | None = None
    created_at: dt.datetime


__all__ = ["ApiKeyView", "Query"]
