"""The test endpoint's reply: the whole reply path, answered to the caller, sent nowhere.

The same decisions as a real reply (usage limit, handoff rules, retrieval, low
confidence, the model, the leak check) on a message typed by an admin, with an
optional made-up history. Nothing is written but usage: the call counts as a
``test_replies`` with its tokens (it costs what a reply costs).

The request's thread waits for the model (up to every retry: minutes with a slow one),
so a web process runs at most ``AI_MAX_CONCURRENT_TESTS`` tests at once and answers the
next 429: whoever clicks "test" again and again cannot take every thread the inbox needs.
A test also takes one of the slots all waits on a third party share
(:func:`shared.web_threads.waiting_on_third_party`).
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from shared import web_threads
from shared.ai import handoff, providers, usage
from shared.ai.agents import find_agent, share_agent
from shared.ai.generation import _sources, knowledge_for, voice_of
from shared.ai.prompt import Turn, build, leaks
from shared.ai.providers import loop
from shared.ai.providers.base import NO_ANSWER, Completion, ModelRequest, ProviderError
from shared.billing import usage as billing_usage
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import RateLimited
from shared.models import AiAgent
from shared.web_threads import BUSY_RETRY_AFTER, ai_test_slots


def _wait_seconds() -> float:
    """How long the request waits for the model: every attempt and its Retry-After waits."""
    s = get_settings()
    attempts = s.ai_model_max_retries + 1
    return attempts * s.ai_model_timeout_seconds + s.ai_model_max_retries * (
        s.ai_model_max_retry_after_seconds + 1
    )


@functools.cache
def _slots(size: int) -> threading.BoundedSemaphore:
    """The process's test slots (one semaphore per configured size: settings may change)."""
    return threading.BoundedSemaphore(size)


def try_agent(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    message: str,
    history: Sequence[tuple[bool, str]] = (),
) -> dict[str, Any]:
    """Answer ``message`` as the agent would; ``history`` is ``(from_contact, text)`` pairs.

    Raises :class:`RateLimited` when the process already runs as many agent tests as
    :func:`shared.web_threads.ai_test_slots` allows (after the 404 for an agent the caller
    cannot see), and 402 once the plan's AI replies of the month are spent (a test uses
    none of them).
    """
    agent = find_agent(session, ctx.tenant_id, agent_id)
    billing_usage.check_ai_replies_left(session, ctx.tenant_id)
    slots = _slots(ai_test_slots(get_settings()))
    if not slots.acquire(blocking=False):
        raise RateLimited(
            "Too many agent tests are running on this server; try again in a few seconds",
            retry_after=BUSY_RETRY_AFTER,
        )
    try:
        # NOTE: and one of the slots every wait on a third party shares (test sends
        # too), so agent tests and test sends together still leave a thread to the inbox.
        with web_threads.waiting_on_third_party():
            return _answer(session, agent, message, history)
    finally:
        slots.release()


def _answer(
    session: Session, agent: AiAgent, message: str, history: Sequence[tuple[bool, str]]
) -> dict[str, Any]:
    rules = handoff.rules_of(session, agent)
    turns = [Turn(from_contact, text) for from_contact, text in history]
    decision = handoff.before_model(
        agent,
        rules,
        text=message,
        ai_turns=sum(1 for t in turns if not t.from_contact),
        replies_today=usage.replies_today(session, agent.tenant_id, agent.id),
    )
    hits = []
    embedding_tokens = 0
    if decision is None:
        hits, embedding_tokens = knowledge_for(session, agent, [message])
        decision = handoff.after_retrieval(agent, rules, hits)
    completion: Completion | None = None
    sources: list[dict[str, Any]] = []
    if decision is None:
        voice = voice_of(agent)
        prompt = build(voice, [*turns, Turn(True, message)], hits)
        request = ModelRequest(
            messages=prompt.messages,
            hits=prompt.hits,
            question=message,
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
        )
        try:
            completion = loop.run(providers.for_agent(agent).complete(request), _wait_seconds())
        except ProviderError as exc:
            if exc.kind == NO_ANSWER:
                decision = handoff.no_answer(agent, rules, str(exc))
            else:
                decision = handoff.on_error(agent, rules, f"{exc.kind}: {exc}")
        except TimeoutError:
            decision = handoff.on_error(agent, rules, "timeout: the model did not answer in time")
        if completion is not None:
            sources = _sources(completion.used_hits or prompt.hits)
            if not completion.text.strip():
                decision = handoff.on_error(agent, rules, "the model answered nothing")
            elif leaks(completion.text, voice, prompt.canary):
                decision = handoff.on_error(
                    agent, rules, "answer withheld: it repeated its instructions"
                )
    # The question's embedding is prompt input too, counted as the usage counts it.
    prompt_tokens = (completion.prompt_tokens if completion else 0) + embedding_tokens
    completion_tokens = completion.completion_tokens if completion else 0
    # NOTE: locked only now, not across the model's seconds: an agent deleted meanwhile is
    # a 404, not the usage row's foreign key failing (a 409 logged as a database refusal).
    share_agent(session, agent.tenant_id, agent.id)
    usage.record(
        session,
        agent,
        test_replies=1,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    return {
        "reply": completion.text if completion is not None and decision is None else None,
        "sources": sources,
        "handoff": {"handoff": decision is not None, **(decision.as_dict() if decision else {})},
        "tokens": {
            "prompt": prompt_tokens,
            "completion": completion_tokens,
            "total": prompt_tokens + completion_tokens,
        },
        "provider": agent.provider,
        "model": completion.model if completion is not None else None,
    }
