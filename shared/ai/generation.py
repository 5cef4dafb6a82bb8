"""Generating one AI reply: claim, prepare, call the model off-thread, settle.

1. :func:`claim` takes a due ``pending`` reply (``generating``, attempts + 1) in one
   autocommit statement; a duplicate or early job claims nothing.
2. :func:`prepare` reads the agent and the conversation's recent messages; the
   contact's unanswered burst is the question. Handoffs that need no model (usage
   limit, rules, explicit request, low confidence, too many attempts) are settled
   at once; otherwise it returns a :class:`Plan` (the prompt and the provider).
3. :func:`start` hands the model call to the process's event loop
   (:mod:`shared.ai.providers.loop`) and returns: the calling worker thread is free
   during the model's seconds. Answers are settled by a few threads, those that
   arrived together in one transaction (:func:`finish_many`).
4. :func:`settle` (one transaction, reply and conversation locked): if a human took
   over or resolved it meanwhile, nothing is sent (``skipped``; if another AI agent has the
   conversation now, that agent's reply follows); an answer goes out through the
   normal outbound path as a message by the AI agent (``sent``, sources and tokens
   recorded); any failure hands the conversation off (``handed_off``). Messages that
   arrived during generation get a follow-up reply.

Durability is the row: a worker that dies leaves it ``generating`` and the sweeper
re-drives it; attempts past ``AI_REPLY_MAX_ATTEMPTS`` hand off.

Lock order, for every transaction of the reply path and the agent's deletion: in-flight
replies (in conversation order), then their conversations (in id order), then the agent
and its rows of the day in ``ai_usage_daily`` (the foreign key checks of writes into
``ai_replies``, ``ai_usage_daily`` and ``conversations.ai_agent_id`` take the agent FOR KEY
SHARE). :func:`settle` locks a reply and its conversation in one read
(:func:`reply_and_conversation`); a claim of a conversation locks its in-flight reply
first (:func:`shared.ai.replies.schedule`); :func:`finish_many` locks its batch's replies,
then their conversations, then its limited agents' usage rows, and writes every other
usage row (hand-offs' included) at its end, all in agent id order; the deletion locks the
agent's replies, then its conversations, then the agent (``agents._lock_for_deletion``). Two of them
taking the same rows in opposite orders would deadlock: PostgreSQL aborts one (a job
retried, a batch settled again one by one, a 409).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import datetime as dt
import functools
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from shared import dead_letters
from shared.ai import embedder, handoff, providers, replies, usage
from shared.ai.prompt import AgentVoice, Turn, build, leaks, turn_text
from shared.ai.providers import loop
from shared.ai.providers.base import NO_ANSWER, Completion, ModelRequest, ProviderError
from shared.ai.retrieval import Hit, retrieve
from shared.billing import usage as billing_usage
from shared.config import get_settings
from shared.db import get_engine, session_scope
from shared.models import Conversation, Message
from shared.models.ai import AiAgent, AiReply
from shared.sql import storable_text

log = logging.getLogger(__name__)

#: Threads per process that write completed replies.
FINISH_THREADS = 2
#: Replies one of them settles in one transaction at most.
SETTLE_BATCH = 50

_CLAIM = text(
    """
    UPDATE ai_replies
       SET status = 'generating', attempts = attempts + 1, updated_at = now()
     WHERE id = :id AND status = 'pending' AND due_at <= clock_timestamp() + interval '50 ms'
    RETURNING id, tenant_id, conversation_id, ai_agent_id, attempts
    """
)
_RELEASE = text(
    """
    UPDATE ai_replies SET status = 'pending', updated_at = now()
     WHERE id = :id AND status = 'generating' AND attempts = :attempts
    """
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    ai_agent_id: uuid.UUID
    attempts: int


@dataclass(slots=True)
class Plan:
    """A prepared reply: what to ask which provider, and what was read."""

    claimed: Claimed
    #: The agent as prepare read it (detached: settling the answer needs no reload).
    agent: AiAgent
    provider: providers.Provider
    request: ModelRequest
    voice: AgentVoice
    canary: str
    #: The knowledge the prompt quotes (the reply's sources).
    hits: list[Hit]
    #: When the newest message read was written: later ones get a follow-up reply.
    read_until: dt.datetime
    timings: dict[str, float] = field(default_factory=dict)


def claim(reply_id: uuid.UUID) -> Claimed | None:
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        row = connection.execute(_CLAIM, {"id": reply_id}).one_or_none()
    return Claimed(*row) if row is not None else None


def release(claimed: Claimed) -> None:
    """Put a claimed reply back to ``pending`` (its preparation failed; the job retries)."""
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(_RELEASE, {"id": claimed.id, "attempts": claimed.attempts})


def voice_of(agent: AiAgent) -> AgentVoice:
    return AgentVoice(agent.name, agent.instructions or "", agent.language, agent.guardrails or [])


def _recent(session: Session, claimed: Claimed) -> list[Any]:
    """This conversation's latest messages, oldest first (never another conversation's)."""
    rows = session.execute(
        select(
            Message.id, Message.direction, Message.content_type, Message.body, Message.created_at
        )
        .where(
            Message.tenant_id == claimed.tenant_id,
            Message.conversation_id == claimed.conversation_id,
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(get_settings().ai_history_messages)
    ).all()
    return list(reversed(rows))


@dataclass(frozen=True, slots=True)
class Answered:
    """The conversation's latest sent answer: its message, and when what it answered arrived."""

    message_id: uuid.UUID | None
    until: dt.datetime


