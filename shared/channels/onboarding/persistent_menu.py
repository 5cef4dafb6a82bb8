"""A Messenger Page's persistent menu, read from and written to Meta (never stored here).

Meta keeps the menu in the Page's Messenger profile: ``GET /me/messenger_profile
?fields=persistent_menu``, ``POST /me/messenger_profile {"persistent_menu": [...]}``,
and ``DELETE /me/messenger_profile {"fields": ["persistent_menu"]}``, each with the
Page token.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared import activity
from shared.channels import accounts, meta_calls
from shared.channels.graph import graph_client
from shared.channels.onboarding.channel_accounts import meta_account
from shared.context import Ctx

PROFILE = "me/messenger_profile"


def get_menu(session: Session, ctx: Ctx, account_id: uuid.UUID | None) -> dict[str, Any]:
    ctx.require(accounts.PERMISSION)
    account, token = meta_account(session, ctx, "messenger", account_id)
    with meta_calls.calling("reading the persistent menu", ctx=ctx, account=account):
        answer = graph_client().request("GET", PROFILE, token, params={"fields": "persistent_menu"})
        menu = None
        for item in meta_calls.typed(answer.get("data"), list, "data") or []:
            if isinstance(item, dict) and item.get("persistent_menu"):
                menu = _menu(item["persistent_menu"])
    return {"integration_account_id": account.id, "menu": menu}


def _menu(menu: Any) -> list[dict[str, Any]]:
    # The menu is the whole answer: null would claim the Page has none, so a menu of
    # another shape than a list of locale objects is Meta's failure (a 502).
    entries = meta_calls.typed(menu, list, "persistent_menu") or []
    if not all(isinstance(entry, dict) for entry in entries):
        raise TypeError("persistent_menu holds an entry that is not an object")
    return entries


def set_menu(
    session: Session,
    ctx: Ctx,
    account_id: uuid.UUID | None,
    menu: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Replace the Page's menu, or delete it when ``menu`` is None."""
    ctx.require(accounts.PERMISSION)
    account, token = meta_account(session, ctx, "messenger", account_id)
    client = graph_client()
    if menu is None:
        with meta_calls.calling("deleting the persistent menu", ctx=ctx, account=account):
            client.request("DELETE", PROFILE, token, json_body={"fields": ["persistent_menu"]})
    else:
        with meta_calls.calling(
            "setting the persistent menu", ctx=ctx, account=account, field="menu"
        ):
            client.request("POST", PROFILE, token, json_body={"persistent_menu": menu})
    activity.record(
        session,
        ctx,
        "integration_account.persistent_menu_set",
        "integration_account",
        account.id,
        after={"menu": "deleted" if menu is None else f"{len(menu)} locale(s)"},
    )
    return {"integration_account_id": account.id, "menu": menu}
