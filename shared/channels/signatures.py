"""Signatures of inbound provider callbacks, always over the raw request body.

Meta (WhatsApp, Instagram, Messenger) sends ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the raw body keyed by the app secret.

Email providers differ, so OmniStream's inbound email webhook documents its own scheme,
Stripe-like and with the body covered (Mailgun signs only a timestamp and a token, which
lets a captured signature carry any body)::

    X-Inbound-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + raw body)>

``key`` is the mailbox account's ``inbound_signing_key``; a signature older than
``INBOUND_EMAIL_MAX_AGE_SECONDS`` (or as far in the future) is refused, so a captured
request cannot be replayed later; within the window a replay is deduplicated by the
email's Message-ID. Several ``v1=`` entries may be sent during a key rotation.

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from shared.digits import ascii_digits

META_HEADER = "X-Hub-Signature-256"
EMAIL_HEADER = "X-Inbound-Signature"
#: Digits a ``t=`` may have: Unix seconds have 10 for centuries. WHY: ``int()`` refuses
#: more than 4300 digits (ValueError, a 500), and no longer value is a time we accept.
_MAX_TIMESTAMP_DIGITS = 12


def meta_signature(secret: str, raw: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``raw`` (tests and tools use it too)."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def meta_valid(header: str | None, raw: bytes, secret: str) -> bool:
    if not header or not secret:
        return False
    return hmac.compare_digest(
        header.strip().lower().encode(), meta_signature(secret, raw).encode()
    )


def email_signature(key: str, raw: bytes, timestamp: int | None = None) -> str:
    """The ``X-Inbound-Signature`` value for ``raw`` signed at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(key.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def parse_email_header(header: str | None) -> tuple[int, list[str]] | None:
    """``(timestamp, [v1 digests])`` of a well-formed header, else None."""
    if not header:
        return None
    timestamp, digests = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and ascii_digits(value) and len(value) <= _MAX_TIMESTAMP_DIGITS:
            timestamp = int(value)
        elif name == "v1" and value:
            digests.append(value.lower())
    if timestamp is None or not digests:
        return None
    return timestamp, digests


def email_valid(
    header: str | None, raw: bytes, key: str, *, max_age: float, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``raw`` with ``key`` and is at most ``max_age`` seconds old."""
    parsed = parse_email_header(header)
    if parsed is None or not key:
        return False
    timestamp, digests = parsed
    if abs((time.time() if now is None else now) - timestamp) > max_age:
        return False
    expected = email_signature(key, raw, timestamp).partition(",v1=")[2].encode()
    return any(hmac.compare_digest(d.encode(), expected) for d in digests)


def constant_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