def _answered(session: Session, claimed: Claimed) -> Answered | None:
    """The latest sent reply of this conversation, if any."""
    row = session.execute(
        select(AiReply.reply_message_id, Message.created_at)
        .join(Message, Message.id == AiReply.last_message_id)
        .where(
            AiReply.tenant_id == claimed.tenant_id,
            AiReply.conversation_id == claimed.conversation_id,
            AiReply.status == "sent",
            Message.tenant_id == claimed.tenant_id,
        )
        .order_by(AiReply.created_at.desc())
        .limit(1)
    ).one_or_none()
    return Answered(*row) if row is not None else None


def _burst(rows: Sequence[Any], answered: Answered | None) -> list[Any]:
    """The contact's messages since our last one: what the reply must answer.

    WHY ``answered``: a message written while the latest answer was generated is older
    than that answer; the answer must not hide it from the follow-up that owes it one.
    """
    burst: list[Any] = []
    for row in reversed(rows):
        if answered is not None and row.created_at <= answered.until:
            break
        if row.direction != "inbound":
            if answered is not None and row.id == answered.message_id:
                continue  # the latest answer, sent after this burst arrived
            break
        burst.append(row)
    return list(reversed(burst))


def knowledge_for(
    session: Session, agent: AiAgent, questions: Sequence[str]
) -> tuple[list[Hit], int]:
    """Hits for the whole burst, else for its last message (full text ANDs its words), and
    the tokens the questions' embeddings cost (the caller counts them in the usage)."""
    tried: set[str] = set()
    tokens = 0
    deadline = embedder.question_deadline()
    for question in (" ".join(questions), *(reversed(questions))):
        if question in tried or not question.strip():
            continue
        tried.add(question)
        vector, used = embedder.question_vector(agent, question, deadline=deadline)
        tokens += used
        hits = retrieve(session, agent.tenant_id, agent.id, question, query_embedding=vector)
        if hits:
            return hits, tokens
    return [], tokens


