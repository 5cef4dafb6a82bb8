"""Which account a background job acts through: the one a row names, else the channel default."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels.accounts import default_account, switched_off
from shared.channels.send_errors import SendFailed
from shared.models import IntegrationAccount

#: The error code of a send (or a reply) on a conversation whose account was deleted.
ACCOUNT_DELETED = "account_deleted"


def named_account(
    session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID
) -> IntegrationAccount | None:
    """The tenant's account ``account_id``, or None once it was deleted."""
    return session.scalars(
        select(IntegrationAccount).where(
            IntegrationAccount.id == account_id, IntegrationAccount.tenant_id == tenant_id
        )
    ).one_or_none()


def account_for(
    session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID | None, channel: str | None
) -> IntegrationAccount | None:
    """The tenant's account ``account_id`` if it still exists, else its default for ``channel``.

    APPSEC: not for the api channel when the row named an account: each api account is
    another system of the tenant, so a conversation of a deleted one is never handed to
    another's callback. Sends do not use this fallback (:func:`conversation_account`).
    """
    account = None
    if account_id is not None:
        account = named_account(session, tenant_id, account_id)
    if account is None and channel and not (channel == "api" and account_id is not None):
        account = default_account(session, tenant_id, channel)
    return account


class AccountGone(Exception):
    """The conversation named an account that was deleted since."""


def conversation_account(
    session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID | None, channel: str
) -> IntegrationAccount | None:
    """The account a conversation's message goes out from: the one it names; the channel's
    default only for a conversation that never had one (None: there is none). Raises
    :class:`AccountGone` when the named one was deleted.

    WHY: conversations keep their account's id (no foreign key: it outlives the account).
    The default is another number, page or address than the one the customer writes to,
    another business identity they may never have written to; so a message of a deleted
    account's conversation fails rather than going out from it.
    """
    if account_id is None:
        return default_account(session, tenant_id, channel)
    account = named_account(session, tenant_id, account_id)
    if account is None:
        raise AccountGone(account_id)
    return account


def acting_account(
    session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID | None, channel: str
) -> IntegrationAccount:
    """The account a send, a read receipt or a media fetch of a conversation goes through
    (:func:`conversation_account`); the work fails for good when it names a deleted account,
    when there is none, or when it is switched off (the account or its channel disabled)."""
    try:
        account = conversation_account(session, tenant_id, account_id, channel)
    except AccountGone as exc:
        raise SendFailed(
            ACCOUNT_DELETED,
            f"the {channel} account this conversation runs on was deleted; nothing goes out"
            " through another account (the customer wrote to that one)",
            transient=False,
        ) from exc
    if account is None:
        raise SendFailed("no_account", f"no connected {channel} account", transient=False)
    off = switched_off(account)
    if off is not None:
        raise SendFailed(off.code, off.message, transient=False)
    return account
