"""Apply one rendered action to a conversation through the same services the API uses.

Each executor receives the locked conversation and the rule's :class:`Ctx`
(``Ctx.automation``: its events carry the causation chain) and returns a small
JSON-ready result (``{"result": "applied" | "unchanged", ...}``). A refusal of the
domain (an illegal transition, a closed WhatsApp window, an agent since deleted)
raises :class:`~shared.errors.DomainError`; the evaluator records it as that
action's failure and goes on with the next one.

NOTE (lock order): an action share-locks the division or agent it names after the
conversation, the order of every move and assignment. A batch holds other
conversations too (:attr:`Target.wait` False), one of which that division's or agent's
deletion may be waiting for (to release or unassign it) while holding the division or
agent: waiting there, the batch and the deletion waited for each other (a deadlock, the
DELETE aborted). So a batch does not wait for those locks: a division or agent locked
by another transaction raises (``LockNotAvailable``, not a domain refusal), the batch
rolls back and each event is evaluated on its own, holding only its conversation,
where the action waits.

``mute``: the conversation's events trigger no rule until ``muted_until`` (for
``minutes``; without it, until the mute row is deleted). Notifications, when they
come, are meant to read the same row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from shared.ai import ownership
from shared.automation.templating import render
from shared.context import Ctx
from shared.errors import DomainError, NotFound, ValidationFailed
from shared.inbox import conversations as convs
from shared.inbox import notes, states
from shared.inbox.access import get_conversation
from shared.inbox.messages import create_outbound_message
from shared.models import (
    Conversation,
    ConversationMute,
    DivisionMember,
    Message,
    OutboxEvent,
    QuickReply,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.realtime import presence
from shared.webhooks import queue as webhook_queue
from shared.webhooks.catalogue import envelope_of
from shared.webhooks.delivery import SWEEP_GRACE_SECONDS

#: Where a message an action sent keeps the causation chain of the run that sent it.
CAUSATION_KEY = "automation_causation"


class ActionFailed(DomainError):
    """An action that cannot apply (recorded on the run, not retried)."""

    status, code = 409, "action_failed"


@dataclasses.dataclass(frozen=True)
class Target:
    """What an action acts on: the locked conversation and the event that triggered the rule."""

    session: Session
    ctx: Ctx
    conversation: Conversation | None
    event: OutboxEvent | None
    #: The event's facts: the variables of templates (a quick reply's text).
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Whether an action may wait for the lock of a division or agent it names: False
    #: when the transaction holds other conversations too (see the module's NOTE).
    wait: bool = True
    #: The conversation's division when this transaction locked it (a move back into it
    #: is not share-locked: :func:`~shared.inbox.conversations.division_to_move_into`).
    locked_in: uuid.UUID | None = None
    #: Its assignee when this transaction locked it (not share-locked either, as the
    #: conversation's own assignee: :func:`assign_agent`).
    locked_to: uuid.UUID | None = None

    def held_agents(self) -> tuple[uuid.UUID | None, ...]:
        """The agents whose deletion waits for this conversation: not locked from here."""
        conversation = self.conversation
        return (conversation.assignee_id if conversation else None, self.locked_to)


Executor = Callable[[Target, dict[str, Any]], dict[str, Any]]


def _conversation(target: Target) -> Conversation:
    if target.conversation is None:
        raise ActionFailed("This event is not about a conversation")
    return target.conversation


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _owned(target: Target, model: Any, row_id: Any, what: str) -> Any:
    """The tenant's row ``row_id`` of ``model`` (deleted since the rule was saved: fails)."""
    row = target.session.scalar(
        select(model).where(model.tenant_id == target.ctx.tenant_id, model.id == _uuid(row_id))
    )
    if row is None:
        raise ActionFailed(f"{what} no longer exists")
    return row


def _done(changed: bool, **extra: Any) -> dict[str, Any]:
    return {"result": "applied" if changed else "unchanged", **extra}


