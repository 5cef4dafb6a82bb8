"""The inbound ack path: verify the signature, store the raw payload, enqueue its processing.

A provider POST is split into *units*, each addressed to one account, each stored as
one ``inbound_events`` row and processed by its own ``process_inbound`` job, so one
bad unit never loses the others and every row has exactly one tenant:

- WhatsApp: one unit per ``entry[].changes[]`` (``value.metadata.phone_number_id``; a
  change without it, e.g. a template review, is matched by ``entry.id``, the WABA id: one
  unit per tenant with an account naming it);
- Messenger and Instagram: one unit per ``entry[]`` (``entry.id``: Page or IG account id);
- email: the one message (the account is the recipient address).

Dedupe: ``provider_event_id`` is the unit's natural key (recipient id, then its message
ids or status id + status; email: the mailbox address, then the Message-ID) or, when it
has none, the SHA-256 of its canonical JSON (email: of its MIME, after the address), so
a provider's retry inserts nothing. Processing is also idempotent on the provider
message id.

Signatures (Meta): a body is trusted when ``X-Hub-Signature-256`` verifies with the
platform ``META_APP_SECRET`` (then every unit is), or with the ``app_secret`` of an
addressed account (then only that secret's accounts' units are stored; a tenant's app
cannot speak for another tenant's accounts). No verifying secret: 401, nothing stored.

Unknown recipients: a unit addressed to no account answers 200 with the rest. It is
stored as ``dropped`` (tenant null, visible to operators) when the platform secret
verified the body; otherwise (nothing could verify it) it is only logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import json_encoding
from shared.admin import tenant_state
from shared.channels import accounts, email, inbound_queue, signatures
from shared.channels.account_cache import AccountRef, cache
from shared.config import get_settings
from shared.errors import DomainError, Forbidden
from shared.json_encoding import as_object, objects_in
from shared.models import InboundEvent, IntegrationAccount

log = logging.getLogger(__name__)

#: Meta's ``object`` per route: what each POST route accepts and which channel it means.
META_OBJECTS = {
    "whatsapp_business_account": "whatsapp",
    "instagram": "instagram",
    "page": "messenger",
}
ROUTE_OBJECTS = {
    "meta": frozenset({"whatsapp_business_account", "instagram"}),
    "messenger": frozenset({"page"}),
    "instagram": frozenset({"instagram"}),
}
#: Request headers kept beside the payload.
KEPT_HEADERS = ("content-type", "user-agent", "x-hub-signature-256", "x-inbound-signature")
_MAX_NATURAL_KEY = 400


class BadPayload(DomainError):
    status, code = 400, "bad_request"


class InvalidSignature(DomainError):
    status, code = 401, "invalid_signature"


@dataclass
class Unit:
    """One account's share of a callback: what one ``inbound_events`` row stores."""

    channel: str
    external_id: str | None
    payload: dict[str, Any]
    key: str
    #: For WhatsApp changes without a phone number id: the WABA id to match instead.
    waba_id: str | None = None
    account: AccountRef | None = None


@dataclass
class Receipt:
    """What the ack path did, for the response and the logs."""

    stored: list[uuid.UUID] = field(default_factory=list)
    duplicates: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"stored": len(self.stored), "duplicates": self.duplicates, "dropped": self.dropped}


# ------------------------------------------------------------------ parsing


#: PostgreSQL text and JSONB cannot hold NUL: the stored copy gets U+FFFD instead (the
#: signature was checked over the raw bytes already).
_JSON_NUL, _JSON_REPLACEMENT = b"\\u0000", b"\\ufffd"


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400."""
    try:
        data = json_encoding.loads(
            raw.replace(_JSON_NUL, _JSON_REPLACEMENT) if _JSON_NUL in raw else raw
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(
            "The request body is not valid JSON",
            details=[{"field": "body", "message": str(exc)[:200]}],
        ) from exc
    if not isinstance(data, dict):
        raise BadPayload("The request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw):
        data = _without_lone_surrogates(data)
    return data


#: A ``\\uD800``-``\\uDFFF`` escape: half of a pair, or a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each lone surrogate (a text cut mid-emoji) as U+FFFD, as for NUL.

    WHY: JSON lets ``\\ud83d`` stand alone and Python reads it, but no UTF-8 can carry
    it: the recipient lookup or the stored copy raised UnicodeEncodeError, a 500 the
    provider retried forever. Pairs were joined by the parser and are untouched.
    """
    text = json.dumps(data, ensure_ascii=False)
    if not _LONE_SURROGATE.search(text):
        return data
    return json_encoding.loads(_LONE_SURROGATE.sub("\ufffd", text).encode())