def prepare(claimed: Claimed) -> Plan | None:
    """Everything before the model; None when the reply was settled without one."""
    started = time.perf_counter()
    with session_scope() as session:
        loaded = session.execute(
            select(
                AiAgent,
                Conversation,
                usage.replies_today_column(claimed.tenant_id, claimed.ai_agent_id),
            )
            .join_from(AiAgent, Conversation, Conversation.tenant_id == AiAgent.tenant_id)
            .where(
                AiAgent.id == claimed.ai_agent_id,
                AiAgent.tenant_id == claimed.tenant_id,
                Conversation.id == claimed.conversation_id,
                Conversation.tenant_id == claimed.tenant_id,
            )
        ).one_or_none()
        agent, conversation, replies_today = loaded if loaded is not None else (None, None, 0)
        if agent is None or not agent.is_active or not _answers_now(conversation, agent):
            settle(session, claimed, agent=agent)
            return None
        rows = _recent(session, claimed)
        read_until = rows[-1].created_at if rows else dt.datetime.now(dt.UTC)
        burst = _burst(rows, _answered(session, claimed))
        questions = [turn_text(r.content_type, r.body) for r in burst]
        # NOTE: the burst last, after an answer sent while it arrived (what it follows up).
        rows = [r for r in rows if not any(r is b for b in burst)] + burst
        rules = handoff.rules_of(session, agent)
        decision = None
        if claimed.attempts > get_settings().ai_reply_max_attempts:
            decision = handoff.on_error(
                agent, rules, f"no answer after {claimed.attempts - 1} attempts"
            )
        if decision is None:
            decision = handoff.before_model(
                agent,
                rules,
                text="\n".join(questions),
                ai_turns=conversation.ai_turns,
                replies_today=replies_today,
            )
        hits: list[Hit] = []
        embedding_tokens = 0
        if decision is None:
            hits, embedding_tokens = knowledge_for(session, agent, questions)
            decision = handoff.after_retrieval(agent, rules, hits)
        # NOTE: last, once the model will be asked: a reservation kept by a handoff decided
        # without it would count as a reply the plan never made (until the hourly rollup).
        if decision is None and not billing_usage.ai_reply_allowed(session, agent.tenant_id):
            decision = handoff.plan_limit(agent, rules, "the plan's monthly AI replies are spent")
        if decision is not None:
            settle(session, claimed, agent=agent, decision=decision)
            _count_embedding(session, agent, embedding_tokens)
            return None
        _count_embedding(session, agent, embedding_tokens)
        voice = voice_of(agent)
        history = [Turn(r.direction == "inbound", turn_text(r.content_type, r.body)) for r in rows]
        prompt = build(voice, history, hits)
        plan = Plan(
            claimed=claimed,
            agent=agent,
            provider=providers.for_agent(agent),
            request=ModelRequest(
                messages=prompt.messages,
                hits=prompt.hits,
                question="\n".join(questions),
                temperature=agent.temperature,
                max_tokens=agent.max_tokens,
            ),
            voice=voice,
            canary=prompt.canary,
            hits=prompt.hits,
            read_until=read_until,
        )
    plan.timings["prepare"] = time.perf_counter() - started
    return plan


def _count_embedding(session: Session, agent: AiAgent, tokens: int) -> None:
    """The question embeddings' tokens, in the usage whatever the reply becomes.

    NOTE: after settle, which locks the reply and conversation before the usage row, as
    every settling transaction does.
    """
    if tokens:
        usage.record(session, agent, prompt_tokens=tokens)


def _sources(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "kind": h.kind,
            "id": str(h.id),
            "source_id": str(h.source_id) if h.source_id else None,
            "score": round(h.score, 4),
        }
        for h in hits
    ]


#: A sent reply in one round trip: the reply row, the conversation's turn, the day's usage.
_SENT_CTES = """
    WITH reply AS (
        UPDATE ai_replies
           SET status = 'sent', reply_message_id = :message_id, sources = :sources,
               prompt_tokens = :prompt_tokens, completion_tokens = :completion_tokens,
               finished_at = now(), updated_at = now()
         WHERE id = :reply_id
    ), turn AS (
        UPDATE conversations SET ai_turns = ai_turns + 1
         WHERE id = :conversation_id AND tenant_id = :tenant_id
    )"""
_SENT = text(_SENT_CTES + usage.UPSERT_SQL).bindparams(bindparam("sources", type_=JSONB))
#: The same without the usage, which a :class:`usage.Tally` writes at the batch's end.
_SENT_TALLIED = text(_SENT_CTES + " SELECT 1").bindparams(bindparam("sources", type_=JSONB))


def reply_and_conversation() -> Select:
    """A reply with its conversation: settling locks both in this one read, the reply
    first (the lock order of this module's docstring)."""
    return select(AiReply, Conversation).join(
        Conversation,
        and_(
            Conversation.id == AiReply.conversation_id,
            Conversation.tenant_id == AiReply.tenant_id,
        ),
    )


