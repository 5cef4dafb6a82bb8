"""Instagram: connect a professional account through the Facebook Page it is linked to.

Instagram messaging runs on the Messenger Platform: the login dialog grants a user
token; its long-lived form lists the user's Pages with long-lived Page tokens and
their linked Instagram accounts; the chosen account's Page is subscribed to our
webhooks, and the account (``external_id`` the Instagram account id, the Page token
encrypted) is created, emitting ``integration_account.connected``. An account this
tenant connected before is reconnected instead (new token, status ``active``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.channels import accounts
from shared.channels.onboarding import oauth, oauth_state, page_subscriptions
from shared.channels.onboarding.channel_accounts import (
    already_connected,
    is_connected,
    own_account,
    reconnect,
)
from shared.channels.onboarding.meta_app import require_app
from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import IntegrationAccount


def connect(
    session: Session,
    ctx: Ctx,
    *,
    code: str,
    redirect_uri: str | None = None,
    state: str | None = None,
    instagram_account_id: str | None = None,
    name: str | None = None,
    is_default: bool = False,
) -> tuple[IntegrationAccount, bool]:
    """Exchange the code, pick the account, subscribe its Page; the account, whether new.

    The state is checked first: a refused one must not spend the code at Meta.
    """
    ctx.require(accounts.PERMISSION)
    oauth_state.check(ctx, "instagram", state, redirect_uri)
    app = require_app()
    short = oauth.exchange_code(ctx, app, code, redirect_uri)
    user = oauth.long_lived(ctx, app, short)
    pages = oauth.list_pages(ctx, user.token, remedy="run the Instagram login again")
    linked = [p for p in pages if p.instagram and p.instagram.get("id")]
    page = _chosen(linked, instagram_account_id)
    instagram = page.instagram or {}
    instagram_id = str(instagram["id"])
    existing = own_account(session, ctx, "instagram", instagram_id)
    if existing is None and is_connected(session, "instagram", instagram_id):
        raise already_connected("instagram", "instagram_account_id")
    page_subscriptions.subscribe(ctx, page.id, page.token)
    username = instagram.get("username")
    settings = {
        "page_id": page.id,
        "page_name": page.name,
        "username": username,
        "connected_via": "oauth",
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    if existing is not None:
        return reconnect(
            session, ctx, existing, settings, page.token, name, is_default=is_default
        ), False
    account = accounts.create_account(
        session,
        ctx,
        channel="instagram",
        name=str(name or (f"@{username}" if username else instagram_id))[:200],
        external_id=instagram_id,
        settings=settings,
        credentials={"access_token": page.token},
        is_default=is_default,
    )
    return account, True


def _chosen(linked: list[oauth.FacebookPage], instagram_account_id: str | None):
    if instagram_account_id is not None:
        for page in linked:
            if str((page.instagram or {}).get("id")) == instagram_account_id:
                return page
        raise ValidationFailed.field(
            "instagram_account_id", "not an Instagram account of the Pages this login granted"
        )
    if len(linked) == 1:
        return linked[0]
    if not linked:
        raise ValidationFailed.field(
            "code",
            "none of the Pages this login granted has a linked Instagram professional account",
        )
    listed = ", ".join(
        f"{p.instagram['id']} (@{p.instagram.get('username') or '?'})"
        for p in linked
        if p.instagram
    )
    raise ValidationFailed.field("instagram_account_id", f"choose one of: {listed}")