def _content_key(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _natural_key(recipient: str | None, ids: list[str], payload: Any) -> str:
    """``<recipient>/<ids>``: ids are only trusted to be unique per receiving account."""
    key = f"{recipient or ''}/{','.join(ids)}"
    return key if ids and len(key) <= _MAX_NATURAL_KEY else _content_key(payload)


def _email_key(address: str, message_id: str | None, mime_b64: str) -> str:
    """``<address>/<Message-ID>``, else ``<address>/sha256:<mime>``.

    WHY the address: one email sent to several tenants' mailboxes (To + Cc) is one unit
    per mailbox, and a Message-ID is chosen by the sender, so another tenant could pre-empt it.
    A Message-ID with control characters (an encoded word can decode to a NUL, which
    PostgreSQL refuses) is no key.
    """
    key = f"{address}/{message_id}"
    if message_id and message_id.isprintable() and len(key) <= _MAX_NATURAL_KEY:
        return key
    return f"{address}/{_content_key(mime_b64)}"


def _whatsapp_ids(value: Mapping[str, Any]) -> list[str]:
    ids = [str(m.get("id")) for m in objects_in(value.get("messages"))]
    ids += [f"{s.get('id')}:{s.get('status')}" for s in objects_in(value.get("statuses"))]
    return ids


def _messaging_ids(entry: Mapping[str, Any]) -> list[str]:
    ids = []
    for event in objects_in(entry.get("messaging")):
        message = event.get("message") or {}
        if isinstance(message, dict) and message.get("mid"):
            ids.append(str(message["mid"]))
        else:
            return []  # postbacks, reads...: no id of their own; use the content key
    return ids


def split_meta(route: str, body: dict[str, Any]) -> list[Unit]:
    """The units of a Meta callback posted to ``route`` (``meta``, ``messenger``, ``instagram``)."""
    obj = body.get("object")
    entries = body.get("entry")
    # NOTE: a str first: a list or an object cannot be looked up in a set (TypeError, a 500).
    if not isinstance(obj, str) or obj not in ROUTE_OBJECTS[route]:
        raise BadPayload(f"Unexpected object {obj!r} for this webhook")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BadPayload("'entry' must be a list of objects")
    channel = META_OBJECTS[obj]
    units: list[Unit] = []
    for entry in entries:
        entry_id = str(entry.get("id") or "")
        if channel != "whatsapp":
            payload = {"object": obj, "entry": entry}
            units.append(
                Unit(
                    channel,
                    entry_id or None,
                    payload,
                    _natural_key(entry_id, _messaging_ids(entry), payload),
                )
            )
            continue
        for change in objects_in(entry.get("changes")):
            value = as_object(change.get("value"))
            metadata = as_object(value.get("metadata"))
            phone_id = metadata.get("phone_number_id")
            payload = {"object": obj, "entry_id": entry_id, "change": change}
            units.append(
                Unit(
                    channel,
                    str(phone_id) if phone_id else None,
                    payload,
                    _natural_key(phone_id, _whatsapp_ids(value), payload),
                    waba_id=None if phone_id else entry_id or None,
                )
            )
    return units


# ------------------------------------------------------------------ resolution


def _resolve(session: Session, units: list[Unit], *, fresh: bool = False) -> list[Unit]:
    """The units with their accounts: cached lookups, plus one query for the WABA-only units.

    A WABA-only unit becomes one unit per tenant whose account names that WABA (see
    :func:`_waba_units`).
    """
    found = cache.lookup(
        session, [(u.channel, u.external_id) for u in units if u.external_id], fresh=fresh
    )
    by_waba = _waba_accounts(session, {u.waba_id for u in units if u.waba_id})
    resolved: list[Unit] = []
    for unit in units:
        if unit.external_id:
            unit.account = found.get((unit.channel, unit.external_id))
            resolved.append(unit)
        elif unit.waba_id:
            resolved += _waba_units(unit, by_waba.get(unit.waba_id, []))
        else:
            resolved.append(unit)
    return resolved


def _waba_accounts(session: Session, waba_ids: set[str]) -> dict[str, list[AccountRef]]:
    """Per WABA id, the account of each tenant naming it (its default, else its oldest).

    PERF/APPSEC: one query for all of them: this runs before the signature can be checked
    against the accounts' secrets, and a query per entry let an unsigned body of thousands
    of entries cost thousands of queries.
    """
    if not waba_ids:
        return {}
    waba = IntegrationAccount.settings["waba_id"].astext
    rows = session.execute(
        select(waba, IntegrationAccount)
        .where(
            IntegrationAccount.channel == "whatsapp",
            waba.in_(sorted(waba_ids)),
            accounts.switched_on(),
        )
        .order_by(IntegrationAccount.is_default.desc(), IntegrationAccount.created_at)
    )
    found: dict[str, dict[uuid.UUID, AccountRef]] = {}
    for waba_id, account in rows:
        tenants = found.setdefault(waba_id, {})
        if account.tenant_id not in tenants:
            tenants[account.tenant_id] = AccountRef.of(account)
    return {waba_id: list(tenants.values()) for waba_id, tenants in found.items()}


def _waba_units(unit: Unit, accounts: list[AccountRef]) -> list[Unit]:
    """The unit for each tenant with an account naming its WABA; the unit itself,
    unaddressed, when none does.

    WHY: a WABA id is a setting a tenant writes. Resolved to one account across tenants,
    another tenant's account naming the same WABA took the reviews (or, signed with the
    owner's own app secret, got them refused with 401). Each tenant's copy is kept on its
    own key and trusted by its own account's secret, as any other unit.
    """
    if len(accounts) <= 1:
        return [replace(unit, account=accounts[0] if accounts else None)]
    return [replace(unit, account=a, key=f"{unit.key}/{a.tenant_id}") for a in accounts]


def _authenticate_meta(
    units: list[Unit], raw: bytes, header: str | None
) -> tuple[list[Unit], bool]:
    """The units the signature vouches for, and whether the platform secret verified it."""
    if not header or not header.startswith("sha256="):
        raise InvalidSignature(f"Missing or malformed {signatures.META_HEADER}")
    platform = get_settings().meta_app_secret
    if platform and signatures.meta_valid(header, raw, platform):
        return units, True
    addressed = [u for u in units if u.account is not None]
    if not addressed and not platform:
        return [], False  # nothing could verify it: unknown recipients only
    verdicts: dict[str, bool] = {}
    trusted = []
    for unit in addressed:
        secret = unit.account.app_secret
        if not secret:
            continue
        if secret not in verdicts:
            verdicts[secret] = signatures.meta_valid(header, raw, secret)
        if verdicts[secret]:
            trusted.append(unit)
    if not trusted:
        raise InvalidSignature("The signature does not match the payload")
    return trusted, False


# ------------------------------------------------------------------ storing


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return {k: lowered[k][:512] for k in KEPT_HEADERS if k in lowered}


#: One ``inbound_events`` row per ``_ROW``: what the ack path's single INSERT binds.
_COLUMNS = "id, channel, provider_event_id, tenant_id, account_id, payload, headers, status, error"
_ROW = "(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s)"
#: Rows per INSERT (9 parameters each: far below PostgreSQL's 65535).
_ROWS_PER_INSERT = 500
_UNKNOWN_RECIPIENT = "no integration account matches the recipient"


@functools.lru_cache(maxsize=32)
def _insert_sql(rows: int) -> str:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` for ``rows`` units, built once per size.

    PERF: driver-level SQL: the ack path's one statement skips SQLAlchemy's statement
    building, cache-key generation and ORM bulk machinery (about a third of its CPU).
    """
    # NOTE: only constants and placeholders are interpolated; every value is a parameter.
    return (
        f"INSERT INTO {InboundEvent.__tablename__} ({_COLUMNS}) VALUES "  # noqa: S608
        + ", ".join([_ROW] * rows)
        + " ON CONFLICT (channel, provider_event_id) DO NOTHING RETURNING channel,"
        " provider_event_id, id"
    )


def _row(unit: Unit, headers_json: str) -> tuple:
    account = unit.account
    return (
        uuid.uuid4(),
        unit.channel,
        unit.key,
        account.tenant_id if account else None,
        account.id if account else None,
        json.dumps(unit.payload, ensure_ascii=False, separators=(",", ":")),
        headers_json,
        "pending" if account else "dropped",
        None if account else _UNKNOWN_RECIPIENT,
    )


def _live(session: Session, units: list[Unit], receipt: Receipt) -> list[Unit]:
    """The units whose tenant is not suspended: a suspended tenant's are acknowledged and
    dropped, nothing stored (epoch-cached check: no query per callback)."""
    kept = []
    for unit in units:
        if unit.account is not None and tenant_state.is_suspended(unit.account.tenant_id, session):
            receipt.dropped += 1
            log.warning(
                "inbound %s payload for suspended tenant %s dropped",
                unit.channel,
                unit.account.tenant_id,
            )
        else:
            kept.append(unit)
    return kept


def _store(session: Session, units: list[Unit], headers: dict[str, str], receipt: Receipt) -> None:
    """Insert every unit in one statement (per 500); a key already stored is a duplicate."""
    units = _live(session, units, receipt)
    if not units:
        return
    headers_json = json.dumps(headers, ensure_ascii=False, separators=(",", ":"))
    connection = session.connection()
    inserted: dict[tuple[str, str], uuid.UUID] = {}
    for start in range(0, len(units), _ROWS_PER_INSERT):
        chunk = units[start : start + _ROWS_PER_INSERT]
        params = [value for unit in chunk for value in _row(unit, headers_json)]
        result = connection.exec_driver_sql(_insert_sql(len(chunk)), tuple(params))
        inserted.update(((channel, key), row_id) for channel, key, row_id in result)
    for unit in units:
        # NOTE: pop: a unit repeated within the callback is inserted once, then a duplicate.
        row_id = inserted.pop((unit.channel, unit.key), None)
        if row_id is None:
            receipt.duplicates += 1
        elif unit.account is None:
            receipt.dropped += 1
            log.warning(
                "inbound %s payload for unknown recipient %s dropped",
                unit.channel,
                unit.external_id,
            )
        else:
            receipt.stored.append(row_id)
    inbound_queue.enqueue_after_commit(session, receipt.stored)


def receive_meta(session: Session, route: str, raw: bytes, headers: Mapping[str, str]) -> Receipt:
    """Verify, store and enqueue a Meta callback posted to ``route``; see the module doc."""
    split = split_meta(route, parse_json(raw))
    units = _resolve(session, split)
    signature = next((v for k, v in headers.items() if k.lower() == "x-hub-signature-256"), None)
    try:
        trusted, by_platform = _authenticate_meta(units, raw, signature)
    except InvalidSignature:
        if not signature or not signature.startswith("sha256="):
            raise
        # NOTE: maybe a secret rotated since it was cached: verify once more, from the database.
        units = _resolve(session, split, fresh=True)
        trusted, by_platform = _authenticate_meta(units, raw, signature)
    receipt = Receipt()
    kept = [u for u in trusted if u.account is not None or by_platform]
    receipt.dropped += len(units) - len(kept)
    kept_ids = {id(u) for u in kept}
    for unit in units:
        if id(unit) not in kept_ids:
            log.warning(
                "inbound %s payload for %s dropped: unknown or unauthenticated recipient",
                unit.channel,
                unit.external_id or unit.waba_id,
            )
    _store(session, kept, _kept(headers), receipt)
    return receipt


def receive_email(session: Session, raw: bytes, headers: Mapping[str, str]) -> Receipt:
    """Verify, store and enqueue one inbound email (see :mod:`.signatures` for the scheme).

    Body: ``{"recipient": "support@acme.example", "mime": "<base64 of the raw message>"}``.
    """
    body = parse_json(raw)
    recipient, mime_b64 = body.get("recipient"), body.get("mime")
    if not isinstance(recipient, str) or not isinstance(mime_b64, str):
        raise BadPayload("Send 'recipient' (an address) and 'mime' (base64 of the message)")
    try:
        mime = base64.b64decode(mime_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadPayload("'mime' is not valid base64") from exc
    signature = next((v for k, v in headers.items() if k.lower() == "x-inbound-signature"), None)
    if signatures.parse_email_header(signature) is None:
        raise InvalidSignature(f"Missing or malformed {signatures.EMAIL_HEADER}")
    account = accounts.resolve_account(session, "email", recipient)
    receipt = Receipt()
    if account is None:
        receipt.dropped = 1
        log.warning("inbound email for unknown recipient %s dropped", recipient[:254])
        return receipt
    key = accounts.decrypt_credentials(account).get("inbound_signing_key", "")
    max_age = get_settings().inbound_email_max_age_seconds
    if not signatures.email_valid(signature, raw, key, max_age=max_age):
        raise InvalidSignature("The signature does not match the payload, or is too old")
    message_id = email.message_id_of(mime)
    unit = Unit(
        "email",
        account.external_id,
        {"recipient": recipient, "mime": mime_b64},
        _email_key(account.external_id, message_id, mime_b64),
        account=AccountRef.of(account),
    )
    _store(session, [unit], _kept(headers), receipt)
    return receipt


# ------------------------------------------------------------------ handshake


def _single(params: Mapping[str, Any], name: str) -> str | None:
    """A query parameter sent once; one sent twice (a list) counts as not sent.

    WHY: the handshake is public, and a repeated parameter reached the token comparison
    (or the echoed body) as a list: a 500 for anyone who asked.
    """
    value = params.get(name)
    return value if isinstance(value, str) else None


def verify_subscription(session: Session, params: Mapping[str, str]) -> str:
    """Meta's GET handshake: the challenge to echo when the verify token is one we know."""
    mode, token = _single(params, "hub.mode"), _single(params, "hub.verify_token")
    challenge = _single(params, "hub.challenge")
    if mode != "subscribe" or not token or challenge is None:
        raise Forbidden("Not a valid subscription request")
    platform = get_settings().meta_verify_token
    if platform and signatures.constant_equal(token, platform):
        return challenge
    digest = accounts.token_digest(token)
    known = session.scalar(
        select(IntegrationAccount.id)
        .where(IntegrationAccount.verify_token_digest == digest)
        .limit(1)
    )
    if known is None:
        raise Forbidden("The verify token does not match")
    return challenge
