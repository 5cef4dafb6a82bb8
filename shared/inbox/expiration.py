"""Chat expiration and snooze wake-ups: conversations whose time has come, in batches.

Both claim due rows with ``FOR UPDATE SKIP LOCKED`` in bounded batches and commit
after each batch, so locks are short, two runners never take the same row, and
events go out as each batch commits. Every status change goes through the state
machine (:mod:`shared.inbox.states`). "Due" is always the database clock.
Suspended tenants are skipped.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.channels.account_lookup import AccountGone, conversation_account
from shared.channels.accounts import switched_off
from shared.context import Ctx
from shared.errors import DomainError, NotFound
from shared.inbox import conversations as convs
from shared.inbox import states
from shared.models import ChatExpirationRule, Conversation, Tenant
from shared.models.inbox import CHANNELS

log = logging.getLogger(__name__)

#: Conversations per transaction.
BATCH = 200
#: Batches per rule per run: a huge backlog drains over several runs, none runs for long.
MAX_BATCHES = 50
_ONE_MINUTE = literal_column("interval '1 minute'")


@dataclass
class ExpiryCounts:
    rules: int = 0
    expired: int = 0
    closing_messages_sent: int = 0
    closing_messages_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# ---------------------------------------------------------------- rules


def list_rules(session: Session, ctx: Ctx) -> list[ChatExpirationRule]:
    ctx.require("settings.manage")
    return list(
        session.scalars(
            select(ChatExpirationRule)
            .where(ChatExpirationRule.tenant_id == ctx.tenant_id)
            .order_by(ChatExpirationRule.channel)
        )
    )


def put_rule(
    session: Session,
    ctx: Ctx,
    channel: str,
    *,
    inactive_minutes: int,
    is_active: bool = True,
    closing_message: str | None = None,
) -> ChatExpirationRule:
    """Create or replace the tenant's rule for ``channel`` (an unknown channel is a 404)."""
    ctx.require("settings.manage")
    if channel not in CHANNELS:
        raise NotFound(f"No channel '{channel}'")
    closing_message = closing_message or None
    key = (ChatExpirationRule.tenant_id == ctx.tenant_id, ChatExpirationRule.channel == channel)
    before = session.scalar(select(ChatExpirationRule).where(*key).with_for_update())
    before_data = _rule_data(before) if before else None
    values = {
        "inactive_minutes": inactive_minutes,
        "is_active": is_active,
        "closing_message": closing_message,
    }
    session.execute(
        insert(ChatExpirationRule)
        .values(tenant_id=ctx.tenant_id, channel=channel, **values)
        .on_conflict_do_update(
            index_elements=[ChatExpirationRule.tenant_id, ChatExpirationRule.channel],
            set_=values | {"updated_at": func.now()},
        )
    )
    session.expire_all()
    rule = session.scalars(select(ChatExpirationRule).where(*key)).one()
    activity.record(
        session,
        ctx,
        "chat_expiration_rule.updated" if before else "chat_expiration_rule.created",
        "chat_expiration_rule",
        None,
        before=before_data,
        after=_rule_data(rule),
    )
    return rule


def _rule_data(rule: ChatExpirationRule) -> dict[str, Any]:
    return {
        "channel": rule.channel,
        "inactive_minutes": rule.inactive_minutes,
        "is_active": rule.is_active,
        "closing_message": rule.closing_message,
    }


# ---------------------------------------------------------------- expiry


def expire_tenant(session: Session, ctx: Ctx) -> ExpiryCounts:
    """``POST /api/conversations/expire``: apply the caller's tenant's active rules now."""
    ctx.require("settings.manage")
    return _expire(session, tenant_id=ctx.tenant_id, actor_ctx=ctx)


def expire_all(session: Session) -> ExpiryCounts:
    """The scheduler's ``expire_conversations``: every active tenant's active rules."""
    return _expire(session, tenant_id=None, actor_ctx=None)


def _expire(session: Session, *, tenant_id: uuid.UUID | None, actor_ctx: Ctx | None):
    query = (
        select(ChatExpirationRule)
        .join(Tenant, Tenant.id == ChatExpirationRule.tenant_id)
        .where(ChatExpirationRule.is_active, Tenant.status == "active")
        .order_by(ChatExpirationRule.tenant_id, ChatExpirationRule.channel)
    )
    if tenant_id is not None:
        query = query.where(ChatExpirationRule.tenant_id == tenant_id)
    rules = [_rule_data(r) | {"tenant_id": r.tenant_id} for r in session.scalars(query)]
    session.commit()
    counts = ExpiryCounts(rules=len(rules))
    for rule in rules:
        ctx = actor_ctx or Ctx.system(rule["tenant_id"])
        for _ in range(MAX_BATCHES):
            claimed = _expire_batch(session, ctx, rule, counts)
            session.commit()
            if claimed < BATCH:
                break
    return counts


