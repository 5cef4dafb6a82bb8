"""When an AI agent passes a conversation to humans, and how.

Decisions, in this order: the agent's daily reply limit (``usage_limit``); its
handoff rules by ``position`` (``keyword``, ``explicit_request``, ``max_turns``);
a contact asking for a person in common words (``explicit_request``, even without
a rule: nobody who asks for a human is kept with a bot); after retrieval, no
usable knowledge scoring at least the threshold (``low_confidence``); and any
model failure (``model_error``). A rule of the matching kind supplies the division
the conversation is routed to and the message the contact gets.

:func:`hand_off` ends the AI's turn on the conversation: ``ai_active`` false,
optional division, ``conversation.handed_off`` with the reason, a message to the
contact. A contact is never left without an answer or a handoff.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.ai import usage
from shared.ai.matching import first_match, fold
from shared.ai.prompt import usable_hits
from shared.ai.retrieval import Hit
from shared.context import Ctx
from shared.errors import DomainError, ValidationFailed
from shared.events import Actor
from shared.inbox import conversations as convs
from shared.inbox.messages import create_outbound_message
from shared.models import Conversation, Message
from shared.models.ai import AiAgent, AiHandoffRule
from shared.realtime import feed
from shared.timekeeping import sla

log = logging.getLogger(__name__)

#: Words of a contact asking for a person (folded: lower case, no accents).
EXPLICIT_PHRASES = (
    "human",
    "real person",
    "a person",
    "live agent",
    "human agent",
    "real agent",
    "operator",
    "representative",
    "talk to someone",
    "speak to someone",
    "customer service",
    "staff member",
)
DEFAULT_MESSAGE = "Thanks for your patience: a member of our team will continue this conversation."

KEYWORD = "keyword"
EXPLICIT_REQUEST = "explicit_request"
MAX_TURNS = "max_turns"
LOW_CONFIDENCE = "low_confidence"
MODEL_ERROR = "model_error"
USAGE_LIMIT = "usage_limit"


@dataclass(frozen=True, slots=True)
class Decision:
    """Hand off, why (a handoff kind), where to, and what to tell the contact."""

    reason: str
    division_id: uuid.UUID | None = None
    message: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "division_id": str(self.division_id) if self.division_id else None,
            "message": self.message,
            "detail": self.detail,
        }


def rules_of(session: Session, agent: AiAgent) -> list[AiHandoffRule]:
    return list(
        session.scalars(
            select(AiHandoffRule)
            .where(
                AiHandoffRule.tenant_id == agent.tenant_id,
                AiHandoffRule.ai_agent_id == agent.id,
                AiHandoffRule.is_active.is_(True),
            )
            .order_by(AiHandoffRule.position, AiHandoffRule.created_at)
        )
    )


def _decision(
    agent: AiAgent, reason: str, rule: AiHandoffRule | None, detail: str = ""
) -> Decision:
    message = (rule.message if rule is not None else None) or agent.handoff_message
    division = rule.division_id if rule is not None else None
    return Decision(reason, division, message or DEFAULT_MESSAGE, detail)


def _rule(rules: Sequence[AiHandoffRule], kind: str) -> AiHandoffRule | None:
    return next((r for r in rules if r.kind == kind), None)


def before_model(
    agent: AiAgent,
    rules: Sequence[AiHandoffRule],
    *,
    text: str,
    ai_turns: int,
    replies_today: int,
) -> Decision | None:
    """A handoff decided by the contact's words, the turn count or the usage, if any."""
    if (decision := daily_limit(agent, rules, replies_today)) is not None:
        return decision
    folded = fold(text)
    for rule in rules:
        if rule.kind == KEYWORD and (found := first_match(folded, rule.keywords or ())):
            return _decision(agent, KEYWORD, rule, f"keyword {found!r}")
        if rule.kind == EXPLICIT_REQUEST and (
            found := first_match(folded, [*(rule.keywords or ()), *EXPLICIT_PHRASES])
        ):
            return _decision(agent, EXPLICIT_REQUEST, rule, f"asked for {found!r}")
        if rule.kind == MAX_TURNS and rule.max_turns is not None and ai_turns >= rule.max_turns:
            return _decision(agent, MAX_TURNS, rule, f"{ai_turns} AI replies already")
    if found := first_match(folded, EXPLICIT_PHRASES):
        return _decision(agent, EXPLICIT_REQUEST, None, f"asked for {found!r}")
    return None


def daily_limit(
    agent: AiAgent, rules: Sequence[AiHandoffRule], replies_today: int
) -> Decision | None:
    """``usage_limit`` when the agent made as many replies today as it may."""
    if agent.daily_reply_limit is None or replies_today < agent.daily_reply_limit:
        return None
    detail = f"{replies_today} replies today (limit {agent.daily_reply_limit})"
    return _decision(agent, USAGE_LIMIT, _rule(rules, USAGE_LIMIT), detail)


def after_retrieval(
    agent: AiAgent, rules: Sequence[AiHandoffRule], hits: Sequence[Hit]
) -> Decision | None:
    """``low_confidence`` when no usable knowledge scores at least the threshold."""
    rule = _rule(rules, LOW_CONFIDENCE)
    threshold = rule.threshold if rule is not None and rule.threshold is not None else None
    if threshold is None:
        threshold = agent.confidence_threshold
    best = max((h.score for h in usable_hits(hits)), default=0.0)
    if best < threshold:
        return _decision(
            agent, LOW_CONFIDENCE, rule, f"best knowledge score {best:.3f} < {threshold:g}"
        )
    return None


def plan_limit(agent: AiAgent, rules: Sequence[AiHandoffRule], detail: str) -> Decision:
    """The handoff when the workspace's plan has no AI replies left this month."""
    return _decision(agent, USAGE_LIMIT, _rule(rules, USAGE_LIMIT), detail)


