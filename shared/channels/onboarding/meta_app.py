"""The platform Meta app: its settings, and the configs the browser's login dialogs need.

Config answers name the app id, configuration ids and Graph version, never the app
secret: they are served to any admin's browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.channels.onboarding import oauth_state
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import Conflict

#: Permissions the Messenger dialog asks for (Facebook Login), Meta's names.
MESSENGER_SCOPES = (
    "pages_show_list",
    "pages_messaging",
    "pages_manage_metadata",
    "pages_read_engagement",
    "business_management",
)
#: Permissions the Instagram dialog asks for (Instagram messaging through a Page).
INSTAGRAM_SCOPES = (
    "instagram_basic",
    "instagram_manage_messages",
    "pages_show_list",
    "pages_manage_metadata",
    "pages_read_engagement",
    "business_management",
)
#: Each OAuth login's permissions, by channel.
SCOPES = {"instagram": INSTAGRAM_SCOPES, "messenger": MESSENGER_SCOPES}


class MetaAppNotConfigured(Conflict):
    code = "meta_app_not_configured"


@dataclass(frozen=True, slots=True)
class MetaApp:
    app_id: str
    app_secret: str

    @property
    def app_token(self) -> str:
        """The app access token (``id|secret``), for ``debug_token``."""
        return f"{self.app_id}|{self.app_secret}"

    def __repr__(self) -> str:  # APPSEC: never print the secret
        return f"MetaApp(app_id={self.app_id!r})"


def require_app() -> MetaApp:
    """The app's id and secret, or 409 naming the settings to set."""
    settings = get_settings()
    missing = [
        name
        for name, value in (
            ("META_APP_ID", settings.meta_app_id),
            ("META_APP_SECRET", settings.meta_app_secret),
        )
        if not value
    ]
    if missing:
        raise MetaAppNotConfigured(
            f"The platform's Meta app is not configured: set {' and '.join(missing)}"
        )
    return MetaApp(str(settings.meta_app_id), str(settings.meta_app_secret))


def _dialog_url() -> str:
    return f"https://www.facebook.com/{get_settings().meta_graph_version}/dialog/oauth"


def embedded_signup_config() -> dict[str, Any]:
    settings = get_settings()
    return {
        "configured": bool(
            settings.meta_app_id
            and settings.meta_app_secret
            and settings.meta_embedded_signup_config_id
        ),
        "app_id": settings.meta_app_id,
        "config_id": settings.meta_embedded_signup_config_id,
        "graph_version": settings.meta_graph_version,
    }


def oauth_config(ctx: Ctx, channel: str) -> dict[str, Any]:
    """What ``channel``'s login dialog needs, with a ``state`` bound to this caller."""
    settings = get_settings()
    return {
        "configured": bool(settings.meta_app_id and settings.meta_app_secret),
        "app_id": settings.meta_app_id,
        "config_id": settings.meta_login_config_id,
        "graph_version": settings.meta_graph_version,
        "dialog_url": _dialog_url(),
        "scopes": list(SCOPES[channel]),
        "state": oauth_state.issue(ctx, channel),
    }
