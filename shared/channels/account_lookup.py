"""Which account a background job acts through: the one a row names, else the channel default."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels.accounts import default_account
from shared.models import IntegrationAccount


def account_for(
    session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID | None, channel: str | None
) -> IntegrationAccount | None:
    """The tenant's account ``account_id`` if it still exists, else its default for ``channel``.

    APPSEC: not for the api channel when the row named an account: each api account is
    another system of the tenant, so a conversation of a deleted one is never handed to
    another's callback.
    """
    account = None
    if account_id is not None:
        account = session.scalars(
            select(IntegrationAccount).where(
                IntegrationAccount.id == account_id, IntegrationAccount.tenant_id == tenant_id
            )
        ).one_or_none()
    if account is None and channel and not (channel == "api" and account_id is not None):
        account = default_account(session, tenant_id, channel)
    return account
