"""OAuth ``state`` for the Instagram and Messenger logins: a code is redeemed only by the
admin, workspace and channel whose oauth-config started its login.

WHY: a login's ``code`` travels through the browser's redirect URL (referrers, logs, a
shared screen). Without ``state``, whoever holds an unused code could POST it to their
own workspace's connect with the same ``redirect_uri`` and attach the victim's Page or
Instagram account (and its customers' messages) to their workspace.

A state is ``{channel}.{expires}.{nonce}.{signature}``: HMAC-SHA256 under ``SECRET_KEY``
(as the ops operator cookie is signed) over the tenant, the caller, the channel, the
expiry and the nonce, so it is verified without storage. NOTE: the tenant and user ids
are signed but not carried: verification takes them from the request, so no id of ours
travels through Meta's redirect. Every field is URL-safe (base64url, digits, ``.``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets

from shared.config import get_settings
from shared.context import Ctx
from shared.errors import ValidationFailed

#: How long a login may take from its oauth-config to its connect.
LIFETIME = dt.timedelta(minutes=15)
#: Domain separation: a signature of this module is never valid anywhere else.
_PURPOSE = "meta-oauth-state-v1"


class InvalidOAuthState(ValidationFailed):
    code = "invalid_oauth_state"


def issue(ctx: Ctx, channel: str, *, now: dt.datetime | None = None) -> str:
    """A state for ``channel``'s login by this caller; ``now`` only for tests (expiry)."""
    issued = now or dt.datetime.now(dt.UTC)
    expires = int((issued + LIFETIME).timestamp())
    nonce = secrets.token_urlsafe(16)
    return f"{channel}.{expires}.{nonce}.{_signature(ctx, channel, expires, nonce)}"


def check(ctx: Ctx, channel: str, state: str | None, redirect_uri: str | None) -> None:
    """Refuse (422 ``invalid_oauth_state``) a connect whose state this login did not get.

    The redirect flow (``redirect_uri`` given) needs one; the JavaScript SDK's popup,
    whose code never appears in a URL, may leave it out, but one sent is checked.
    """
    if state is None:
        if redirect_uri:
            raise _refusal(channel, "required when redirect_uri is given")
        return
    verify(ctx, channel, state)


def verify(ctx: Ctx, channel: str, state: str) -> None:
    """Accept only a state signed by us for this tenant, caller and channel, unexpired."""
    parts = state.split(".")
    if len(parts) != 4 or not _is_timestamp(parts[1]):
        raise _refusal(channel, "not a state this API issued")
    issued_for, expires, nonce, signature = parts[0], int(parts[1]), parts[2], parts[3]
    expected = _signature(ctx, issued_for, expires, nonce)
    # NOTE: bytes: compare_digest() raises TypeError for a str with non-ASCII characters.
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise _refusal(channel, "not issued to you in this workspace, or altered")
    if issued_for != channel:
        raise _refusal(channel, f"issued for the {issued_for[:20]} login, not this one")
    if expires <= dt.datetime.now(dt.UTC).timestamp():
        raise _refusal(channel, "expired (a login has 15 minutes)")


def _signature(ctx: Ctx, channel: str, expires: int, nonce: str) -> str:
    # An API-key caller without a user is bound to its key.
    caller = f"user:{ctx.user_id}" if ctx.user_id else f"key:{ctx.api_key_id}"
    message = f"{_PURPOSE}:{ctx.tenant_id}:{caller}:{channel}:{expires}:{nonce}"
    digest = hmac.new(get_settings().secret_key.encode(), message.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _is_timestamp(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12


def _refusal(channel: str, reason: str) -> InvalidOAuthState:
    return InvalidOAuthState(
        f"The login's state is {reason}: get a new state from"
        f" GET /api/integrations/{channel}/oauth-config and run the login again",
        details=[{"field": "state", "message": reason}],
    )