def settle(
    session: Session,
    claimed: Claimed,
    *,
    agent: AiAgent | None,
    plan: Plan | None = None,
    completion: Completion | None = None,
    error: ProviderError | None = None,
    decision: handoff.Decision | None = None,
    tally: usage.Tally | None = None,
) -> str:
    """Write the reply's outcome (see the module docstring); its final status.

    ``stale`` when the row is no longer ours (settled, or re-driven and claimed again).
    With a ``tally`` the reply's usage is added to it, for the caller to write once.

    PERF: the answered path is one locking read, the outbound message's writes and one
    statement for the rest (and, for an agent with a daily reply limit, a lock of its
    usage row); rules and the agent are read again only to hand off.
    """
    locked = session.execute(
        reply_and_conversation()
        .where(
            AiReply.id == claimed.id,
            AiReply.tenant_id == claimed.tenant_id,
            AiReply.status == "generating",
            AiReply.attempts == claimed.attempts,
        )
        .with_for_update(key_share=True)  # NOTE: see _lock_replies
    ).one_or_none()
    if locked is None:
        return "stale"
    reply, conversation = locked
    tokens = (completion.prompt_tokens, completion.completion_tokens) if completion else (0, 0)
    sources = _sources(completion.used_hits or (plan.hits if plan else ())) if completion else []
    if agent is None or not agent.is_active or not _answers_now(conversation, agent):
        # NOTE: a human took over, replied or resolved it meanwhile, or the agent was
        # switched off (prepare settles its pending replies here): nothing goes out.
        _close(reply, "skipped", tokens, sources)
        if agent is not None and completion is not None:
            _count(session, tally, agent, prompt_tokens=tokens[0], completion_tokens=tokens[1])
        open_to_ai = conversation.ai_active and conversation.status != "resolved"
        new_owner = conversation.ai_agent_id if open_to_ai else None
        if new_owner is not None and new_owner != claimed.ai_agent_id:
            # NOTE: rerouted to another AI agent: the message that moved it found this reply
            # generating and was left to a follow-up. Nothing was answered, so the new
            # owner's reply is owed whenever its messages came (read or not).
            _follow_up(session, claimed, new_owner, None)
        return reply.status
    if error is not None:
        reply.error = storable_text(f"{error.kind}: {error}")[:2000]
        rules = handoff.rules_of(session, agent)
        if error.kind == NO_ANSWER:
            decision = handoff.no_answer(agent, rules, str(error))
        else:
            decision = handoff.on_error(agent, rules, reply.error)
    elif completion is not None and decision is None:
        problem = None
        if not completion.text.strip():
            problem = "the model answered nothing"
        elif plan is not None and leaks(completion.text, plan.voice, plan.canary):
            problem = "answer withheld: it repeated its instructions"
        if problem is not None:
            decision = handoff.on_error(agent, handoff.rules_of(session, agent), problem)
    if decision is None and completion is not None and agent.daily_reply_limit is not None:
        decision = _daily_limit(session, agent, tally)
    message = None
    if decision is None and completion is not None:
        # NOTE: any provider's answer: PostgreSQL refuses NUL, and settling must not fail.
        answer = storable_text(completion.text)
        message = handoff.send_as_agent(session, agent, conversation, answer)
        if message is None:
            rules = handoff.rules_of(session, agent)
            decision = handoff.on_error(agent, rules, "the channel refused the answer")
    if decision is not None:
        _close(reply, "handed_off", tokens, sources)
        reply.handoff_reason = decision.reason
        reply.error = reply.error or decision.detail[:2000] or None
        sent = handoff.hand_off(session, agent, conversation, decision, tally=tally)
        reply.reply_message_id = sent.id if sent is not None else None
        if completion is not None:
            _count(session, tally, agent, prompt_tokens=tokens[0], completion_tokens=tokens[1])
        return reply.status
    counts = {"replies": 1, "prompt_tokens": tokens[0], "completion_tokens": tokens[1]}
    session.execute(
        _SENT if tally is None else _SENT_TALLIED,
        {
            "reply_id": reply.id,
            "message_id": message.id,
            "sources": sources,
            "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1],
            "conversation_id": claimed.conversation_id,
            "tenant_id": claimed.tenant_id,
            **(usage.params(agent, **counts) if tally is None else {}),
        },
    )
    if tally is not None:
        tally.add(agent, **counts)
    session.expire(reply)
    if plan is not None:
        _follow_up(session, claimed, agent.id, plan.read_until)
    return "sent"


