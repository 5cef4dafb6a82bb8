"""Embedding tokens count in the AI usage beside generation tokens: imports and questions."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import KnowledgeChunk
from tests.waiting import wait_until

RETURNS = "Returns are accepted within 30 days of delivery, in the original packaging."


def _embedded(agent_id) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(KnowledgeChunk)
            .where(KnowledgeChunk.ai_agent_id == agent_id, KnowledgeChunk.embedding.is_not(None))
        )


def _embedding_words(fake_llm) -> int:
    """What the fake reports for its embedding calls: one token a word."""
    with fake_llm.lock:
        calls = [r for r in fake_llm.requests if r.path.endswith("/embeddings")]
    return sum(len(text.split()) for call in calls for text in call.body["input"])


def _usage_totals(world, agent_id) -> dict:
    resp = world.ws.call("GET", f"/api/ai-agents/{agent_id}/usage")
    assert resp.status_code == 200, resp.text
    return resp.json["totals"]


def _import(world, agent_id) -> None:
    created = world.ws.call(
        "POST",
        f"/api/ai-agents/{agent_id}/knowledge-sources",
        json={"kind": "text", "title": "Returns", "content": RETURNS},
    )
    assert created.status_code == 201, created.text
    wait_until(lambda: _embedded(agent_id) > 0, "the source's chunks embedded")


def test_import_and_question_embedding_tokens_are_in_the_usage(world, fake_llm):
    agent = world.agent(
        provider="openai", embedding_model="fake-embed", faq=(), prompt_cost_per_1k="1"
    )
    _import(world, agent.id)
    imported = _embedding_words(fake_llm)
    assert imported > 0
    wait_until(
        lambda: _usage_totals(world, agent.id)["prompt_tokens"] == imported,
        "the import's embedding tokens in the usage",
    )

    fake_llm.answer = "Within 30 days."
    asked = world.ws.call(
        "POST", f"/api/ai-agents/{agent.id}/test", json={"message": "Can I send it back?"}
    )
    assert asked.status_code == 200, asked.text
    [chat] = fake_llm.chats()
    chat_words = sum(len(m["content"].split()) for m in chat.messages)
    question = 5  # words of the question, tokens to the fake
    assert asked.json["tokens"]["prompt"] == chat_words + question
    totals = _usage_totals(world, agent.id)
    assert totals["prompt_tokens"] == imported + chat_words + question
    assert float(totals["cost"]) == pytest.approx((imported + chat_words + question) / 1000)


def test_embedding_tokens_are_estimated_when_the_provider_reports_none(world, fake_llm):
    agent = world.agent(provider="openai", embedding_model="fake-embed", faq=())
    fake_llm.embeddings_body = b'{"data": [{"index": 0, "embedding": [0.1, 0.2, 0.3]}]}'
    _import(world, agent.id)
    wait_until(
        lambda: _usage_totals(world, agent.id)["prompt_tokens"] > 0,
        "estimated embedding tokens in the usage",
    )
