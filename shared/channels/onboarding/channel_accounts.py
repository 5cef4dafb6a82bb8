"""The Meta account a request names (or its channel's default), and connecting one again."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from shared.channels import accounts
from shared.channels.accounts import decrypt_credentials
from shared.context import Ctx
from shared.errors import Conflict, NotFound
from shared.models import IntegrationAccount

LABELS = {"whatsapp": "WhatsApp", "instagram": "Instagram", "messenger": "Messenger"}


def meta_account(
    session: Session,
    ctx: Ctx,
    channel: str,
    account_id: uuid.UUID | None,
    *,
    switched_off_too: bool = False,
) -> tuple[IntegrationAccount, str]:
    """The tenant's ``channel`` account ``account_id`` (default: the channel's default
    account) and its token: 404 without one (another tenant's or channel's id included),
    409 when it holds no ``access_token``, or when it is switched off unless
    ``switched_off_too`` (:func:`.accounts.named_or_default`: what diagnoses or removes
    an account works on a disabled one).

    NOTE: read without a lock: a rejected token is marked ``error`` from another
    transaction (:mod:`.meta_calls`), which must not wait for this one.
    """
    label = LABELS[channel]
    account = accounts.named_or_default(
        session, ctx.tenant_id, channel, account_id, switched_off_too=switched_off_too
    )
    if account is None:
        raise NotFound(
            f"No {label} integration account"
            + (" with this id" if account_id is not None else "; connect one first")
        )
    token = decrypt_credentials(account).get("access_token")
    if not token:
        raise Conflict(
            f"{label} account {account.id} has no access_token; connect it again or set one"
            " with PATCH /api/integration-accounts/{id}"
        )
    return account, token


def connected_elsewhere(
    session: Session, ctx: Ctx, channel: str, external_ids: list[str]
) -> list[str]:
    """Which of ``external_ids`` another tenant has connected (checked before calling Meta).

    The answer to the caller never says which tenant, nor that it is another one.
    """
    if not external_ids:
        return []
    rows = session.scalars(
        select(IntegrationAccount.external_id).where(
            IntegrationAccount.channel == channel,
            IntegrationAccount.external_id.in_(external_ids),
            IntegrationAccount.tenant_id != ctx.tenant_id,
        )
    )
    return list(rows)


def own_account(
    session: Session, ctx: Ctx, channel: str, external_id: str
) -> IntegrationAccount | None:
    """The tenant's own ``channel`` account of ``external_id``, if connected already."""
    return session.scalars(
        select(IntegrationAccount).where(
            IntegrationAccount.tenant_id == ctx.tenant_id,
            IntegrationAccount.channel == channel,
            IntegrationAccount.external_id == external_id,
        )
    ).one_or_none()


def already_connected(channel: str, field: str) -> Conflict:
    """The 409 of a sender connected elsewhere, naming the request's ``field`` that held it."""
    message = f"This {channel} account is already connected"
    return Conflict(message, details=[{"field": field, "message": "already connected"}])


def is_connected(session: Session, channel: str, external_id: str) -> bool:
    """Whether any tenant has connected ``external_id`` on ``channel``."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    IntegrationAccount.channel == channel,
                    IntegrationAccount.external_id == external_id,
                )
            )
        )
    )


def reconnect(
    session: Session,
    ctx: Ctx,
    account: IntegrationAccount,
    settings: dict[str, Any],
    token: str,
    name: str | None,
    *,
    is_default: bool = False,
) -> IntegrationAccount:
    """Give an account of this tenant its new token and Meta's facts; status ``active``.

    ``is_default`` makes it its channel's default, as on create (WHY: it was dropped on a
    reconnect, so the admin's choice was silently ignored); without it the default stays
    where it is."""
    changes: dict[str, Any] = {
        "settings": {**(account.settings or {}), **settings},
        "credentials": {"access_token": token},
        "status": "active",
    }
    if name:
        changes["name"] = name
    account = accounts.update_account(session, ctx, account.id, changes)
    if is_default:
        account = accounts.set_default(session, ctx, account.id)
    return account