def assign_agent(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """Assign the agent the rule names (:func:`~shared.inbox.conversations.live_agent`).

    NOTE: the conversation's own assignee is not share-locked again: their deletion waits
    for this (locked) conversation to unassign it, so locking them from here deadlocked
    with it (the run retried). With no AI to take over, there is nothing to change; with
    one, the assignee takes over from it, checked live without a lock (a deletion under
    way unassigns the conversation after this commits; a resolved one may still name an
    agent deleted since). So is its assignee when the run locked it, if an earlier rule
    assigned it to someone else: that agent's deletion waits for it just the same.
    """
    conversation = _conversation(target)
    agent_id = _uuid(params["agent_id"])
    if agent_id == conversation.assignee_id and not conversation.ai_active:
        return _done(False)
    if agent_id in target.held_agents():
        if not _live(target, agent_id):
            raise ValidationFailed.field("agent_id", "no such agent in this workspace")
    else:
        agent_id = convs.live_agent(
            target.session, target.ctx, agent_id, "agent_id", nowait=not target.wait
        ).id
    return _done(convs.apply_assignment(target.session, target.ctx, conversation, agent_id))


def _live(target: Target, agent_id: uuid.UUID) -> bool:
    """Whether the agent is a live, unsuspended agent of the tenant (read, not locked)."""
    live = select(User.id).where(
        User.tenant_id == target.ctx.tenant_id,
        User.id == agent_id,
        User.deleted_at.is_(None),
        User.suspended_at.is_(None),
    )
    return target.session.scalar(live) is not None


def _division_to_move_into(target: Target, conversation: Conversation, raw_id: Any) -> uuid.UUID:
    """The division an action names, checked and locked as a move's (a batch's without
    waiting: the module's NOTE; the one the run found the conversation in, unlocked)."""
    return convs.division_to_move_into(
        target.session,
        target.ctx,
        conversation,
        _uuid(raw_id),
        "division_id",
        nowait=not target.wait,
        locked_in=target.locked_in,
    )


def assign_division(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """Move the conversation into the rule's division (its own one: unchanged, unlocked;
    see :func:`~shared.inbox.conversations.division_to_move_into`)."""
    conversation = _conversation(target)
    division_id = _division_to_move_into(target, conversation, params["division_id"])
    changed = convs.apply_fields(
        target.session, target.ctx, conversation, {"division_id": division_id}
    )
    return _done(changed)


def pick_round_robin(
    session: Session,
    tenant_id: uuid.UUID,
    division_id: uuid.UUID | None,
    held: tuple[uuid.UUID | None, ...] = (),
    *,
    nowait: bool = False,
) -> uuid.UUID | None:
    """The online agent (of the division, if given) with the fewest open or pending
    conversations; ties go to the one assigned longest ago (fair rotation).

    NOTE: "longest ago" is the newest ``updated_at`` among their active conversations,
    so a burst spreads across agents instead of piling on the first one.

    The agent picked is share-locked until the caller commits, as
    :func:`~shared.inbox.conversations.live_agent` locks one: a deletion running
    meanwhile waits for the assignment (and then unassigns it), or the pick waits for
    the deletion, finds the agent gone (or offline) and takes the next one. Unlocked, a
    conversation assigned while its agent was being deleted stayed assigned to them.
    ``held`` are the locked conversation's assignees (now, and when the run locked it,
    :meth:`Target.held_agents`): not locked again (their deletion waits for that
    conversation to unassign it; locking them would deadlock with it).

    With a division, the agent's membership row is key-share-locked first (lock order:
    the conversation, the membership, the agent): a removal from the division (a
    ``DELETE`` of that row) running meanwhile waits for the assignment, or the pick
    waits for the removal, finds the row gone and takes the next member. Read unlocked,
    an agent taken out of the division at that moment was still picked. With ``nowait``
    (a batch), a row locked by another transaction raises instead of waiting for it.
    """
    active = and_(
        Conversation.assignee_id == User.id,
        Conversation.tenant_id == tenant_id,
        Conversation.status.in_(("open", "pending")),
    )
    load = select(func.count()).where(active).correlate(User).scalar_subquery()
    latest = select(func.max(Conversation.updated_at)).where(active).correlate(User)
    # An agent with a live stream open counts as online (shared.realtime.presence).
    online = or_(User.status == "online", User.id.in_(presence.connected_agents(tenant_id)))
    eligible = and_(User.tenant_id == tenant_id, User.deleted_at.is_(None), online)
    members = _members(tenant_id, division_id)
    query = select(User.id).where(eligible)
    if members is not None:
        query = query.where(User.id.in_(select(DivisionMember.user_id).where(*members)))
    query = query.order_by(load, latest.scalar_subquery().asc().nulls_first(), User.id)
    passed: list[uuid.UUID] = []
    while True:
        candidate = session.scalar(query.where(User.id.not_in(passed)).limit(1))
        if candidate is None or candidate in held:
            return candidate
        if _still_member(session, members, candidate, nowait) and _still_eligible(
            session, eligible, candidate, nowait
        ):
            return candidate
        passed.append(candidate)


def _members(tenant_id: uuid.UUID, division_id: uuid.UUID | None) -> tuple | None:
    """The conditions on ``division_members`` rows of the round robin's division (None:
    no division, every agent of the tenant takes part)."""
    if division_id is None:
        return None
    return (DivisionMember.tenant_id == tenant_id, DivisionMember.division_id == division_id)


def _still_member(
    session: Session, members: tuple | None, agent_id: uuid.UUID, nowait: bool
) -> bool:
    """Whether the agent is still in the division, their membership row locked.

    NOTE: ``FOR KEY SHARE`` is enough: a removal (or the division's deletion) ``DELETE``s
    the row, which takes ``FOR UPDATE`` and so conflicts with it; adding members (an
    insert) does not wait for it. Waits for a removal under way, then re-reads the row.
    """
    if members is None:
        return True
    lock = (
        select(DivisionMember.user_id)
        .where(*members, DivisionMember.user_id == agent_id)
        .with_for_update(read=True, key_share=True, nowait=nowait)
    )
    return session.scalar(lock) is not None


def _still_eligible(session: Session, eligible: Any, agent_id: uuid.UUID, nowait: bool) -> bool:
    """Whether the agent is still live and online, their row share-locked.

    Waits for a deletion (or a status change) of the agent under way, then re-reads it.
    """
    lock = select(User.id).where(eligible, User.id == agent_id)
    lock = lock.with_for_update(read=True, nowait=nowait)
    return session.scalar(lock) is not None


def assign_round_robin(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    conversation = _conversation(target)
    division_id = _uuid(params["division_id"]) if params.get("division_id") else None
    agent_id = pick_round_robin(
        target.session,
        target.ctx.tenant_id,
        division_id,
        target.held_agents(),
        nowait=not target.wait,
    )
    if agent_id is None:
        raise ActionFailed("No online agent to assign")
    changed = convs.apply_assignment(target.session, target.ctx, conversation, agent_id)
    return _done(changed, agent_id=str(agent_id))


def _tags(target: Target, params: dict[str, Any], *, add: bool) -> dict[str, Any]:
    conversation = _conversation(target)
    try:
        tags = [convs.normalize_tag(t) for t in params["tags"]]
    except ValueError as exc:
        raise ValidationFailed.field("tags", str(exc)) from exc
    new, added, removed = convs.merged_tags(
        list(conversation.tags), add=tags if add else (), remove=() if add else tags
    )
    changed = convs.apply_tags(target.session, target.ctx, conversation, new, added, removed)
    return _done(changed, tags=new)


def add_tags(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    return _tags(target, params, add=True)


def remove_tags(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    return _tags(target, params, add=False)


def set_status(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    conversation = _conversation(target)
    changed = states.transition(target.session, target.ctx, conversation, params["status"])
    return _done(changed, status=conversation.status)


def set_priority(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    conversation = _conversation(target)
    changed = convs.apply_fields(
        target.session, target.ctx, conversation, {"priority": params["priority"]}
    )
    return _done(changed)


def _until(session: Session, params: dict[str, Any]) -> dt.datetime | None:
    if params.get("until"):
        until = params["until"]
        return until if isinstance(until, dt.datetime) else dt.datetime.fromisoformat(until)
    if params.get("minutes"):
        return states.db_now(session) + dt.timedelta(minutes=float(params["minutes"]))
    return None


def snooze(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    conversation = _conversation(target)
    until = _until(target.session, params)
    changed = states.transition(
        target.session, target.ctx, conversation, "snoozed", snoozed_until=until
    )
    return _done(changed, snoozed_until=until.isoformat() if until else None)


def _send(target: Target, body: str) -> dict[str, Any]:
    conversation = _conversation(target)
    message = create_outbound_message(
        target.session, target.ctx, conversation, body=body, sender_type="automation"
    )
    # NOTE: the message's delivery statuses are reported later by the channel, as the
    # system's events: the chain is kept on the message so that they carry it on
    # (evaluator.causation_of), or a rule replying to statuses would reply forever.
    chain = target.ctx.actor.causation
    if chain is not None:
        target.session.execute(
            update(Message)
            .where(Message.tenant_id == target.ctx.tenant_id, Message.id == message.id)
            .values(
                {
                    Message.metadata_: Message.metadata_.op("||")(
                        cast({CAUSATION_KEY: chain.as_dict()}, JSONB)
                    )
                }
            )
            .execution_options(synchronize_session=False)
        )
    return _done(True, message_id=str(message.id))


def send_message(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    return _send(target, params["body"])


def send_quick_reply(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    reply = _owned(target, QuickReply, params["quick_reply_id"], "The quick reply")
    if reply.scope != "shared" and reply.owner_id != target.ctx.user_id:
        raise ActionFailed("The quick reply is another agent's personal one")
    body = render(reply.content, target.facts)
    return _send(target, body) | {"quick_reply_id": str(reply.id)}


def add_note(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """A private note signed by the rule's creator (a note needs a person as its author)."""
    conversation = _conversation(target)
    if target.ctx.user_id is None:
        raise ActionFailed("The rule has no creator left to sign the note")
    note = notes.create_note(target.session, target.ctx, conversation.id, body=params["body"])
    return _done(True, note_id=str(note["id"]))


def send_webhook(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """One delivery of the triggering event to the endpoint, through the webhook engine.

    NOTE: keyed like the fan-out (endpoint, event): when the endpoint already gets this
    event by subscription, or the action ran before, it is not sent twice.
    """
    event = target.event
    if event is None:
        raise ActionFailed("No event to send")
    endpoint = _owned(target, WebhookEndpoint, params["endpoint_id"], "The webhook endpoint")
    if not endpoint.enabled:
        raise ActionFailed("The webhook endpoint is disabled")
    payload = envelope_of(event)
    delivery_id = target.session.scalar(
        insert(WebhookDelivery)
        .values(
            id=uuid.uuid4(),
            tenant_id=endpoint.tenant_id,
            endpoint_id=endpoint.id,
            event_id=event.id,
            event_type=event.type,
            payload=payload,
            sweep_at=func.now() + dt.timedelta(seconds=SWEEP_GRACE_SECONDS),
        )
        .on_conflict_do_nothing(
            index_elements=["endpoint_id", "event_id"],
            index_where=WebhookDelivery.resend_of.is_(None),
        )
        .returning(WebhookDelivery.id)
    )
    if delivery_id is None:
        return _done(False, note="this endpoint already receives this event")
    webhook_queue.enqueue_after_commit(target.session, [delivery_id])
    return _done(True, delivery_id=str(delivery_id))


def handover_to_ai(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """Hand the conversation (back) to its AI agent, or to the one assigned to its account.

    The AI answers the contact's next message; its turn count starts again.
    """
    conversation = _conversation(target)
    changes: dict[str, Any] = {"ai_active": True, "ai_turns": 0}
    agent_id = ownership.handback_owner(target.session, conversation)
    if agent_id is not None:
        changes["ai_agent_id"] = agent_id
    return _done(convs.apply_fields(target.session, target.ctx, conversation, changes))


#: ``conversation.handed_off``'s reason when a rule's action hands the conversation over.
HANDED_OFF_BY_RULE = "automation_rule"


def handover_to_human(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """Stop the AI agent and queue the conversation for humans (of a division, if given)."""
    conversation = _conversation(target)
    changes: dict[str, Any] = {"ai_active": False}
    if params.get("division_id"):
        changes["division_id"] = _division_to_move_into(target, conversation, params["division_id"])
    ai_agent_id = conversation.ai_agent_id
    changed = convs.apply_fields(target.session, target.ctx, conversation, changes)
    if changed:
        # NOTE: the shape of an AI agent's own hand-off (shared.ai.handoff), so a consumer
        # reads one event; the rule that acted is the event's actor.
        convs.emit_change(
            target.session,
            target.ctx,
            "conversation.handed_off",
            conversation,
            reason=HANDED_OFF_BY_RULE,
            detail=None,
            ai_agent_id=convs.json_id(ai_agent_id),
            message_id=None,
        )
    return _done(changed)


def mute(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    conversation = _conversation(target)
    until = _until(target.session, params)
    values = {
        "conversation_id": conversation.id,
        "tenant_id": target.ctx.tenant_id,
        "muted_until": until,
        "rule_id": target.ctx.actor.id,
    }
    target.session.execute(
        insert(ConversationMute)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[ConversationMute.conversation_id],
            set_={"muted_until": until, "rule_id": target.ctx.actor.id},
        )
    )
    return _done(True, muted_until=until.isoformat() if until else None)


EXECUTORS: dict[str, Executor] = {
    "assign_agent": assign_agent,
    "assign_division": assign_division,
    "assign_round_robin": assign_round_robin,
    "add_tags": add_tags,
    "remove_tags": remove_tags,
    "set_status": set_status,
    "set_priority": set_priority,
    "snooze": snooze,
    "send_message": send_message,
    "send_quick_reply": send_quick_reply,
    "add_note": add_note,
    "send_webhook": send_webhook,
    "handover_to_ai": handover_to_ai,
    "handover_to_human": handover_to_human,
    "mute": mute,
}


def lock_conversation(
    session: Session, ctx: Ctx, conversation_id: uuid.UUID | None
) -> Conversation | None:
    if conversation_id is None:
        return None
    try:
        return get_conversation(session, ctx, conversation_id, for_update=True)
    except NotFound:
        return None
