"""What the onboarding endpoints answer: configs without secrets, Pages without tokens."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from shared.channels.views import IntegrationAccountView
from shared.schemas.base import View


class EmbeddedSignupConfigView(View):
    #: Whether the app id, secret and configuration id are all set.
    configured: bool
    app_id: str | None
    #: The Facebook Login for Business configuration of Embedded Signup.
    config_id: str | None
    graph_version: str


class OAuthConfigView(View):
    #: Whether the app id and secret are set.
    configured: bool
    app_id: str | None
    #: A Facebook Login for Business configuration id, when one is set.
    config_id: str | None
    graph_version: str
    #: Meta's OAuth dialog for this Graph version.
    dialog_url: str
    #: The permissions the dialog must ask for.
    scopes: list[str]
    state: str = Field(
        description=(
            "Pass to Meta's dialog as `state` and send back in the connect body (required"
            " with `redirect_uri`): it binds the login to you, this workspace and this"
            " channel, for 15 minutes. Get a new config for each login."
        )
    )


class WhatsAppHealthView(View):
    integration_account_id: uuid.UUID
    phone_number_id: str
    waba_id: str | None
    display_phone_number: str | None
    verified_name: str | None
    #: GREEN, YELLOW, RED or UNKNOWN.
    quality_rating: str | None
    #: TIER_250, TIER_1K, ... TIER_UNLIMITED.
    messaging_limit_tier: str | None
    #: CONNECTED, PENDING, FLAGGED, RESTRICTED, ...
    status: str | None
    name_status: str | None
    code_verification_status: str | None
    platform_type: str | None
    throughput_level: str | None
    #: AVAILABLE, LIMITED or BLOCKED: Meta's overall verdict.
    can_send_message: str | None
    #: Meta's per-entity verdicts (phone number, WABA, business, app) with their errors.
    entities: list[dict[str, Any]]
    checked_at: dt.datetime


class FacebookUserView(View):
    id: str
    name: str | None


class ManagedPageView(View):
    id: str
    name: str
    category: str | None
    #: This tenant's account of the Page, when it is connected already.
    integration_account_id: uuid.UUID | None


class MessengerLoginView(View):
    user: FacebookUserView
    #: When the stored user token expires (about 60 days); null when Meta gave none.
    token_expires_at: dt.datetime | None
    pages: list[ManagedPageView]


class SubscribedPagesView(View):
    accounts: list[IntegrationAccountView]


class PersistentMenuView(View):
    integration_account_id: uuid.UUID
    #: Meta's ``persistent_menu``: one entry per locale; null when the Page has none.
    menu: list[dict[str, Any]] | None
