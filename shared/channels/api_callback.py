"""The api channel's transport: POST an outbound message to the account's callback URL, signed.

One attempt per call of :func:`send`, made by the outgoing webhooks' own sender
(:func:`shared.webhooks.delivery.send` over :func:`shared.webhooks.transport.shared_client`):
the same Standard Webhooks signature (``webhook-id`` is the message id, the same on every
attempt, so a receiver dedupes retries), the same SSRF guard at connect time, the same
bound on an attempt (the account's ``timeout_seconds`` up to ``WEBHOOK_TIMEOUT_SECONDS``),
no redirects. Retries, backoff and the final ``failed`` are :mod:`.outbound`'s, as for
every channel: this module only says whether a failure is worth retrying.

The body is an event envelope like an outgoing webhook's::

    {"type": "message.created", "timestamp": "...", "tenant_id": "...",
     "actor": {"type": "user", "id": "..."},
     "data": {"id", "account_id", "conversation_id", "contact": {"id", "source_id", "name",
              "email", "phone"}, "content", "content_type", "template", "attachments": [{...,
              "url"}], "choices": [{"id", "title"}], "sender": {"type", "id"}, "created_at"}}

``choices`` are the reply buttons the message offers (a CSAT survey's ratings; usually
empty): the contact's pick comes back as an inbound message with ``choice`` set to its id.

A 2xx answer is ``sent``; a JSON body with a string ``id`` names the message on the
receiver's side and becomes its provider id (namespaced, see :func:`provider_id`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from shared import json_encoding
from shared.channels import api_account, choices, ingest
from shared.channels.send_errors import SendFailed
from shared.config import get_settings
from shared.models import IntegrationAccount, Message
from shared.webhooks import catalogue, delivery, transport

log = logging.getLogger(__name__)

#: The callback's event type (what ``webhook-id`` and ``type`` describe).
EVENT_TYPE = "message.created"
#: Longest receiver id kept (``provider_message_id`` is text, but ids are short).
MAX_RECEIVER_ID = 200
#: Kept in the failure message of a refused callback: the start of the receiver's answer.
MAX_ERROR_BODY = 300


def provider_id(account: IntegrationAccount, direction: str, own_id: str) -> str:
    """The ``provider_message_id`` of an api-channel message: ``api:<account>:<in|out>:<id>``.

    NOTE: provider ids are unique per tenant across channels; the caller's ids are only
    unique within its own system and direction, so they are namespaced by both.
    """
    return f"api:{account.id}:{'in' if direction == 'inbound' else 'out'}:{own_id}"


def media_url(media_id: str) -> str:
    """Where the receiver downloads an attachment (with its API key): absolute when
    ``PUBLIC_BASE_URL`` is set."""
    base = (get_settings().public_base_url or "").rstrip("/")
    return f"{base}/api/media/{media_id}"


def payload(outgoing: Any) -> dict[str, Any]:
    """The envelope POSTed for ``outgoing`` (a :class:`shared.channels.transports.Outgoing`)."""
    message, contact = outgoing.message, outgoing.contact
    sender = {"type": message.sender_type, "id": str(message.sender_id or "") or None}
    data = {
        "id": str(message.id),
        "account_id": str(outgoing.account.id),
        "conversation_id": str(message.conversation_id),
        "contact": {
            "id": str(contact.id),
            "source_id": contact.external_id,
            "name": contact.name,
            "email": contact.email,
            "phone": contact.phone,
        },
        "content": message.body,
        "content_type": message.content_type,
        "template": message.template,
        "attachments": [
            {**item, "url": media_url(item["media_id"])} for item in message.attachments or []
        ],
        "choices": choices.offered(message.metadata_),
        "sender": sender,
        "created_at": catalogue.rfc3339(message.created_at),
    }
    return catalogue.envelope(
        message.id,
        EVENT_TYPE,
        message.created_at,
        data,
        tenant_id=message.tenant_id,
        actor=sender if message.sender_type != "system" else None,
    )


def send(session: Session, outgoing: Any, ready: Callable[[], None] | None = None) -> str:
    """POST the message once; return its provider id, or raise :class:`SendFailed`.

    An account without a callback URL has nothing to call: the message is handed over
    (``sent``) and the tenant's system reads it from the webhooks or the messages API.
    ``ready`` is called right before the POST (see :func:`.transports.send`).
    """
    account, message = outgoing.account, outgoing.message
    if not (account.settings or {}).get("callback_url"):
        return provider_id(account, message.direction, str(message.id))
    envelope = payload(outgoing)
    if ready is not None:
        ready()
    result = post(account, outgoing.credentials, message.id, EVENT_TYPE, envelope)
    if not result.ok:
        raise failure(result)
    # NOTE: the receiver took the message: nothing in reading its answer may fail the
    # send (a retry POSTs it again), so any error there falls back to our own id.
    try:
        with session.begin_nested():
            return _provider_id(session, account, message, result.response_body)
    except Exception:
        log.exception("send %s: the callback's answer could not be read", message.id)
        return provider_id(account, message.direction, str(message.id))


def post(
    account: IntegrationAccount,
    credentials: dict[str, str],
    event_id: uuid.UUID,
    event_type: str,
    envelope: dict[str, Any],
) -> delivery.Result:
    """One signed POST of ``envelope`` to the account's callback URL, by the webhook sender."""
    url = (account.settings or {}).get("callback_url")
    if not url:
        raise SendFailed("missing_settings", "the api account has no callback_url", transient=False)
    secrets = api_account.signing_secrets(credentials, dt.datetime.now(dt.UTC))
    if not secrets:
        raise SendFailed(
            "missing_credentials", "the api account has no signing secret", transient=False
        )
    default_timeout = get_settings().webhook_timeout_seconds
    claimed = delivery.Claimed(
        id=event_id,
        tenant_id=account.tenant_id,
        endpoint_id=account.id,
        event_id=event_id,
        event_type=event_type,
        payload=envelope,
        attempt=1,
        url=url,
        enabled=True,
        secrets=secrets,
        timeout=api_account.timeout_of(account.settings or {}, default_timeout),
        max_concurrency=1,
    )
    return delivery.send(transport.shared_client(), claimed)


