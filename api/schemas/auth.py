"""Auth group: register, login, me, refresh."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints, field_validator

from api.schemas.common import Input, Name
from shared.schemas.base import View
from shared.schemas.identity import AgentView, TenantView
from shared.timekeeping.working_hours import is_known_timezone

Password = Annotated[str, Field(min_length=10, max_length=256)]
#: A password as a login takes it: any old one (no minimum), but bounded, since it is hashed
#: in full on a public route.
LoginPassword = Annotated[str, Field(min_length=1, max_length=256)]
#: NOTE: the pattern is checked before ``to_lower`` lowers the value: it admits capitals
#: (a slug is named in any case), which the value then never keeps.
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$", to_lower=True),
]
#: A slug as an existing workspace may have it: those registered before the slug rule was
#: fixed can end in '-' (a long name cut after a word). For naming one, never for a new one.
SlugRef = Annotated[
    str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$", to_lower=True)
]


class RegisterRequest(Input):
    organization_name: Name
    full_name: Name
    email: EmailStr
    password: Password
    slug: Slug | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not is_known_timezone(value):
            raise ValueError("not an IANA time zone, e.g. Europe/Madrid")
        return value


class LoginRequest(Input):
    email: EmailStr
    password: LoginPassword
    tenant: SlugRef | None = Field(None, description="workspace slug, when the email is in several")


class TokenResponse(View):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int


class LoginResponse(TokenResponse):
    user: AgentView


class RegisterResponse(TokenResponse):
    tenant: TenantView
    user: AgentView


class MeResponse(AgentView):
    permissions: list[str]
    tenant: TenantView


class AcceptInvitationRequest(Input):
    token: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="the token of the emailed set-password link"
    )
    password: Password
