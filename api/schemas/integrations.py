"""Request shapes of the Integrations group (responses are shared.channels.views)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import Input, ListQuery, Name, Update
from shared.models.inbox import CHANNELS

Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
#: A credential to set (a string) or remove (null); keys by channel in shared.channels.accounts.
Credentials = dict[str, Secret | None]
Settings = Annotated[dict[str, Any], Field(max_length=50)]


class IntegrationUpsert(Update):
    enabled: bool | None = None
    settings: Settings | None = None
    credentials: Credentials | None = None


class AccountCreate(Input):
    channel: Channel
    name: Name
    #: Phone number id, Page id, Instagram account id or mailbox address; for the api
    #: channel any identifier of the caller's choosing, generated when left out.
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    settings: Settings = Field(default_factory=dict)
    credentials: Credentials = Field(default_factory=dict)
    is_default: bool = False


class AccountUpdate(Update):
    name: Name | None = None
    settings: Settings | None = None
    credentials: Credentials | None = None
    status: Literal["active", "disabled", "error"] | None = None


class AccountListQuery(ListQuery):
    channel: Channel | None = None
