"""Messenger: Facebook Login, then one integration account per Page the admin picks.

``connect`` exchanges the login's code for a long-lived user token and keeps it,
encrypted, on the tenant's messenger integration (credential ``user_access_token``);
it answers the Pages the user manages. ``subscribe_pages`` reads those Pages again
with that token (so Page tokens are never sent to the browser), subscribes each
chosen Page to our webhooks and creates (or refreshes) its account, emitting
``integration_account.connected`` for each new one. ``disconnect`` unsubscribes the
Page at Meta first (unless an Instagram account still receives through it), then
deletes the account (``integration_account.disconnected``).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import activity
from shared.channels import accounts, meta_calls
from shared.channels.graph import graph_client
from shared.channels.onboarding import oauth, oauth_state, page_subscriptions
from shared.channels.onboarding.channel_accounts import (
    connected_elsewhere,
    meta_account,
    own_account,
)
from shared.channels.onboarding.meta_app import require_app
from shared.context import Ctx
from shared.errors import Conflict, ValidationFailed
from shared.models import Integration, IntegrationAccount

CHANNEL = "messenger"
#: The integration's credential holding the Facebook user's long-lived token.
USER_TOKEN_KEY = "user_access_token"  # noqa: S105 (a key name)
_RECONNECT = "run POST /api/integrations/messenger/connect again"


class MessengerNotConnected(Conflict):
    code = "messenger_not_connected"


def connect(
    session: Session,
    ctx: Ctx,
    *,
    code: str,
    redirect_uri: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """Keep the user's long-lived token; the user and the Pages they manage.

    The state is checked first: a refused one must not spend the code at Meta.
    """
    ctx.require(accounts.PERMISSION)
    oauth_state.check(ctx, CHANNEL, state, redirect_uri)
    app = require_app()
    user = oauth.long_lived(ctx, app, oauth.exchange_code(ctx, app, code, redirect_uri))
    with meta_calls.calling("reading the Facebook user", ctx=ctx, remedy=_RECONNECT):
        me = graph_client().request("GET", "me", user.token, params={"fields": "id,name"})
        # The id is kept to know whose token this is: another type is a 502. The
        # name is only shown, so an odd one is dropped and the login still succeeds.
        user_id = meta_calls.typed(me.get("id"), str, "id") or ""
        profile = {"id": user_id, "name": meta_calls.text_or_none(me.get("name"))}
    pages = oauth.list_pages(ctx, user.token, remedy=_RECONNECT)
    _keep_user_token(session, ctx, user, profile)
    connected = _connected_accounts(session, ctx, [p.id for p in pages])
    return {
        "user": profile,
        "token_expires_at": user.expires_at,
        "pages": [
            {
                "id": page.id,
                "name": page.name,
                "category": page.category,
                "integration_account_id": connected.get(page.id),
            }
            for page in pages
        ],
    }


def _keep_user_token(
    session: Session, ctx: Ctx, user: oauth.UserToken, profile: dict[str, Any]
) -> Integration:
    integration = accounts.find_integration(session, ctx.tenant_id, CHANNEL, for_update=True)
    if integration is None:
        integration, _ = accounts.upsert_integration(session, ctx, CHANNEL)
    before = accounts.integration_view(integration)
    credentials = accounts.decrypt_credentials(integration) | {USER_TOKEN_KEY: user.token}
    integration.credentials_encrypted = accounts.encrypt_credentials(credentials)
    integration.settings = {
        **(integration.settings or {}),
        "facebook_user": profile,
        "user_token_expires_at": user.expires_at.isoformat() if user.expires_at else None,
    }
    session.flush()
    activity.record(
        session,
        ctx,
        "integration.facebook_login",
        "integration",
        integration.id,
        before=before,
        after=accounts.integration_view(integration),
    )
    return integration


def _connected_accounts(session: Session, ctx: Ctx, page_ids: list[str]) -> dict[str, uuid.UUID]:
    if not page_ids:
        return {}
    rows = session.execute(
        select(IntegrationAccount.external_id, IntegrationAccount.id).where(
            IntegrationAccount.tenant_id == ctx.tenant_id,
            IntegrationAccount.channel == CHANNEL,
            IntegrationAccount.external_id.in_(page_ids),
        )
    )
    return {external_id: account_id for external_id, account_id in rows}


def subscribe_pages(session: Session, ctx: Ctx, page_ids: list[str]) -> list[IntegrationAccount]:
    """Subscribe each Page at Meta, then create (or refresh) its account; the accounts.

    Every Page is checked, and every subscription made, before any row is written.
    """
    ctx.require(accounts.PERMISSION)
    integration = accounts.find_integration(session, ctx.tenant_id, CHANNEL)
    token = accounts.decrypt_credentials(integration).get(USER_TOKEN_KEY) if integration else None
    if not token:
        raise MessengerNotConnected(
            "Connect Messenger first: POST /api/integrations/messenger/connect"
        )
    pages = {p.id: p for p in oauth.list_pages(ctx, token, remedy=_RECONNECT)}
    unknown = [(i, page_id) for i, page_id in enumerate(page_ids) if page_id not in pages]
    if unknown:
        raise ValidationFailed(
            "Some Pages are not managed by the connected Facebook user",
            details=[
                {"field": f"page_ids[{i}]", "message": f"Page {page_id} is not one of theirs"}
                for i, page_id in unknown
            ],
        )
    taken = connected_elsewhere(session, ctx, CHANNEL, page_ids)
    if taken:
        raise Conflict(
            f"Already connected: Page {', '.join(sorted(taken))}",
            details=[
                {"field": f"page_ids[{i}]", "message": f"Page {page_id} is already connected"}
                for i, page_id in enumerate(page_ids)
                if page_id in taken
            ],
        )
    for page_id in page_ids:
        page_subscriptions.subscribe(ctx, page_id, pages[page_id].token)
    result = []
    for page_id in page_ids:
        page = pages[page_id]
        existing = own_account(session, ctx, CHANNEL, page_id)
        if existing is not None:
            result.append(
                accounts.update_account(
                    session,
                    ctx,
                    existing.id,
                    {"credentials": {"access_token": page.token}, "status": "active"},
                )
            )
            continue
        settings = {"category": page.category, "connected_via": "oauth"}
        result.append(
            accounts.create_account(
                session,
                ctx,
                channel=CHANNEL,
                name=page.name[:200],
                external_id=page_id,
                settings={k: v for k, v in settings.items() if v is not None},
                credentials={"access_token": page.token},
            )
        )
    return result


def disconnect(session: Session, ctx: Ctx, account_id: uuid.UUID) -> None:
    """Unsubscribe the Page at Meta, then delete its account (emits disconnected).

    The subscription stays when another account (an Instagram account linked to the
    Page, maybe another tenant's) still receives through it. A disabled account (or one
    of a switched-off channel) is disconnected too: removing it is what the admin wants.
    """
    ctx.require(accounts.PERMISSION)
    account, token = meta_account(session, ctx, CHANNEL, account_id, switched_off_too=True)
    if not page_subscriptions.still_used(session, account.external_id, besides=account.id):
        page_subscriptions.unsubscribe(ctx, account, account.external_id, token)
    accounts.delete_account(session, ctx, account.id)