def _expire_batch(session: Session, ctx: Ctx, rule: dict[str, Any], counts: ExpiryCounts) -> int:
    # PERF: ix_conversations_active_activity (tenant_id, channel, last_activity_at)
    # WHERE status IN ('open', 'pending') serves exactly this range.
    due = session.scalars(
        select(Conversation)
        .where(
            Conversation.tenant_id == rule["tenant_id"],
            Conversation.channel == rule["channel"],
            Conversation.status.in_(("open", "pending")),
            Conversation.last_activity_at < func.now() - rule["inactive_minutes"] * _ONE_MINUTE,
        )
        .order_by(Conversation.last_activity_at)
        .limit(BATCH)
        # NOTE: FOR NO KEY UPDATE (see reopen_snoozed): each one's clock is locked next.
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    now = states.db_now(session)
    for conversation in due:
        if rule["closing_message"]:
            _send_closing_message(session, ctx, conversation, rule["closing_message"], counts)
        states.transition(session, ctx, conversation, "resolved", reason="expired", now=now)
        convs.emit_change(
            session,
            ctx,
            "conversation.expired",
            conversation,
            inactive_minutes=rule["inactive_minutes"],
        )
        convs.record_change(
            session,
            ctx,
            "conversation.expired",
            conversation,
            None,
            {"inactive_minutes": rule["inactive_minutes"]},
        )
        counts.expired += 1
    return len(due)


def _send_closing_message(session, ctx, conversation, body: str, counts: ExpiryCounts) -> None:
    """Send the rule's closing message before resolving (a resolved chat takes no sends).

    A failed send (e.g. a closed WhatsApp window) is logged and counted; the
    conversation still expires: the rule's purpose is closing idle chats.
    """
    from shared.inbox.messages import create_outbound_message

    refused = _account_refusal(session, conversation)
    if refused is not None:
        counts.closing_messages_failed += 1
        log.info("closing message not sent on %s: %s", conversation.id, refused)
        return
    try:
        with session.begin_nested():
            # The rule speaks, not whoever triggered the run: always a system message.
            create_outbound_message(session, Ctx.system(ctx.tenant_id), conversation, body=body)
    except DomainError as exc:
        counts.closing_messages_failed += 1
        log.info("closing message not sent on %s: %s", conversation.id, exc.message)
        return
    counts.closing_messages_sent += 1


def _account_refusal(session: Session, conversation: Conversation) -> str | None:
    """Why nothing can go out through the conversation's account, or None.

    WHY: as a reply and a CSAT survey are refused on a deleted account's conversation (the
    default account is another number the customer never wrote to), and as a scheduled
    message fails on a switched-off one: the closing message was stored, counted as sent,
    and only failed at the channel.
    """
    try:
        account = conversation_account(
            session,
            conversation.tenant_id,
            conversation.integration_account_id,
            conversation.channel,
        )
    except AccountGone:
        return f"the {conversation.channel} account this conversation runs on was deleted"
    off = None if account is None else switched_off(account)
    return None if off is None else off.message


# ---------------------------------------------------------------- snooze


def reopen_snoozed(session: Session) -> int:
    """Reopen snoozed conversations whose ``snoozed_until`` has passed; return how many."""
    reopened = 0
    for _ in range(MAX_BATCHES):
        # PERF: the partial index ix_conversations_snoozed_due (WHERE status = 'snoozed').
        due = session.scalars(
            select(Conversation)
            .join(Tenant, Tenant.id == Conversation.tenant_id)
            .where(
                Conversation.status == "snoozed",
                Conversation.snoozed_until <= func.now(),
                Tenant.status == "active",
            )
            .order_by(Conversation.snoozed_until)
            .limit(BATCH)
            # NOTE: FOR NO KEY UPDATE, not FOR UPDATE: each one's SLA clock is locked next,
            # and check_sla holding a clock inserts its breach, FOR KEY SHARE on the
            # conversation (which FOR UPDATE conflicts with): the two deadlocked. The id is
            # never changed; a change or another run holding the row is still skipped.
            .with_for_update(of=Conversation, skip_locked=True, key_share=True)
        ).all()
        now = states.db_now(session)
        for conversation in due:
            ctx = Ctx.system(conversation.tenant_id)
            reopened += states.transition(session, ctx, conversation, "open", now=now)
        session.commit()
        if len(due) < BATCH:
            break
    return reopened
