"""An account whose token Meta rejected (``190``) is marked ``error``: visible, not silent.

Both places that learn it call :func:`mark_rejected`: a request calling Meta inline
(in a transaction of its own, :mod:`shared.channels.onboarding.meta_calls`) and the
outbound worker failing a send (in the send's transaction). A ``disabled`` account
stays disabled: an operator chose that. The admin reconnects (or sets a new token
and ``status: active``) to clear it.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from shared import activity
from shared.context import Ctx
from shared.models import IntegrationAccount

log = logging.getLogger(__name__)

#: Meta codes saying the access token is not (or no longer) usable.
TOKEN_INVALID_CODES = frozenset({"190", "102"})


def mark_rejected(
    session: Session,
    ctx: Ctx,
    account_id: uuid.UUID,
    meta_code: str,
    *,
    rejected_credentials: str | None = None,
) -> bool:
    """Set the account's status to ``error`` (and audit it); whether it is ``error`` now.

    ``rejected_credentials``: the stored (encrypted) credentials the refused call used.
    Given, an account whose credentials changed since is left as it is: an admin who
    reconnected while the call was out has a new token, which Meta did not refuse.
    """
    unchanged = (
        [IntegrationAccount.credentials_encrypted == rejected_credentials]
        if rejected_credentials is not None
        else []
    )
    previous = session.execute(
        update(IntegrationAccount)
        .where(
            IntegrationAccount.id == account_id,
            IntegrationAccount.tenant_id == ctx.tenant_id,
            IntegrationAccount.status.in_(("active", "error")),
            *unchanged,
        )
        .values(status="error", updated_at=func.now())
        .returning(IntegrationAccount.id)
    ).first()
    if previous is None:
        return False
    activity.record(
        session,
        ctx,
        "integration_account.token_invalid",
        "integration_account",
        account_id,
        after={"status": "error", "meta_code": meta_code},
    )
    log.warning(
        "Meta rejected the token of integration account %s (%s); marked error",
        account_id,
        meta_code,
    )
    return True
