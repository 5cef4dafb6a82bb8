"""Graph calls made inside a request: Meta's failures become the API's answers.

An account whose stored token Meta rejects (``190``) is marked ``error`` in a
transaction of its own, so the mark survives the failed request's rollback, and the
answer says so. The caller must not hold a lock on that account row while calling
Meta (read it plainly; lock it only to write after the call).

Example::

    with meta_calls.calling("reading the persistent menu", ctx=ctx, account=account):
        answer = graph_client().request("GET", "me/messenger_profile", token, ...)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import func, update

from shared import activity
from shared.channels.graph_errors import domain_error, is_token_invalid
from shared.channels.send_errors import SendFailed
from shared.context import Ctx
from shared.db import session_scope
from shared.models import IntegrationAccount

log = logging.getLogger(__name__)


@contextlib.contextmanager
def calling(
    what: str,
    *,
    ctx: Ctx,
    account: IntegrationAccount | None = None,
    field: str | None = None,
    remedy: str | None = None,
) -> Iterator[None]:
    """Turn a :class:`SendFailed` raised inside into :func:`graph_errors.domain_error`."""
    try:
        yield
    except SendFailed as failure:
        hint = remedy or "reconnect the account"
        if account is not None and is_token_invalid(failure):
            if mark_token_invalid(ctx, account, failure):
                hint = f"integration account {account.id} is now in status 'error'; {hint}"
            else:
                hint = f"integration account {account.id} stays '{account.status}'; {hint}"
        raise domain_error(failure, what=what, field=field, remedy=hint) from failure


def mark_token_invalid(ctx: Ctx, account: IntegrationAccount, failure: SendFailed) -> bool:
    """Set an active account's status to ``error`` (committed now); whether it changed.

    A disabled account stays disabled: an operator chose that.
    """
    with session_scope() as session:
        changed = session.execute(
            update(IntegrationAccount)
            .where(
                IntegrationAccount.id == account.id,
                IntegrationAccount.tenant_id == ctx.tenant_id,
                IntegrationAccount.status.in_(("active", "error")),
            )
            .values(status="error", updated_at=func.now())
            .returning(IntegrationAccount.id)
        ).first()
        if changed is None:
            return False
        activity.record(
            session,
            ctx,
            "integration_account.token_invalid",
            "integration_account",
            account.id,
            before={"status": account.status},
            after={"status": "error", "meta_code": failure.code},
        )
    log.warning(
        "Meta rejected the token of integration account %s (%s); marked error",
        account.id,
        failure.code,
    )
    return True