def _answers_now(conversation: Conversation, agent: AiAgent) -> bool:
    """Whether ``agent`` still has the conversation: its AI, not taken over, not resolved.

    WHY resolved: a conversation resolved during the settle window or the model call owes
    no reply, as dispatch already decides for a message arriving on a resolved one.
    """
    return (
        conversation.ai_active
        and conversation.ai_agent_id == agent.id
        and conversation.status != "resolved"
    )


def _daily_limit(
    session: Session, agent: AiAgent, tally: usage.Tally | None
) -> handoff.Decision | None:
    """The daily reply limit checked again, on the agent's usage row of the day, locked.

    Replies prepared at once each passed :func:`prepare`'s check before any of them was
    counted; here they count one after the other, with those the batch settled already
    (its tally writes them at its end).
    """
    used = usage.lock_today(session, agent) + (tally.replies(agent.id) if tally else 0)
    if used < agent.daily_reply_limit:
        return None
    return handoff.daily_limit(agent, handoff.rules_of(session, agent), used)


def _count(session: Session, tally: usage.Tally | None, agent: AiAgent, **counts: int) -> None:
    if tally is None:
        usage.record(session, agent, **counts)
    else:
        tally.add(agent, **counts)


def _close(reply: AiReply, status: str, tokens: tuple[int, int], sources: list) -> None:
    reply.status = status
    reply.prompt_tokens, reply.completion_tokens = tokens
    reply.sources = sources
    reply.finished_at = func.now()


