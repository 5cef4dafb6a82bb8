"""What an ``api``-channel account holds: a callback URL and a Standard Webhooks signing secret.

Plain functions over settings and credentials dicts (no session, no import of the
account services), used by :mod:`.accounts` when an api account is created or updated,
by :mod:`.api_channel` to rotate the secret and by :mod:`.api_callback` to sign.

- ``settings.callback_url``: where outbound messages are POSTed; checked with the SSRF
  guard's save-time rule (:func:`shared.webhooks.ssrf.check_url`), the one webhook
  endpoints use, and again at every delivery. Optional: an account without one hands
  outbound messages over at once (``sent``), for systems that read replies from the
  outgoing webhooks or the messages API instead (as the demo tenant's account does).
  ``settings.timeout_seconds`` (optional, 1-60) bounds one attempt, capped by
  ``WEBHOOK_TIMEOUT_SECONDS`` as a webhook endpoint's is; ``WEBHOOK_TIMEOUT_SECONDS``
  otherwise.
- credentials ``signing_secret`` (``whsec_...``), generated here, shown once; after a
  rotation ``previous_signing_secret`` also signs until ``previous_signing_secret_expires_at``
  (the receiver verifies with either during the overlap, as with outgoing webhooks).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from shared.errors import ValidationFailed
from shared.webhooks import signing
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url

CHANNEL = "api"
SECRET_KEY = "signing_secret"  # noqa: S105 (a credential's name)
PREVIOUS_KEY = "previous_signing_secret"
PREVIOUS_EXPIRES_KEY = "previous_signing_secret_expires_at"
#: How long a rotated-out secret keeps signing next to the new one (as for webhooks).
ROTATION_OVERLAP = dt.timedelta(hours=24)
#: Bounds of ``settings.timeout_seconds`` (one callback attempt), as for webhook endpoints.
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 60.0
#: Prefix of generated ``external_id`` values (the inbox identifier).
EXTERNAL_ID_PREFIX = "api_"


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with a valid ``callback_url`` or none (422 naming the field otherwise)."""
    url = settings.get("callback_url")
    field = "settings.callback_url"
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise ValidationFailed.field(field, "a URL outbound messages are POSTed to, or null")
        if len(url) > 2048:
            raise ValidationFailed.field(field, "at most 2048 characters")
        try:
            check_url(url.strip(), Policy.from_settings())
        except UnsafeUrl as exc:
            raise ValidationFailed.field(field, str(exc)) from exc
    timeout = settings.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT
    ):
        raise ValidationFailed.field(
            "settings.timeout_seconds", f"seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}"
        )
    if url is None:
        return {key: value for key, value in settings.items() if key != "callback_url"}
    return {**settings, "callback_url": url.strip()}


def timeout_of(settings: dict[str, Any], default: float) -> float:
    """The bound on one callback attempt: ``settings.timeout_seconds`` up to ``default``
    (``WEBHOOK_TIMEOUT_SECONDS``), else ``default``.

    WHY the cap: the outbound engine starts a send only while its claim has room for
    the send's bound, which the settings derive from ``WEBHOOK_TIMEOUT_SECONDS``; an
    account's 60 s outlasted that room, and its claim could run out mid-callback.
    """
    return min(float(settings.get("timeout_seconds") or default), default)


def external_id(given: str | None) -> str:
    """The account's inbox identifier: the caller's (trimmed), or a generated one."""
    if given is None:
        return EXTERNAL_ID_PREFIX + secrets.token_urlsafe(18)
    value = given.strip()
    if not value:
        raise ValidationFailed.field("external_id", "cannot be blank")
    return value


def new_credentials() -> dict[str, str]:
    """The credentials of a new api account: a fresh signing secret."""
    return {SECRET_KEY: signing.generate_secret()}


def rotated(current: dict[str, str], now: dt.datetime) -> dict[str, str]:
    """``current`` with a new secret; the old one signs too for :data:`ROTATION_OVERLAP`."""
    rotated_ = {SECRET_KEY: signing.generate_secret()}
    if current.get(SECRET_KEY):
        rotated_[PREVIOUS_KEY] = current[SECRET_KEY]
        rotated_[PREVIOUS_EXPIRES_KEY] = (now + ROTATION_OVERLAP).isoformat()
    return rotated_


def signing_secrets(credentials: dict[str, str], now: dt.datetime) -> tuple[str, ...]:
    """The secrets that sign a callback now: the current one, and the previous one in its day."""
    found = tuple(s for s in (credentials.get(SECRET_KEY),) if s)
    previous, expires = credentials.get(PREVIOUS_KEY), credentials.get(PREVIOUS_EXPIRES_KEY)
    if previous and expires and dt.datetime.fromisoformat(expires) > now:
        found += (previous,)
    return found
