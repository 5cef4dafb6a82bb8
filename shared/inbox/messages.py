"""Messages of a conversation: the list, outbound sends and their idempotency.

Every outbound message, whoever sends it (an agent through the API, the
expiry job's closing message, later scheduled and campaign sends), is created
by :func:`create_outbound_message`, so counters, the activity log and the
``message.created`` event are written the same way in one transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import time
import uuid
from typing import Any

import redis
from sqlalchemy import (
    Integer,
    Select,
    Update,
    bindparam,
    exists,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, make_transient_to_detached

from shared import activity, db, idempotency
from shared.billing import usage as billing_usage
from shared.channels import account_lookup
from shared.channels import attachments as channel_attachments
from shared.channels.templates import sending as template_sending
from shared.context import Ctx
from shared.errors import Conflict, DependencyUnavailable, ValidationFailed
from shared.inbox import conversation_counts
from shared.inbox import conversations as convs
from shared.inbox.access import (
    ConversationHead,
    get_conversation_head,
    require_visible,
    visibility,
    visible_bound,
)
from shared.models import Conversation, ConversationSla, Message
from shared.pagination import Page, fetch_page, keyset_statement
from shared.redis_client import get_redis, key
from shared.schemas.messages import MessageView
from shared.timekeeping import sla

log = logging.getLogger(__name__)

PREVIEW_CHARS = 200
#: Channels whose transport sends a template: WhatsApp, and the API channel's callback.
#: Email, Messenger and Instagram send a body or files only.
TEMPLATE_CHANNELS = ("whatsapp", "api")
WHATSAPP_WINDOW = dt.timedelta(hours=24)
#: How long a replayed Idempotency-Key is remembered once its message is committed.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
#: How long a claimed key may stay "in flight" (claimed, not yet committed).
IDEMPOTENCY_LEASE_SECONDS = 60
#: How long a concurrent repeat waits for the first request to commit.
IDEMPOTENCY_WAIT_SECONDS = 3.0

#: The columns of :class:`MessageView`, for lists built from rows.
MESSAGE_COLUMNS = (
    Message.id,
    Message.conversation_id,
    Message.channel,
    Message.direction,
    Message.sender_type,
    Message.sender_id,
    Message.content_type,
    Message.body,
    Message.attachments,
    Message.template,
    Message.status,
    Message.provider_message_id,
    Message.error_code,
    Message.error_message,
    Message.created_at,
    Message.updated_at,
)


class WindowClosed(Conflict):
    """WhatsApp refuses free-form messages 24 h after the contact's last message."""

    code = "window_closed"


class AccountDeleted(Conflict):
    """The conversation's account was deleted: no other account may answer the customer."""

    code = account_lookup.ACCOUNT_DELETED

    def __init__(self) -> None:
        super().__init__(
            "The account this conversation runs on was deleted: a reply would go out from"
            " another number, page or address than the one the customer wrote to",
            details=[{"field": "integration_account_id", "reason": "deleted"}],
        )


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"


