"""Graph calls made inside a request: Meta's failures become the API's answers.

An account whose stored token Meta rejects (``190``) is marked ``error`` in a
transaction of its own, so the mark survives the failed request's rollback, and the
answer says so. The caller must not hold a lock on that account row while calling
Meta (read it plainly; lock it only to write after the call).

Read the answer inside the block too: an answer in a shape the reading code does not
expect (a string where Meta documents an object, a count that is not a number) is
Meta's failure, a 502 naming the call, not a 500 blaming us.

Example::

    with meta_calls.calling("reading the persistent menu", ctx=ctx, account=account):
        answer = graph_client().request("GET", "me/messenger_profile", token, ...)
        menu = answer.get("data") or []
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, TypeVar

from shared.channels import token_rejections
from shared.channels.graph_errors import domain_error, is_token_invalid
from shared.channels.send_errors import SendFailed
from shared.context import Ctx
from shared.db import session_scope
from shared.digits import ascii_digits
from shared.models import IntegrationAccount

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What reading an answer of another shape than documented raises.
SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError)


class ShapeError(TypeError):
    """A field of Meta's answer in another shape than documented; its message names the
    field (never its value: it may be a token) and is shown in the 502."""


def typed(value: Any, kind: type[T], what: str) -> T | None:
    """``value`` when Meta sent the documented ``kind`` (or nothing); another type is
    a shape error, so a 502 inside :func:`calling`."""
    if value is None or isinstance(value, kind):
        return value
    raise ShapeError(f"{what} is a {type(value).__name__}, not a {kind.__name__}")


def graph_id(value: Any, what: str) -> str:
    """A Graph object id (digits, sent as a string or a number) as a string; another
    shape is a shape error. WHY: ``str()`` of anything else became an id we then sent
    back to Meta, or a 422 blaming a field the caller never sent."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and ascii_digits(value):
        return value
    raise ShapeError(f"{what} is not a Graph id")


def text_or_none(value: Any) -> str | None:
    """A cosmetic text field: a string as sent, anything else dropped to None."""
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def calling(
    what: str,
    *,
    ctx: Ctx,
    account: IntegrationAccount | None = None,
    field: str | None = None,
    remedy: str | None = None,
) -> Iterator[None]:
    """Turn a :class:`SendFailed` raised inside into :func:`graph_errors.domain_error`,
    and so an answer the block could not read (:data:`SHAPE_ERRORS`): a 502."""
    try:
        try:
            yield
        except SHAPE_ERRORS as exc:
            log.error("Meta answered %s in a shape it does not document", what, exc_info=exc)
            said = f" ({exc})" if isinstance(exc, ShapeError) else ""
            raise SendFailed(
                "bad_response", f"the answer was not in the documented shape{said}", transient=False
            ) from exc
    except SendFailed as failure:
        hint = remedy or "reconnect the account"
        if account is not None and is_token_invalid(failure):
            if mark_token_invalid(ctx, account, failure):
                hint = f"integration account {account.id} is now in status 'error'; {hint}"
            else:
                hint = f"integration account {account.id} stays '{account.status}'; {hint}"
        raise domain_error(failure, what=what, field=field, remedy=hint) from failure


def mark_token_invalid(ctx: Ctx, account: IntegrationAccount, failure: SendFailed) -> bool:
    """Mark the account ``error`` now, committed apart from the failing request."""
    with session_scope() as session:
        return token_rejections.mark_rejected(
            session,
            ctx,
            account.id,
            failure.code,
            rejected_credentials=account.credentials_encrypted,
        )