def on_error(agent: AiAgent, rules: Sequence[AiHandoffRule], detail: str) -> Decision:
    """The handoff of a model failure (unreachable, timeout, 429, 5xx, malformed...)."""
    return _decision(agent, MODEL_ERROR, _rule(rules, MODEL_ERROR), detail[:500])


def no_answer(agent: AiAgent, rules: Sequence[AiHandoffRule], detail: str) -> Decision:
    """The handoff when the provider found nothing it may answer with."""
    return _decision(agent, LOW_CONFIDENCE, _rule(rules, LOW_CONFIDENCE), detail)


def agent_ctx(agent: AiAgent) -> Ctx:
    """The context of what an AI agent does: its own actor, system permissions."""
    return Ctx.system(agent.tenant_id, actor=Actor("ai_agent", agent.id))


def send_as_agent(
    session: Session, agent: AiAgent, conversation: Conversation, body: str
) -> Message | None:
    """An outbound message written by ``agent`` (None when the channel refuses it now).

    NOTE: no savepoint: ``create_outbound_message`` refuses (WhatsApp's window closed...)
    before it writes anything, so a refusal leaves the transaction usable for the
    handoff around it; PERF: a savepoint costs two round trips per reply.
    """
    try:
        return create_outbound_message(
            session, agent_ctx(agent), conversation, body=body, sender_type="ai_agent"
        )
    except DomainError as exc:
        log.warning("AI agent %s could not write to %s: %s", agent.id, conversation.id, exc)
        return None


def _division_to_route_into(
    session: Session, ctx: Ctx, conversation: Conversation, decision: Decision, *, batch: bool
) -> uuid.UUID | None:
    """The division the hand-off moves ``conversation`` into: its rule's, share-locked as
    any move's (:func:`~shared.inbox.conversations.division_to_move_into`); the one it is
    in when the rule's division was deleted meanwhile (the hand-off still happens).

    NOTE (lock order): after the conversation, as every move (a division's deletion takes
    the division, then its conversations). Only the foreign key's check held back, a
    hand-off racing the deletion landed in the division after the deletion's release had
    run: the ``ON DELETE SET NULL`` took it off again, unannounced, its SLA clock left
    under a policy no longer matching it. Locked, the deletion waits for the hand-off and
    releases the conversation, or the hand-off waits for the deletion and finds it gone.

    A ``batch`` (:func:`shared.ai.generation.finish_many`) holds other conversations too,
    maybe one in that division, which its deletion (holding the division) waits for:
    waiting here, the two waited for each other (the DELETE aborted, a 409). So a batch
    does not wait: a division locked by another transaction raises, the batch rolls back
    and each reply is settled on its own, where this waits.
    """
    try:
        return convs.division_to_move_into(
            session, ctx, conversation, decision.division_id, "division_id", nowait=batch
        )
    except ValidationFailed:
        log.warning(
            "AI agent %s hands %s off without moving it: its division %s is gone",
            ctx.actor.id,
            conversation.id,
            decision.division_id,
        )
        return conversation.division_id


def _announce_division_change(
    session: Session, ctx: Ctx, conversation: Conversation, from_division: uuid.UUID | None
) -> None:
    """The streams' ``conversation.division_changed``, as any move without a transfer sends.

    WHY: ``conversation.handed_off`` names only the new division, so it reaches that
    division's agents; the old one's were never told to drop the conversation and kept it
    in their lists until they reloaded.
    """
    data = convs.view(conversation) | {"from_division_id": convs.json_id(from_division)}
    feed.announce(
        session,
        ctx.tenant_id,
        feed.DIVISION_CHANGED,
        data,
        ctx.actor.as_dict(),
        conversation.updated_at,
    )


def hand_off(
    session: Session,
    agent: AiAgent,
    conversation: Conversation,
    decision: Decision,
    *,
    tally: usage.Tally | None = None,
) -> Message | None:
    """Pass ``conversation`` (locked by the caller) to humans; returns the message sent.

    The hand-off counts in the agent's usage of the day, or in ``tally`` for a caller that
    writes its usage at its end (a batch: its rows in agent order, see
    :func:`shared.ai.generation.finish_many`).
    """
    ctx = agent_ctx(agent)
    before = {"ai_active": conversation.ai_active, "division_id": conversation.division_id}
    division_id = conversation.division_id
    if decision.division_id is not None:
        # A tally is a batch's (see the docstring): it must not wait for the division.
        division_id = _division_to_route_into(
            session, ctx, conversation, decision, batch=tally is not None
        )
    now = convs.states.db_now(session)  # read before the row is touched: written once
    conversation.ai_active = False
    conversation.division_id = division_id
    conversation.updated_at = now
    session.flush()
    if conversation.division_id != before["division_id"]:
        sla.conditions_changed(session, conversation, now=conversation.updated_at)
    message = send_as_agent(session, agent, conversation, decision.message or DEFAULT_MESSAGE)
    convs.record_change(
        session,
        ctx,
        "conversation.handed_off",
        conversation,
        {k: convs.json_id(v) for k, v in before.items()},
        {"ai_active": False, "division_id": convs.json_id(conversation.division_id)},
    )
    convs.emit_change(
        session,
        ctx,
        "conversation.handed_off",
        conversation,
        reason=decision.reason,
        detail=decision.detail,
        ai_agent_id=str(agent.id),
        message_id=str(message.id) if message is not None else None,
    )
    if conversation.division_id != before["division_id"]:
        _announce_division_change(session, ctx, conversation, before["division_id"])
    if tally is None:
        usage.record(session, agent, handoffs=1)
    else:
        tally.add(agent, handoffs=1)
    return message