def failure(result: delivery.Result) -> SendFailed:
    """What a failed attempt means for the message: timeouts, connection errors, 408, 429
    and 5xx are worth retrying; a refused address, a redirect or another 4xx are not."""
    kind, status = result.error_kind, result.status_code
    if kind == "status" and status is not None:
        body = (result.response_body or "")[:MAX_ERROR_BODY]
        text = f"the callback answered HTTP {status}" + (f": {body}" if body else "")
        transient = status in (408, 429) or status >= 500
        return SendFailed(
            f"http_{status}",
            text,
            transient=transient,
            http_status=status,
            retry_after=result.retry_after,
        )
    code = {"connection": "connection_error"}.get(kind or "", kind or "error")
    transient = kind in ("timeout", "connection")
    return SendFailed(code, result.error or "the callback failed", transient=transient)


def _provider_id(
    session: Session, account: IntegrationAccount, message: Message, body: str | None
) -> str:
    """The receiver's id from its answer (``{"id": "..."}``), else our message id.

    A receiver id already naming another message of the tenant (a receiver answering a
    constant) falls back to ours: provider ids are unique per tenant. So does one with
    control characters (a NUL cannot even be stored).
    """
    own = str(message.id)
    try:
        answer = json_encoding.loads(body or "")
    except ValueError:
        answer = None
    found = answer.get("id") if isinstance(answer, dict) else None
    valid = isinstance(found, str | int) and not isinstance(found, bool)
    receiver_id = str(found).strip() if valid else ""
    if receiver_id and receiver_id.isprintable():
        candidate = provider_id(account, "outbound", receiver_id[:MAX_RECEIVER_ID])
        # NOTE: by id: the sender's session is not the one that loaded ``message``.
        found_message = ingest.find_message(session, message.tenant_id, candidate)
        if found_message is None or found_message.id == message.id:
            return candidate
    return provider_id(account, "outbound", own)
