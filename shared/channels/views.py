"""Public representations of integrations and accounts: never a credential, only which are set."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.schemas.base import View


class IntegrationView(View):
    id: uuid.UUID
    channel: str
    enabled: bool
    settings: dict[str, Any]
    #: Names of the credentials stored (their values are never returned).
    credential_keys: list[str]
    has_credentials: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class IntegrationAccountView(View):
    id: uuid.UUID
    integration_id: uuid.UUID
    channel: str
    name: str
    external_id: str
    settings: dict[str, Any]
    credential_keys: list[str]
    has_credentials: bool
    is_default: bool
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    #: api channel: the ``whsec_`` secret signing its callbacks, only in the answer that
    #: creates the account (shown once; rotate it with ``POST .../api/rotate-secret``).
    signing_secret: str | None = None