_FOLLOW_UP = text(
    """
    INSERT INTO ai_replies (id, tenant_id, conversation_id, ai_agent_id, last_message_id,
                            status, due_at)
    SELECT :id, :tenant_id, :conversation_id, :agent_id, m.id, 'pending', now()
      FROM messages m
     WHERE m.tenant_id = :tenant_id AND m.conversation_id = :conversation_id
       AND m.direction = 'inbound'
       AND m.created_at > coalesce(CAST(:read_until AS timestamptz), '-infinity')
     ORDER BY m.created_at DESC
     LIMIT 1
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)


def _follow_up(
    session: Session, claimed: Claimed, agent_id: uuid.UUID, read_until: dt.datetime | None
) -> None:
    """Messages written after ``read_until`` (None: any) get ``agent_id``'s reply, now."""
    follow_up = session.scalar(
        _FOLLOW_UP,
        {
            "id": uuid.uuid4(),
            "tenant_id": claimed.tenant_id,
            "conversation_id": claimed.conversation_id,
            "agent_id": agent_id,
            "read_until": read_until,
        },
    )
    if follow_up is not None:
        replies.requeue(session, claimed.tenant_id, [follow_up])


def finish(plan: Plan, completion: Completion | None, error: ProviderError | None) -> str:
    """Settle a reply whose model call ended (in its own transaction)."""
    started = time.perf_counter()
    with session_scope() as session:
        status = _settle_answer(session, plan, completion, error)
    plan.timings["finish"] = time.perf_counter() - started
    return status


def _settle_answer(
    session: Session,
    plan: Plan,
    completion: Completion | None,
    error: ProviderError | None,
    tally: usage.Tally | None = None,
) -> str:
    return settle(
        session,
        plan.claimed,
        agent=plan.agent,
        plan=plan,
        completion=completion,
        error=error,
        tally=tally,
    )


#: ``(plan, completion, error)``: a reply whose model call ended.
Ended = tuple[Plan, Completion | None, ProviderError | None]


def finish_many(ended: Sequence[Ended]) -> list[str]:
    """Settle replies whose model calls ended, together in one transaction; their statuses.

    PERF: answers come back in waves (a burst of conversations asked at once). One
    transaction for a wave is one commit, and its outbound messages leave as one
    ``message.created`` batch, so dispatch and ``send_outbound`` handle them in
    batches too, instead of a message, a dispatch and a send job per reply.

    Replies are settled in conversation order (two batches lock alike) and their usage
    is written once per agent at the end. If anything fails, the batch rolls back and
    each reply is settled on its own, its failure its own.

    NOTE: lock order (the module docstring): the batch's replies, their conversations,
    then the usage rows of the day of limited agents, in id order (locked as each reply
    came, two batches could take them in opposite orders); every other row of the day is
    written at the end, in id order too (a hand-off's as well: written as the batch
    reached it, two batches handing off for each other's agents deadlocked). Usage rows first, their
    upsert's foreign key check held the agent while a deletion holding the replies waited
    for it: a deadlock. Now a deletion that got the replies first has deleted them (and
    their agent) when the batch gets them: they are ``stale``, their agent's row untouched.
    """
    if len(ended) == 1:
        return [finish(*ended[0])]
    started = time.perf_counter()
    order = sorted(range(len(ended)), key=lambda i: ended[i][0].claimed.conversation_id)
    statuses: list[str] = [""] * len(ended)
    try:
        with session_scope() as session:
            tally = usage.Tally()
            ours = _lock_replies(session, [ended[i][0].claimed for i in order])
            limited = {
                p.agent.id: p.agent
                for p, _, _ in ended
                if p.agent.daily_reply_limit is not None and p.claimed.id in ours
            }
            for agent_id in sorted(limited):
                usage.lock_today(session, limited[agent_id])
            for i in order:
                statuses[i] = _settle_answer(session, *ended[i], tally=tally)
            tally.write(session)
    except Exception:
        log.warning(
            "settling %d AI replies together failed; settling each on its own",
            len(ended),
            exc_info=True,
        )
        return [_finish_alone(*item) for item in ended]
    elapsed = time.perf_counter() - started
    for plan, _completion, _error in ended:
        plan.timings["finish"] = elapsed
    return statuses


def _lock_replies(session: Session, claimed: Sequence[Claimed]) -> set[uuid.UUID]:
    """Lock the replies still ours (generating, this attempt), then their conversations,
    each in conversation order; their ids. :func:`settle` finds them locked already.

    WHY all replies before any conversation: the deletion of an agent locks alike, so a
    batch and a deletion never hold one of each other's rows while waiting for another.
    """
    ours = session.execute(
        select(AiReply.id, AiReply.conversation_id)
        .where(
            tuple_(AiReply.id, AiReply.attempts).in_([(c.id, c.attempts) for c in claimed]),
            AiReply.status == "generating",
        )
        .order_by(AiReply.conversation_id)
        .with_for_update()
    ).all()
    if ours:
        # NOTE: FOR NO KEY UPDATE, as settle's own read: a hand-off into a division
        # re-times the SLA clock, and check_sla holds a clock while inserting its breach,
        # whose foreign-key check (FOR KEY SHARE on the conversation) FOR UPDATE blocked:
        # a deadlock. Settling never changes a conversation's id.
        session.execute(
            select(Conversation.id)
            .where(Conversation.id.in_([row.conversation_id for row in ours]))
            .order_by(Conversation.id)
            .with_for_update(key_share=True)
        ).all()
    return {row.id for row in ours}


def _finish_alone(plan: Plan, completion: Completion | None, error: ProviderError | None) -> str:
    try:
        return finish(plan, completion, error)
    except Exception:
        # NOTE: the row stays generating; the sweeper re-drives it.
        log.exception("settling AI reply %s failed", plan.claimed.id)
        return "error"


# --- off the worker thread -------------------------------------------------------------


class _Finisher:
    """This process's bounded hand-off: model calls on the loop, settling on a few threads.

    ``room`` bounds the replies between hand-over and settled, so a worker takes no
    more jobs than it answers and a burst waits in the broker, not in memory. Answers
    wait in ``ended`` for a settling thread, which takes all that are waiting (up to
    :data:`SETTLE_BATCH`) and settles them together (:func:`finish_many`).
    """

    def __init__(self) -> None:
        self.room = threading.BoundedSemaphore(get_settings().ai_max_concurrent_calls)
        self.ended: queue.SimpleQueue[tuple[Plan, Any, concurrent.futures.Future]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self.outstanding = 0
        for n in range(FINISH_THREADS):
            threading.Thread(
                target=self._settle_forever, name=f"ai-finish-{n}", daemon=True
            ).start()

    def submit(self, plan: Plan, on_settled: Any = None) -> None:
        self.room.acquire()
        with self._lock:
            self.outstanding += 1
        plan.timings["model_started"] = time.perf_counter()
        future = loop.submit(plan.provider.complete(plan.request))
        future.add_done_callback(functools.partial(self._done, plan, on_settled))

    def _done(self, plan: Plan, on_settled: Any, future: concurrent.futures.Future) -> None:
        plan.timings["model"] = time.perf_counter() - plan.timings["model_started"]
        self.ended.put((plan, on_settled, future))

    def _settle_forever(self) -> None:
        while True:
            batch = [self.ended.get()]
            while len(batch) < SETTLE_BATCH:
                try:
                    batch.append(self.ended.get_nowait())
                except queue.Empty:
                    break
            self._settle(batch)

    def _settle(self, batch: list[tuple[Plan, Any, concurrent.futures.Future]]) -> None:
        statuses = ["error"] * len(batch)
        try:
            statuses = finish_many([(plan, *_outcome(plan, future)) for plan, _, future in batch])
        except Exception:
            # NOTE: the rows stay generating; the sweeper re-drives them.
            log.exception("settling %d AI replies failed", len(batch))
        finally:
            for (plan, on_settled, _future), status in zip(batch, statuses, strict=True):
                with self._lock:
                    self.outstanding -= 1
                self.room.release()
                if on_settled is not None:
                    on_settled(plan, status)

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.outstanding:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True


def _outcome(
    plan: Plan, future: concurrent.futures.Future
) -> tuple[Completion | None, ProviderError | None]:
    """The model call's answer or its error (a provider bug is a model error, never silence)."""
    try:
        return future.result(), None
    except ProviderError as exc:
        return None, exc
    except Exception as exc:
        log.exception("AI provider failed on reply %s", plan.claimed.id)
        return None, ProviderError("unexpected", f"{type(exc).__name__}: {exc}"[:300])


_finisher_lock = threading.Lock()
_finisher: tuple[int, _Finisher] | None = None


def finisher() -> _Finisher:
    """This process's finisher (a new one in a forked child)."""
    global _finisher

    with _finisher_lock:
        if _finisher is None or _finisher[0] != os.getpid():
            _finisher = (os.getpid(), _Finisher())
            # NOTE: a stopping worker lets answers in flight settle, briefly; the rest stay
            # ``generating`` for the sweeper.
            atexit.register(_finisher[1].drain, 10.0)
        return _finisher[1]


def start(reply_id: uuid.UUID, on_settled: Any = None) -> str:
    """Claim and prepare the reply, and hand its model call over; returns at once.

    ``claimed_nothing``, ``settled`` (without a model: skipped or handed off) or
    ``generating``. A failure while preparing puts the reply back and raises (the job
    retries).
    """
    claimed = claim(reply_id)
    if claimed is None:
        return "claimed_nothing"
    try:
        plan = prepare(claimed)
    except Exception:
        release(claimed)
        raise
    if plan is None:
        return "settled"
    finisher().submit(plan, on_settled)
    return "generating"


def revive(
    session: Session, tenant_id: uuid.UUID | None, args: Sequence[Any], **_options: Any
) -> None:
    """Let an ``ai_reply`` dead letter's job run while its reply is in flight, else 409.

    WHY: the sweeper re-drives a dead job's reply until its attempts run out and it hands
    off, so a later requeue found it settled and did nothing while the console said
    requeued. A settled reply is not revived: a hand-off gave the conversation to the
    team (who may have answered since), and a sent or skipped one was answered.
    """
    reply = dead_letters.locked_row(
        session,
        AiReply,
        tenant_id,
        dead_letters.row_id(args),
        gone=("reply_gone", "The AI reply was deleted: there is nothing to answer"),
    )
    if reply.status in ("pending", "generating"):
        return
    raise dead_letters.NotRequeueable(
        f"reply_{reply.status}",
        f"The AI reply was settled already ({reply.status}): it is not generated again, so"
        " the AI never answers over the team. Hand the conversation back to the AI agent"
        " (the handover_to_ai action) for it to answer the next message",
    )
