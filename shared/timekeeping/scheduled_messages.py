"""Scheduled messages: "send later" on a conversation, cancellable until sent.

Lifecycle: ``pending`` -> ``sent`` (the outbound message is created through
:func:`shared.inbox.messages.create_outbound_message`, the very code a reply uses, so it
emits ``message.created`` and ``send_outbound`` delivers it) | ``cancelled`` (by its
author or a holder of ``conversations.manage``) | ``failed`` (the send was refused when
due: the WhatsApp window closed, the conversation was resolved, its account deleted or
disabled or its channel switched off, the author was removed, suspended or may no longer
see the conversation; ``error_code``/``error_message`` say why and
``scheduled_message.failed`` is emitted so a rule or a webhook can react).

Hand-off (safe with two schedulers, a leader killed mid-run, a worker lost):

- :func:`claim_due` (the scheduler job) takes pending rows with ``due_at <= now`` under
  ``FOR UPDATE SKIP LOCKED``, pushes their ``due_at`` ahead (:func:`redrive_delay`: a
  minute, doubling per hand-off) and enqueues :func:`deliver` after commit. A rolled-back
  claim leaves rows due; a committed claim whose enqueue was lost is re-claimed once
  ``due_at`` passes again.
- :func:`deliver_many` (one job's ids, one transaction) locks the rows and acts only on
  those still ``pending``, creating their messages together and marking them ``sent``
  in that transaction: a duplicate job waits for the locks and then finds them sent.
  Nothing is skipped, nothing is sent twice.

Local times: a ``run_at`` without an offset is wall-clock time in ``timezone`` (the
sender's, given with the request) or else the tenant's. A wall time that a DST jump skips
is refused (422); a repeated one means its first occurrence.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.orm import Session

from shared import activity, dead_letters, idempotency
from shared.admin import dropped_work
from shared.after_commit_queue import AfterCommitQueue
from shared.channels.account_lookup import AccountGone, conversation_account
from shared.channels.accounts import SwitchedOff, switched_off
from shared.channels.templates import sending as template_sending
from shared.context import Ctx
from shared.errors import Conflict, DomainError, Forbidden, ValidationFailed
from shared.events import Actor, emit
from shared.inbox.access import (
    ConversationHead,
    get_conversation,
    get_conversation_head,
    head_columns,
    visible,
)
from shared.inbox.messages import AccountDeleted, check_template_channel
from shared.inbox.outbound_many import Draft, create_outbound_messages
from shared.models import Conversation, Role, ScheduledMessage, Tenant, User
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.schemas.timed import ScheduledMessageView
from shared.sql import tenant_row
from shared.timekeeping import schedules
from shared.timekeeping.working_hours import validate_timezone

log = logging.getLogger(__name__)

#: How long a claimed row waits before the scheduler hands it out again (lost job); each
#: later hand-off waits twice as long, up to :data:`REDRIVE_AT_MOST`.
REDRIVE_AFTER = dt.timedelta(seconds=60)
REDRIVE_AT_MOST = dt.timedelta(minutes=30)
#: Hand-offs before a row that never completes is failed (``gave_up``), visibly: about
#: 3 hours of hand-offs (see :func:`redrive_delay`).
MAX_ATTEMPTS = 10
#: The furthest ahead a message may be scheduled.
MAX_AHEAD = dt.timedelta(days=366)
#: Rows one scheduler run claims (the rest wait for the next run, 10 s later).
CLAIM_BATCH = 20_000
#: Ids per ``send_scheduled_messages`` job: one transaction, and (with its events) one
#: ``dispatch_events`` and one ``send_outbound_batch`` (``outbound_engine.MAX_BATCH``).
JOB_SIZE = 50

#: ``[scheduled_id, ...]`` -> worker jobs, after commit (installed by the worker module).
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.scheduled_messages", "scheduled messages"
)


# --- the API side -------------------------------------------------------------------------


def resolve_run_at(run_at: dt.datetime, timezone: str) -> dt.datetime:
    """``run_at`` as an aware UTC instant; a naive value is wall-clock time in ``timezone``."""
    if run_at.tzinfo is not None and run_at.utcoffset() is not None:
        return run_at.astimezone(dt.UTC)
    zone = ZoneInfo(timezone)
    local = run_at.replace(tzinfo=zone, fold=0)
    instant = local.astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != run_at:
        raise ValidationFailed.field(
            "run_at", f"{run_at.isoformat()} does not exist in {timezone} (a DST change skips it)"
        )
    return instant


def _view(row: ScheduledMessage) -> dict[str, Any]:
    return ScheduledMessageView.data(row)


def create(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    run_at: dt.datetime,
    body: str | None = None,
    template: dict[str, Any] | None = None,
    timezone: str | None = None,
    now: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Schedule a message by the calling agent on a conversation they can see.

    With an ``idempotency_key``, a repeat within 24 h returns the first answer and
    schedules nothing (a client retrying after a timeout would send the message twice);
    the key with other parameters is refused (:func:`shared.idempotency.claim_or_replay`).
    """
    if ctx.user_id is None:
        raise Forbidden("Messages are scheduled by agents")
    params = {
        "conversation_id": conversation_id,
        "run_at": run_at,
        "body": body,
        "template": template,
        "timezone": timezone,
    }
    claim, first = idempotency.claim_or_replay(
        session, ctx, "scheduled_messages", "create", idempotency_key, params
    )
    if first is not None:
        return first
    if (body is None) == (template is None):
        raise ValidationFailed.field("body", "send a body or a template")
    if timezone is not None and validate_timezone(timezone):
        raise ValidationFailed.field("timezone", "expected an IANA timezone such as Asia/Jakarta")
    conversation = get_conversation_head(session, ctx, conversation_id)
    if conversation.status == "resolved":
        raise Conflict("The conversation is resolved; reopen it before scheduling a message")
    if conversation.account_deleted:
        raise AccountDeleted()  # as a reply is: it would fail when due
    check_template_channel(conversation.channel, template)  # refused now, not when due
    if template is not None and conversation.channel == "whatsapp":
        # Refused now rather than when due; the approval may still come and is checked then.
        template_sending.prepare_send(
            session, ctx.tenant_id, conversation.id, template, require_approved=False
        )
    timezone = timezone or schedules.tenant_timezone(session, ctx.tenant_id)
    instant = resolve_run_at(run_at, timezone)
    now = now or schedules.db_now(session)
    if instant <= now:
        raise ValidationFailed.field("run_at", "must be in the future")
    if instant > now + MAX_AHEAD:
        raise ValidationFailed.field("run_at", "at most 366 days ahead")
    row = ScheduledMessage(
        tenant_id=ctx.tenant_id,
        conversation_id=conversation.id,
        author_id=ctx.user_id,
        body=body,
        template=template,
        run_at=instant,
        timezone=timezone,
        status="pending",
        due_at=instant,
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    data = _view(row)
    activity.record(
        session, ctx, "scheduled_message.created", "scheduled_message", row.id, after=data
    )
    return idempotency.remember(session, claim, data)


def list_scheduled(
    session: Session,
    ctx: Ctx,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> Page[dict[str, Any]]:
    """The conversation's scheduled messages, newest first (any status unless filtered)."""
    get_conversation(session, ctx, conversation_id)
    query = select(ScheduledMessage).where(
        ScheduledMessage.tenant_id == ctx.tenant_id,
        ScheduledMessage.conversation_id == conversation_id,
    )
    if status is not None:
        query = query.where(ScheduledMessage.status == status)
    if cursor:
        query = query.where(
            tuple_(ScheduledMessage.created_at, ScheduledMessage.id)
            < tuple_(*decode_cursor(cursor))
        )
    rows = session.scalars(
        query.order_by(ScheduledMessage.created_at.desc(), ScheduledMessage.id.desc()).limit(
            limit + 1
        )
    ).all()
    items = [_view(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
    return Page(items, next_cursor)


def cancel(session: Session, ctx: Ctx, conversation_id: uuid.UUID, scheduled_id: uuid.UUID) -> None:
    """Cancel a pending message: its author, or a holder of ``conversations.manage``.

    409 once it was sent (or failed); cancelling a cancelled message changes nothing.
    """
    get_conversation(session, ctx, conversation_id)
    row = tenant_row(
        session,
        ScheduledMessage,
        ctx.tenant_id,
        scheduled_id,
        ScheduledMessage.conversation_id == conversation_id,
        missing="Scheduled message not found",
        lock=True,
    )
    if not ctx.is_self(row.author_id) and not ctx.can("conversations.manage"):
        raise Forbidden(
            "Only the author or a holder of 'conversations.manage' may cancel a scheduled message"
        )
    if row.status == "cancelled":
        return
    if row.status != "pending":
        raise Conflict(f"The scheduled message is already {row.status}")
    before = _view(row)
    row.status = "cancelled"
    row.cancelled_at = func.now()
    row.cancelled_by = ctx.user_id
    row.updated_at = func.now()
    session.flush()
    session.refresh(row)
    activity.record(
        session,
        ctx,
        "scheduled_message.cancelled",
        "scheduled_message",
        row.id,
        before=before,
        after=_view(row),
    )


# --- the scheduler side -------------------------------------------------------------------


def _active_tenants():
    return select(Tenant.id).where(Tenant.status == "active")


def claim_due(session: Session, *, now: dt.datetime | None = None, batch: int = CLAIM_BATCH) -> int:
    """Hand due pending rows to workers (after commit); returns how many were claimed.

    Rows handed out :data:`MAX_ATTEMPTS` times without completing are failed instead.
    """
    now = now or schedules.db_now(session)
    due = (
        select(ScheduledMessage.id)
        .where(
            ScheduledMessage.status == "pending",
            ScheduledMessage.due_at <= now,
            ScheduledMessage.tenant_id.in_(_active_tenants()),
        )
        .order_by(ScheduledMessage.due_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = session.execute(
        update(ScheduledMessage)
        .where(ScheduledMessage.id.in_(due))
        .values(
            due_at=now + _redrive_delay_sql(ScheduledMessage.attempts),
            attempts=ScheduledMessage.attempts + 1,
        )
        .returning(ScheduledMessage.id, ScheduledMessage.attempts, ScheduledMessage.conversation_id)
        .execution_options(synchronize_session=False)
    ).all()
    # A conversation's rows side by side: a job then counts them on it in one UPDATE.
    claimed = sorted(claimed, key=lambda row: (row.conversation_id, row.id))
    exhausted = [row.id for row in claimed if row.attempts > MAX_ATTEMPTS]
    for scheduled_id in exhausted:
        row = session.get(ScheduledMessage, scheduled_id, with_for_update=True)
        _fail(session, row, "gave_up", f"not delivered after {MAX_ATTEMPTS} hand-offs")
    ids = [row.id for row in claimed if row.attempts <= MAX_ATTEMPTS]
    QUEUE.enqueue_after_commit(session, ids)
    if exhausted:
        log.error("%d scheduled message(s) failed after %d hand-offs", len(exhausted), MAX_ATTEMPTS)
    return ids


def redrive_delay(handed_out: int) -> dt.timedelta:
    """How long a row handed out ``handed_out`` times before waits for this hand-off's job.

    WHY doubling: a row's job that is only late (a backlog after a worker outage, a
    burst of due messages) is not lost. A fixed minute handed every waiting row out
    again each minute, so the queue grew by a duplicate job per row per minute, and a
    backlog of ten minutes failed them all as ``gave_up`` though nothing had failed.
    """
    return min(REDRIVE_AFTER * 2**handed_out, REDRIVE_AT_MOST)


def _redrive_delay_sql(handed_out):
    """:func:`redrive_delay` in SQL, over the row's ``attempts`` before this claim."""
    seconds = func.least(
        REDRIVE_AFTER.total_seconds() * func.power(2, handed_out),
        REDRIVE_AT_MOST.total_seconds(),
    )
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def _fail(session: Session, row: ScheduledMessage, code: str, message: str) -> None:
    row.status = "failed"
    row.failed_at = func.now()
    row.error_code = code[:64]
    row.error_message = message
    row.updated_at = func.now()
    session.flush()
    session.refresh(row)
    data = _view(row)
    actor = Actor("user", row.author_id)
    ctx = Ctx(tenant_id=row.tenant_id, actor=Actor.system())
    activity.record(
        session, ctx, "scheduled_message.failed", "scheduled_message", row.id, after=data
    )
    emit(session, "scheduled_message.failed", data, tenant_id=row.tenant_id, actor=actor)


def deliver(session: Session, scheduled_id: uuid.UUID) -> str:
    """:func:`deliver_many` of one row: ``sent``, ``failed`` or ``skipped``."""
    return deliver_many(session, [scheduled_id]).get(scheduled_id, "skipped")


def deliver_many(session: Session, scheduled_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Create the due messages of the pending rows among ``scheduled_ids``, together.

    Returns ``{id: "sent" | "failed"}`` for the rows that were pending (the others were
    sent, failed or cancelled meanwhile, or their tenant is suspended: skipped). The rows
    stay locked, in id order, until the caller commits, so a duplicate job waits and then
    finds them done. A refused send (the window closed, the conversation resolved, the
    plan's limit) fails its own row visibly and the others go on; the messages are
    written by :func:`shared.inbox.outbound_many.create_outbound_messages`.
    """
    rows = session.scalars(
        select(ScheduledMessage)
        .where(ScheduledMessage.id.in_(scheduled_ids), ScheduledMessage.status == "pending")
        .order_by(ScheduledMessage.id)
        .with_for_update()
    ).all()
    rows = _hold_suspended(session, rows)
    # Locked in id order (no two jobs deadlock); sent in the order they were scheduled for.
    rows = sorted(
        (row for row in rows if row.status == "pending"),
        key=lambda row: (row.run_at, row.created_at, row.id),
    )
    if not rows:
        return {}
    authors = _authors(session, rows)
    conversations = _conversations(session, rows)
    allowed = _allowed_sends(session, rows, authors)
    disabled = _disabled_accounts(session, rows)
    outcomes: dict[uuid.UUID, str] = {}
    drafts, waiting = [], []
    for row in rows:
        refusal = _author_refusal(row, authors, allowed)
        if refusal is not None:
            _fail(session, row, *refusal)
            outcomes[row.id] = "failed"
            continue
        ctx = authors[(row.tenant_id, row.author_id)].ctx  # one per author: batched writes
        conversation = conversations[(row.tenant_id, row.conversation_id)]
        if conversation.account_deleted:
            # WHY: as a reply is refused; created, the message only failed at the channel
            # while this row said ``sent`` and no ``scheduled_message.failed`` said why.
            refused = AccountDeleted()
            _fail(session, row, refused.code, refused.message)
            outcomes[row.id] = "failed"
            continue
        off = disabled.get((row.tenant_id, row.conversation_id))
        if off is not None:
            # WHY: the send would only fail at the channel (``account_disabled``, or
            # ``channel_disabled`` for a switched-off integration) while this row said
            # ``sent`` and no ``scheduled_message.failed`` said why.
            _fail(session, row, off.code, off.message)
            outcomes[row.id] = "failed"
            continue
        drafts.append(Draft(ctx, conversation, body=row.body, template=row.template))
        waiting.append(row)
    created = create_outbound_messages(session, drafts)
    sent = []
    for row, draft, result in zip(waiting, drafts, created, strict=True):
        if isinstance(result, DomainError):
            code = result.code if result.code != "conflict" else _conflict_code(draft.conversation)
            _fail(session, row, code, result.message)
            outcomes[row.id] = "failed"
        else:
            sent.append({"scheduled": row.id, "message": result.id})
            outcomes[row.id] = "sent"
    if sent:
        session.execute(_MARK_SENT, sent)
        for row in waiting:
            session.expire(row)
    return outcomes


#: PERF: the sent rows of a batch in one executemany, not one ORM flush per row.
_MARK_SENT = (
    update(ScheduledMessage.__table__)
    .where(ScheduledMessage.__table__.c.id == bindparam("scheduled"))
    .values(
        status="sent",
        message_id=bindparam("message"),
        sent_at=func.now(),
        updated_at=func.now(),
    )
)


#: The job a held row's dead letter requeues (``workers.actors.timed``).
HELD_ACTOR, HELD_QUEUE = "send_scheduled_messages", "channels"


def _hold_suspended(session: Session, rows: Sequence[ScheduledMessage]) -> list[ScheduledMessage]:
    """The rows whose tenant is active; the others are held, each recorded once.

    A job claimed before its tenant was suspended must not send: suspension drops queued
    work with the reason on record (:mod:`shared.admin.dropped_work`; a job mixes
    tenants, so the worker's gate cannot). A held row stays pending and the scheduler,
    which skips suspended tenants, hands it out again once the tenant is reactivated.
    """
    tenants = {row.tenant_id for row in rows}
    if not tenants:
        return list(rows)
    active = set(
        session.scalars(select(Tenant.id).where(Tenant.id.in_(tenants), Tenant.status == "active"))
    )
    held = [row for row in rows if row.tenant_id not in active]
    for row in held:
        dropped_work.record(
            session,
            tenant_id=row.tenant_id,
            queue_name=HELD_QUEUE,
            actor_name=HELD_ACTOR,
            args=[[str(row.id)]],
        )
    if held:
        log.warning("%d scheduled message(s) held: their tenant is suspended", len(held))
    return [row for row in rows if row.tenant_id in active]


class _Author(NamedTuple):
    """A scheduled message's author as they are now: their context as a sender, suspended."""

    ctx: Ctx
    suspended: bool


def _authors(session: Session, rows: Sequence[ScheduledMessage]) -> dict[tuple, _Author]:
    """``(tenant_id, user_id) -> _Author`` of the rows' authors who still exist.

    The context carries the author's current role's permissions, as a request of theirs
    would, so that what they may see is judged now, not when they scheduled. A suspended
    author's login, tokens and keys are refused, so is a reply in their name.
    """
    keys = {(row.tenant_id, row.author_id) for row in rows}
    found = session.execute(
        select(User.tenant_id, User.id, User.suspended_at.is_not(None), Role.name, Role.permissions)
        .join(Role, Role.id == User.role_id)
        .where(tuple_(User.tenant_id, User.id).in_(list(keys)), User.deleted_at.is_(None))
    ).all()
    authors = {}
    for tenant_id, user_id, suspended, role, permissions in found:
        ctx = Ctx(
            tenant_id=tenant_id,
            actor=Actor("user", user_id),
            user_id=user_id,
            role=role,
            permissions=frozenset(permissions),
        )
        authors[(tenant_id, user_id)] = _Author(ctx, suspended)
    return authors


def _allowed_sends(
    session: Session, rows: Sequence[ScheduledMessage], authors: dict[tuple, _Author]
) -> set[tuple]:
    """``(tenant_id, author_id, conversation_id)`` of the rows whose author may still send.

    WHY: an agent who sees only their own and their divisions' conversations may have
    lost this one since (reassigned away, removed from the division, demoted); a reply
    of theirs would answer 404 now, so the scheduled one must not go out in their name.
    One query per author among the rows (:func:`shared.inbox.access.visible`, the rule
    every inbox read goes through).
    """
    wanted: dict[tuple, set[uuid.UUID]] = {}
    for row in rows:
        if (row.tenant_id, row.author_id) in authors:
            wanted.setdefault((row.tenant_id, row.author_id), set()).add(row.conversation_id)
    allowed = set()
    for key, conversation_ids in wanted.items():
        visible_ids = session.scalars(
            select(Conversation.id).where(
                visible(authors[key].ctx), Conversation.id.in_(conversation_ids)
            )
        )
        allowed.update((*key, conversation_id) for conversation_id in visible_ids)
    return allowed


def _author_refusal(
    row: ScheduledMessage, authors: dict[tuple, _Author], allowed: set[tuple]
) -> tuple[str, str] | None:
    """Why the row's author may no longer send it (``error_code``, ``error_message``), or None."""
    author = authors.get((row.tenant_id, row.author_id))
    if author is None:
        return "author_removed", "The agent who scheduled it no longer exists"
    if author.suspended:
        return "author_suspended", "The agent who scheduled it is suspended"
    if (row.tenant_id, row.author_id, row.conversation_id) not in allowed:
        return (
            "author_lost_access",
            "The agent who scheduled it may no longer see this conversation",
        )
    return None


def _conversations(
    session: Session, rows: Sequence[ScheduledMessage]
) -> dict[tuple, ConversationHead]:
    """``(tenant_id, conversation_id) -> ConversationHead`` of the rows' conversations."""
    keys = {(row.tenant_id, row.conversation_id) for row in rows}
    found = session.execute(
        select(*head_columns()).where(
            tuple_(Conversation.tenant_id, Conversation.id).in_(list(keys))
        )
    ).all()
    heads = [ConversationHead(*row) for row in found]
    return {(head.tenant_id, head.id): head for head in heads}


def _disabled_accounts(
    session: Session, rows: Sequence[ScheduledMessage]
) -> dict[tuple, SwitchedOff]:
    """``(tenant_id, conversation_id) -> why`` of the rows' conversations whose sending
    account (:func:`shared.channels.account_lookup.conversation_account`: the one named,
    else the channel's default) is switched off (:func:`shared.channels.accounts.switched_off`:
    the account disabled, or its channel's integration), so that nothing goes out through it."""
    keys = {(row.tenant_id, row.conversation_id) for row in rows}
    found = session.execute(
        select(
            Conversation.tenant_id,
            Conversation.id,
            Conversation.integration_account_id,
            Conversation.channel,
        ).where(tuple_(Conversation.tenant_id, Conversation.id).in_(list(keys)))
    ).all()
    status: dict[tuple, SwitchedOff | None] = {}
    disabled = {}
    for tenant_id, conversation_id, account_id, channel in found:
        account_key = (tenant_id, account_id, channel)
        if account_key not in status:
            try:
                account = conversation_account(session, tenant_id, account_id, channel)
            except AccountGone:
                account = None  # refused as ``account_deleted`` by the caller
            status[account_key] = None if account is None else switched_off(account)
        if status[account_key] is not None:
            disabled[(tenant_id, conversation_id)] = status[account_key]
    return disabled


def _conflict_code(conversation: ConversationHead) -> str:
    return "conversation_resolved" if conversation.status == "resolved" else "conflict"


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Let a ``send_scheduled_messages`` dead letter's job run while one of its rows is
    pending, else 409 saying why.

    WHY: the scheduler hands a dead job's rows out again until they are sent or fail
    (``gave_up`` after :data:`MAX_ATTEMPTS`), so a later requeue found none pending and
    sent nothing while the console said requeued. A failed row is not revived: it was
    due long ago and ``scheduled_message.failed`` told rules and webhooks it was not sent.
    """
    raw = args[0] if args and isinstance(args[0], list) else []
    wanted = [dead_letters.row_id([value]) for value in raw]
    statement = select(ScheduledMessage.status, ScheduledMessage.error_code).where(
        ScheduledMessage.id.in_(wanted)
    )
    if tenant_id is not None:
        statement = statement.where(ScheduledMessage.tenant_id == tenant_id)
    rows = session.execute(statement.order_by(ScheduledMessage.id).with_for_update()).all()
    if any(status == "pending" for status, _ in rows):
        return
    found = ", ".join(sorted({f"{s} ({code})" if code else s for s, code in rows})) or "deleted"
    raise dead_letters.NotRequeueable(
        "scheduled_settled",
        f"Its scheduled messages are {found} already: none is sent late. Schedule a"
        " failed one again (POST /api/conversations/{id}/scheduled-messages) or send it now",
    )
