"""Our app's webhook subscription on a Facebook Page (Messenger, and Instagram through it)."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from shared.channels import meta_calls
from shared.channels.graph import graph_client
from shared.context import Ctx
from shared.models import IntegrationAccount

#: Page webhook fields the inbound code reads (``shared.channels.receive``).
MESSENGER_FIELDS = (
    "messages",
    "messaging_postbacks",
    "messaging_optins",
    "message_deliveries",
    "message_reads",
    "message_echoes",
    "message_reactions",
)


def subscribe(ctx: Ctx, page_id: str, page_token: str) -> None:
    """Subscribe the app to the Page's messaging webhooks (idempotent at Meta)."""
    with meta_calls.calling(f"subscribing Page {page_id} to webhooks", ctx=ctx):
        graph_client().request(
            "POST",
            f"{page_id}/subscribed_apps",
            page_token,
            form={"subscribed_fields": ",".join(MESSENGER_FIELDS)},
        )


def unsubscribe(ctx: Ctx, account: IntegrationAccount, page_id: str, page_token: str) -> None:
    """Remove the app's subscription from the Page."""
    with meta_calls.calling(
        f"unsubscribing Page {page_id} from webhooks",
        ctx=ctx,
        account=account,
        remedy=(
            "to remove the account here anyway, DELETE /api/integration-accounts/"
            f"{account.id} (Meta keeps sending until the Page unsubscribes the app)"
        ),
    ):
        graph_client().request("DELETE", f"{page_id}/subscribed_apps", page_token)


def still_used(session: Session, page_id: str, *, besides: uuid.UUID) -> bool:
    """Whether an account other than ``besides``, in any tenant, receives through the Page.

    One subscription per Page serves both Messenger and the Instagram account linked to
    it, so unsubscribing for one channel would silence the other.
    """
    a = IntegrationAccount
    return bool(
        session.scalar(
            select(
                exists().where(
                    a.id != besides,
                    or_(
                        and_(a.channel == "instagram", a.settings["page_id"].astext == page_id),
                        and_(a.channel == "messenger", a.external_id == page_id),
                    ),
                )
            )
        )
    )