def list_messages(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[dict[str, Any]]:
    """A page of a visible conversation's messages, newest first, as ``MessageView`` dicts.

    PERF: one prebuilt statement on the driver: the page, under a one-time check that
    the caller may see the conversation (PostgreSQL runs it once, before the scan). Only
    an empty page pays the second round trip that tells "no messages" from 404.
    ``ix_messages_conversation`` serves the keyset.
    """
    shape, params = visibility(ctx)
    params["tenant_id"], params["conversation_id"] = ctx.tenant_id, conversation_id
    page = fetch_page(
        session.connection(),
        functools.partial(_page_statement, shape),
        params,
        limit=limit,
        cursor=cursor,
    )
    if not page.items:
        require_visible(session, ctx, conversation_id)
    return page


@functools.cache
def _page_statement(shape: str, after: bool) -> Select[Any]:
    conversation_id = bindparam("conversation_id", type_=Message.conversation_id.type)
    query = select(*MESSAGE_COLUMNS).where(
        Message.tenant_id == bindparam("tenant_id", type_=Message.tenant_id.type),
        Message.conversation_id == conversation_id,
        exists().where(visible_bound(shape), Conversation.id == conversation_id),
    )
    return keyset_statement(query, created_at=Message.created_at, id_column=Message.id, after=after)


#: Whether the contact wrote to the conversation's number (account) in the last 24 hours:
#: the latest inbound of any of the contact's conversations on that account (or on none,
#: a conversation without one: a number cannot be told then).
_WINDOW_OPEN = text(
    """
    SELECT coalesce(max(o.last_inbound_at) >= now() - CAST(:window AS interval), false)
      FROM conversations c
      JOIN conversations o
        ON o.tenant_id = c.tenant_id AND o.contact_id = c.contact_id
       AND (o.integration_account_id = c.integration_account_id
            OR o.integration_account_id IS NULL OR c.integration_account_id IS NULL)
     WHERE c.id = :conversation_id AND c.tenant_id = :tenant_id
    """
)


def whatsapp_window_open(session: Session, conversation: Conversation | ConversationHead) -> bool:
    """Whether the contact wrote to this conversation's number in the last 24 h, by the
    database clock.

    Meta's customer service window is per business number: a contact who wrote to number
    A has not opened it for number B, and Meta refuses B's free-form message
    (131047) after we stored and queued it. Any of the contact's conversations on the
    number counts (an inbound opens a new one when the last was resolved).
    """
    return bool(
        session.scalar(
            _WINDOW_OPEN,
            {
                "window": WHATSAPP_WINDOW,
                "conversation_id": conversation.id,
                "tenant_id": conversation.tenant_id,
            },
        )
    )


def preview(
    body: str | None, template: dict[str, Any] | None, files: list[dict[str, Any]] = ()
) -> str:
    if template is not None:
        return f"Template: {template.get('name', '')}"[:PREVIEW_CHARS]
    if not body and files:
        return f"[{files[0]['type']}]"
    return (body or "")[:PREVIEW_CHARS]


def _count_values(sent_at: Any, first_at: Any) -> dict[str, Any]:
    """The conversation's columns a send sets, its last message sent at ``sent_at``."""
    table = Conversation.__table__
    preview = bindparam("preview", type_=table.c.last_message_preview.type)
    values: dict[str, Any] = {
        "message_count": table.c.message_count + bindparam("count", 1, type_=Integer),
        **conversation_counts.last_message_values(table, sent_at, preview),
        "updated_at": func.now(),
    }
    if first_at is not None:
        values["first_response_at"] = func.coalesce(table.c.first_response_at, first_at)
        # A human who replies takes the conversation from its AI agent (until handed back).
        values["ai_active"] = false()
    return values


def _count_update(values: dict[str, Any], *, open_only: bool = False) -> Update:
    """The conversation's counting UPDATE; ``open_only``: not on a resolved conversation.

    NOTE: ``open_only`` re-checks the status under the row's lock: a human's reply read the
    conversation unlocked, and one resolving it meanwhile must win (the reply then matches
    no row and is refused).
    """
    table = Conversation.__table__
    statement = update(table).where(
        table.c.id == bindparam("conversation", type_=table.c.id.type),
        table.c.tenant_id == bindparam("tenant", type_=table.c.tenant_id.type),
    )
    if open_only:
        statement = statement.where(table.c.status != "resolved")
    return statement.values(values)


@functools.cache
def count_statement(human: bool) -> Update:
    """Count ``count`` (1 unless given) sent messages on their conversation, the last at
    ``sent_at``; a human's (the first at ``first_at``) may be the first response.

    PERF: built once, and on the Core table: the ORM's UPDATE would also build the
    statement and synchronize the session's copy per send, which is expired anyway.
    """
    table = Conversation.__table__
    sent_at = bindparam("sent_at", type_=table.c.last_message_at.type)
    first_at = bindparam("first_at", type_=table.c.first_response_at.type) if human else None
    return _count_update(_count_values(sent_at, first_at))


# PERF: a sent message is written by one prebuilt Core statement that returns its clock
# timestamps, not by the ORM's unit of work (flush planning, the INSERT built per flush,
# the row's defaults fetched back): that was ~0.9 ms CPU of a ~4.5 ms reply.
# NOTE: clock_timestamp, not now(): two sends in one transaction keep their order.

#: The columns a single send writes (``create_outbound_message``'s values, in order).
_SENT_COLUMNS = (
    "id",
    "tenant_id",
    "conversation_id",
    "channel",
    "direction",
    "sender_type",
    "sender_id",
    "content_type",
    "body",
    "attachments",
    "template",
    "status",
)


@functools.cache
def _send_statement(human: bool) -> Select:
    """Insert one sent message and count it on its conversation, in one statement.

    Returns the message's clock timestamps and, for a human's send, whether the
    conversation has an SLA clock (NULL when the conversation row was not found).

    PERF: a reply used to pay two round trips and two SQLAlchemy executions here (the
    INSERT, then the counting UPDATE bound with the INSERT's timestamp); the UPDATE now
    reads the timestamp from the INSERT's ``RETURNING`` inside the statement.
    NOTE: the message's values are bound as ``sent_<column>``: SQLAlchemy would take a
    parameter named like a column of ``conversations`` as a value for the UPDATE to SET.
    NOTE: neither table is one a per-process cache watches (``shared.committed_writes``
    does not look inside a ``SELECT``'s CTEs).
    """
    messages, conversations = Message.__table__, Conversation.__table__
    sent = (
        insert(messages)
        .values(
            {name: bindparam(f"sent_{name}", type_=messages.c[name].type) for name in _SENT_COLUMNS}
            | {"created_at": func.clock_timestamp(), "updated_at": func.clock_timestamp()}
        )
        .returning(messages.c.created_at, messages.c.updated_at)
        .cte("sent")
    )
    sent_at = select(sent.c.created_at).scalar_subquery()
    counted = _count_update(_count_values(sent_at, sent_at if human else None), open_only=human)
    if human:
        has_clock = exists().where(ConversationSla.conversation_id == conversations.c.id)
        old = _locked_ai_active()
        counted = counted.where(conversations.c.id == old.c.id).returning(
            has_clock.label("has_clock"), old.c.ai_active.label("was_ai")
        )
    else:
        counted = counted.returning(conversations.c.id.label("has_clock"), false().label("was_ai"))
    counted_cte = counted.cte("counted")
    return select(
        sent.c.created_at,
        sent.c.updated_at,
        select(counted_cte.c.has_clock).scalar_subquery(),
        select(counted_cte.c.was_ai).scalar_subquery(),
    )


def _locked_ai_active():
    """The conversation's ``ai_active`` before a human's send clears it, the row locked.

    WHY: only a reply that took the conversation from its AI agent is announced to the
    streams (:func:`_announce_ai_paused`); ``RETURNING`` gives the new value only.
    NOTE: ``FOR NO KEY UPDATE``, the UPDATE's own lock: concurrent inserts of the
    conversation's messages (``FOR KEY SHARE``) are not made to wait.
    """
    table = Conversation.__table__
    return (
        select(table.c.id, table.c.ai_active)
        .where(
            table.c.id == bindparam("conversation", type_=table.c.id.type),
            table.c.tenant_id == bindparam("tenant", type_=table.c.tenant_id.type),
        )
        .with_for_update(key_share=True)
        .subquery("old")
    )


def inserted_row(
    values: dict[str, Any], created_at: dt.datetime, updated_at: dt.datetime
) -> dict[str, Any]:
    """The columns a view reads of a message just inserted with ``values``."""
    return values | {
        # What the INSERT left NULL (no load of the row for them).
        "provider_message_id": None,
        "error_code": None,
        "error_message": None,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def as_loaded(
    session: Session, values: dict[str, Any], created_at: dt.datetime, updated_at: dt.datetime
) -> Message:
    """The session's persistent ``Message`` for a row just inserted with ``values``."""
    message = Message(**inserted_row(values, created_at, updated_at))
    make_transient_to_detached(message)
    session.add(message)
    return message


def create_outbound_message(
    session: Session, ctx: Ctx, conversation: Conversation | ConversationHead, **fields: Any
) -> Message:
    """:func:`store_outbound_message` (``fields`` are its keywords), answered with the
    session's ``Message`` for the callers that go on with it (expiry, CSAT, automation, AI)."""
    values, created_at, updated_at, _data = store_outbound_message(
        session, ctx, conversation, **fields
    )
    return as_loaded(session, values, created_at, updated_at)


def store_outbound_message(
    session: Session,
    ctx: Ctx,
    conversation: Conversation | ConversationHead,
    *,
    body: str | None = None,
    template: dict[str, Any] | None = None,
    sender_type: str = "user",
    message_id: uuid.UUID | None = None,
    attachments: list[uuid.UUID] | None = None,
) -> tuple[dict[str, Any], dt.datetime, dt.datetime, dict[str, Any]]:
    """Store an outbound message as ``queued``, update the conversation, emit message.created.

    Returns the values inserted, the message's ``created_at`` and ``updated_at``, and its
    ``MessageView`` as JSON (the event's data); no ORM object: a caller that answers with
    the message needs nothing else (:func:`send_message`).

    ``conversation`` must come from :func:`~shared.inbox.access.get_conversation` or
    :func:`~shared.inbox.access.get_conversation_head` (or a tenant-scoped query of a
    system job). With a ``Ctx.system`` caller the message is
    the system's (``sender_type="system"``, no sender id) whatever ``sender_type`` says.
    Human sends (``sender_type="user"``: agents and API keys, as their user) are refused
    on a resolved conversation (409). Every free-form WhatsApp message outside the
    24-hour window is refused (409 ``window_closed``), whoever sends it. A WhatsApp
    template must exist for the conversation's account, be APPROVED, in the language
    asked, and be given its parameters (422 naming what is wrong; see
    :mod:`shared.channels.templates.sending`).

    NOTE: system messages are subject to the window too: Meta rejects a free-form
    message outside it whoever the sender is, so creating it would only store a message
    bound to fail; the expiry job catches the error (in a savepoint) and counts the
    closing message as not sent. They skip the resolved check: a job may resolve the
    conversation in the same transaction as its closing message.
    NOTE: the channel send (``send_outbound``) is enqueued by ``dispatch_event`` for an
    outbound ``message.created``; it arrives with the channels issue.
    """
    if template is not None and (body is not None or attachments):
        raise ValidationFailed.field("template", "a template is sent alone")
    if template is None and body is None and not attachments:
        raise ValidationFailed.field("body", "send a body, a template or attachments")
    check_template_channel(conversation.channel, template)
    if ctx.actor.type == "system":
        sender_type = "system"  # Ctx.system callers (the expiry job) pass no sender_type
    human = sender_type == "user"
    if human and conversation.status == "resolved":
        raise Conflict("The conversation is resolved; reopen it to reply")
    if template is not None and conversation.channel == "whatsapp":
        # Before anything is stored or sent: Meta would refuse it after the fact.
        template = template_sending.prepare_send(session, ctx.tenant_id, conversation.id, template)
    if (
        conversation.channel == "whatsapp"
        and template is None
        and not whatsapp_window_open(session, conversation)
    ):
        raise WindowClosed(
            "The WhatsApp 24-hour window is closed: the contact has not written to this"
            " number in the last 24 hours, send a template instead"
        )
    files = channel_attachments.resolve(
        session, ctx, conversation.channel, attachments or [], has_body=body is not None
    )
    # Last, after every refusal above: a reservation is only taken by a send that happens.
    billing_usage.check_message_send(session, ctx.tenant_id)
    values = {
        "id": message_id or uuid.uuid4(),
        "tenant_id": ctx.tenant_id,
        "conversation_id": conversation.id,
        "channel": conversation.channel,
        "direction": "outbound",
        "sender_type": sender_type,
        "sender_id": (ctx.user_id if human else None if sender_type == "system" else ctx.actor.id),
        "content_type": (
            "template" if template is not None else files[0]["type"] if files else "text"
        ),
        "body": body,
        "attachments": files,
        "template": template,
        "status": "queued",
    }
    # NOTE: pending ORM changes first, in the order the message's own flush wrote them.
    session.flush()
    # NOTE: one statement, one atomic UPDATE: concurrent sends never lose a count.
    # PERF: on the driver's cursor (db.fetch_rows), not through SQLAlchemy's execution.
    ((created_at, updated_at, clock, was_ai),) = db.fetch_rows(
        session.connection(),
        _send_statement(human),
        {
            **{f"sent_{name}": value for name, value in values.items()},
            "count": 1,
            "preview": preview(body, template, files),
            "conversation": conversation.id,
            "tenant": ctx.tenant_id,
        },
    )
    if human and clock is None:
        # The conversation was resolved (or deleted) after it was read: see _count_update.
        raise Conflict("The conversation is resolved; reopen it to reply")
    has_clock = human and bool(clock)
    if isinstance(conversation, Conversation):
        session.expire(conversation)
    if has_clock:
        sla.agent_replied(session, ctx.tenant_id, conversation.id, created_at)
    if was_ai:
        _announce_ai_paused(session, ctx, conversation.id)
    data = MessageView.data(inserted_row(values, created_at, updated_at))
    activity.record_change(
        session, ctx, "message.created", "message", values["id"], data, after=data
    )
    return values, created_at, updated_at, data


def _announce_ai_paused(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> None:
    """Tell the streams a person's reply took the conversation from its AI agent.

    PERF: the row is read only then (rare: once per hand-over), not by every reply.
    """
    # NOTE: populate_existing: a copy in the session predates the send's UPDATE.
    conversation = session.scalars(
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.tenant_id == ctx.tenant_id)
        .execution_options(populate_existing=True)
    ).one()
    convs.announce_ai_change(
        session,
        ctx,
        convs.view(conversation),
        conversation.ai_agent_id,
        conversation.updated_at,
    )


def check_template_channel(channel: str, template: dict[str, Any] | None) -> None:
    """422 for a template on a channel that cannot send one (:data:`TEMPLATE_CHANNELS`).

    WHY: stored and queued, it went out as an empty email, or failed on Messenger and
    Instagram with nothing to send, after the sender was told it was accepted.
    """
    if template is not None and channel not in TEMPLATE_CHANNELS:
        raise ValidationFailed.field(
            "template", f"a {channel} conversation cannot send a template: send a body"
        )


def send_message(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    body: str | None = None,
    template: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    attachments: list[uuid.UUID] | None = None,
) -> dict[str, Any]:
    """An agent's (or API key's) reply: ``POST /api/conversations/{id}/messages``; the
    message's ``MessageView`` as JSON.

    With an ``idempotency_key``, a repeat within 24 h returns the first message and
    creates nothing; the same key with other parameters is refused; see :func:`_claim`.
    A conversation whose account was deleted is refused (409 ``account_deleted``) rather
    than queued to fail (:func:`shared.channels.account_lookup.conversation_account`); the
    conversation's head says so, in the same statement.
    PERF: no ORM ``Message`` is built for the answer (~0.1 ms CPU of a reply): the view
    the event carries is the answer.
    """
    conversation = get_conversation_head(session, ctx, conversation_id)
    message_id = uuid.uuid4()
    if idempotency_key is not None:
        request = idempotency.fingerprint(
            {"body": body, "template": template, "attachments": attachments or []}
        )
        claim = f"{message_id} {request}"
        replayed = _claim(session, ctx, conversation_id, idempotency_key, claim)
        if replayed is not None:
            return MessageView.data(replayed)
    if conversation.account_deleted:
        raise AccountDeleted()
    *_inserted, data = store_outbound_message(
        session,
        ctx,
        conversation,
        body=body,
        template=template,
        message_id=message_id,
        attachments=attachments,
    )
    return data


# --- Idempotency-Key -----------------------------------------------------------------------


def _idempotency_redis_key(ctx: Ctx, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return key("idem", str(ctx.tenant_id), *idempotency.caller_scope(ctx), "message", digest)


def _claim(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    idempotency_key: str,
    claim: str,
    deadline: float | None = None,
) -> Message | None:
    """Claim ``idempotency_key`` with ``claim`` (``"<message id> <request fingerprint>"``),
    or return the message it already names.

    The claim is ``SET NX`` with a short lease: of two concurrent requests exactly one
    wins and creates the message. The loser reads the winner's message id and waits
    (bounded) for its commit; a loser that asked for something else is refused. After the
    commit the key lives 24 h; after a rollback it is deleted (only if it still holds our
    claim), so a failed send can be retried with the same key. A process that dies
    mid-request leaves the lease to expire.
    A loser whose winner rolled back claims the freed key itself (within the same wait):
    it used to wait out the whole wait for a message that would never come and answer
    409 ``idempotency_key_in_use`` with nothing in progress.
    """
    if deadline is None:
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
    client = get_redis()
    redis_key = _idempotency_redis_key(ctx, idempotency_key)
    try:
        if client.set(redis_key, claim, nx=True, ex=IDEMPOTENCY_LEASE_SECONDS):
            db.after_commit(session, lambda: _keep_claim(redis_key))
            db.after_rollback(session, lambda: _release_claim(redis_key, claim))
            return None
        existing = client.get(redis_key)
    except redis.RedisError as exc:
        raise DependencyUnavailable("Idempotency keys are unavailable; retry shortly") from exc
    if existing is None:  # expired between SET and GET: try once more
        return _claim(session, ctx, conversation_id, idempotency_key, claim, deadline)
    first, _, first_request = existing.decode().partition(" ")
    if first_request != claim.partition(" ")[2]:
        raise ValidationFailed.field("Idempotency-Key", "already used for a different request")
    first_id = uuid.UUID(first)
    while True:
        first = session.scalars(
            select(Message).where(Message.id == first_id, Message.tenant_id == ctx.tenant_id)
        ).one_or_none()
        if first is not None:
            if first.conversation_id != conversation_id:
                raise ValidationFailed.field(
                    "Idempotency-Key", "already used for a message in another conversation"
                )
            return first
        if time.monotonic() >= deadline:
            raise IdempotencyKeyInUse(
                "A request with this Idempotency-Key is still in progress; retry shortly"
            )
        time.sleep(0.02)
        try:
            current = client.get(redis_key)
        except redis.RedisError as exc:
            raise DependencyUnavailable("Idempotency keys are unavailable; retry shortly") from exc
        if current != existing:  # the first request rolled back: its message never comes
            return _claim(session, ctx, conversation_id, idempotency_key, claim, deadline)


# Compare-and-delete: drop the claim only if it still names the message we did not create.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def _keep_claim(redis_key: str) -> None:
    """The message committed: keep its key for the whole idempotency window."""
    try:
        get_redis().expire(redis_key, IDEMPOTENCY_TTL_SECONDS)
    except redis.RedisError:
        # NOTE: the message is committed; the lease expires and a late repeat could
        # create a second message. Rare (Redis failing inside one request), logged.
        log.warning("could not extend idempotency key", exc_info=True)


def _release_claim(redis_key: str, claim: str) -> None:
    """The send rolled back: free the key so the client may retry with it."""
    # NOTE: when Redis fails here, the lease expires by itself.
    with contextlib.suppress(redis.RedisError):
        get_redis().eval(_RELEASE, 1, redis_key, claim)
