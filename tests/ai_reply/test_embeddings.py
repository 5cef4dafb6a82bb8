"""Embeddings through the agent's provider: knowledge is embedded, questions ranked by vector."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import KnowledgeChunk
from tests.waiting import wait_until

RETURNS = "Returns are accepted within 30 days of delivery, in the original packaging."


def _embedded_chunks(agent_id) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(KnowledgeChunk)
            .where(KnowledgeChunk.ai_agent_id == agent_id, KnowledgeChunk.embedding.is_not(None))
        )


def _add_returns_source(world, agent) -> None:
    """The agent's knowledge: one text source (RETURNS), created; ingestion runs after."""
    created = world.ws.call(
        "POST",
        f"/api/ai-agents/{agent.id}/knowledge-sources",
        json={"kind": "text", "title": "Returns", "content": RETURNS},
    )
    assert created.status_code == 201, created.text


def _embedding_calls(fake_llm) -> list:
    with fake_llm.lock:
        return [r for r in fake_llm.requests if r.path.endswith("/embeddings")]


def test_knowledge_and_questions_are_embedded_by_the_agents_provider(world, fake_llm):
    agent = world.agent(provider="openai", embedding_model="fake-embed", faq=())
    _add_returns_source(world, agent)

    wait_until(lambda: _embedded_chunks(agent.id) > 0, "the source's chunks embedded")
    [ingested] = _embedding_calls(fake_llm)
    assert ingested.body["model"] == "fake-embed"
    assert any("30 days" in text for text in ingested.body["input"])

    fake_llm.answer = "Within 30 days."
    asked = world.ws.call(
        "POST", f"/api/ai-agents/{agent.id}/test", json={"message": "Can I send it back?"}
    )
    assert asked.status_code == 200, asked.text
    # The question itself went to the embeddings endpoint, so ranking could use its vector.
    assert ["Can I send it back?"] in [r.body["input"] for r in _embedding_calls(fake_llm)[1:]]


def test_an_offline_agent_never_calls_for_embeddings(world, fake_llm):
    agent = world.agent(embedding_model="fake-embed", faq=())
    _add_returns_source(world, agent)
    wait_until(
        lambda: (
            world.ws.call("GET", f"/api/ai-agents/{agent.id}/knowledge-sources").json["items"][0][
                "status"
            ]
            == "ready"
        ),
        "the source ingested",
    )
    assert _embedding_calls(fake_llm) == []
    assert _embedded_chunks(agent.id) == 0


def test_knowledge_embedded_by_a_previous_model_still_answers_by_text(world, fake_llm):
    """After the agent's embedding model changes, its knowledge keeps the old model's vectors
    (of another size) until re-embedded: they cannot be compared with the new question
    vectors, and counted as no similarity they halved every score into a handoff."""
    agent = world.agent(
        provider="openai", embedding_model="embed-a", faq=(), confidence_threshold=0.6
    )
    _add_returns_source(world, agent)
    wait_until(lambda: _embedded_chunks(agent.id) > 0, "the source's chunks embedded")
    fake_llm.answer = "Within 30 days."
    question = {"message": "Are returns accepted within 30 days?"}
    path = f"/api/ai-agents/{agent.id}/test"
    before = world.ws.call("POST", path, json=question)
    assert before.json["reply"] == "Within 30 days.", before.json

    changed = world.ws.call(
        "PUT",
        f"/api/ai-agents/{agent.id}",
        json={
            "name": agent.name,
            "provider": "openai",
            "embedding_model": "embed-b",
            "confidence_threshold": 0.6,
        },
    )
    assert changed.status_code == 200, changed.text
    # The new model's vectors have another size.
    fake_llm.embeddings_body = b'{"data": [{"index": 0, "embedding": [0.1, 0.2, 0.3, 0.4]}]}'

    after = world.ws.call("POST", path, json=question)
    assert after.status_code == 200, after.text
    assert after.json["handoff"]["handoff"] is False, after.json["handoff"]
    assert after.json["reply"] == "Within 30 days."


def _suspended_with_qna_pairs(world, app):
    """An AI agent with QnA pairs, its workspace then suspended: the agent, the pairs' ids."""
    import falcon.testing

    from shared.models import QnaPair
    from tests.admin.conftest import create_super_admin, login

    agent = world.agent(provider="openai", embedding_model="fake-embed")
    with session_scope() as session:
        ids = [
            str(i)
            for i in session.scalars(select(QnaPair.id).where(QnaPair.ai_agent_id == agent.id))
        ]
    root = login(falcon.testing.TestClient(app), create_super_admin())
    tenant_id = world.ws.tenant["id"]
    assert root.call("DELETE", f"/api/admin/tenants/{tenant_id}").status_code == 204
    return agent, ids


def _assert_dropped_with_a_dead_letter(fake_llm, agent) -> None:
    """The suspended tenant's batch never reached the model and left its dead letter."""
    from shared.models import DeadLetter

    assert _embedding_calls(fake_llm) == []
    with session_scope() as session:
        letters = session.scalars(
            select(DeadLetter.actor_name).where(DeadLetter.tenant_id == agent.tenant_id)
        ).all()
    assert letters == ["embed_items"]


def test_a_suspended_tenants_queued_embeddings_are_dropped(world, fake_llm, app, broker):
    """Embedding work queued before a suspension must not call the model after it
    (API.md: a suspended tenant's queued work is dropped, with a dead letter)."""
    from workers import queues
    from workers.actors.ai_knowledge import embed_items

    agent, ids = _suspended_with_qna_pairs(world, app)

    embed_items.send("qna", ids)  # as a QnA pair's creation queued it before the suspension
    broker.join(queues.KNOWLEDGE, timeout=20_000)

    _assert_dropped_with_a_dead_letter(fake_llm, agent)


def test_a_question_embedding_slower_than_its_budget_ranks_by_text(world, fake_llm, monkeypatch):
    """A struggling embeddings endpoint (slow, retried) must not hold the reply past its job's
    time limit: the question's vector is given up after its budget, the answer comes anyway."""
    from shared.ai import embedder

    agent = world.agent(provider="openai", embedding_model="fake-embed")
    monkeypatch.setattr(embedder, "QUESTION_EMBEDDING_SECONDS", 0.5)
    fake_llm.embeddings_delay = 3.0
    fake_llm.answer = "Three to five days."

    started = time.monotonic()
    asked = world.ws.call(
        "POST", f"/api/ai-agents/{agent.id}/test", json={"message": "How long does shipping take?"}
    )

    assert asked.status_code == 200, asked.text
    assert asked.json["reply"] == "Three to five days."
    assert time.monotonic() - started < 2.5


def test_knowledge_embedded_as_nan_is_not_stored_but_retried(world, fake_llm):
    """NaN vectors (numbers sent as strings) were stored as the chunks' embeddings, and
    every later score against them was NaN. Such an answer is a malformed one: nothing
    is stored and the message is retried, as for any bad answer, until one is good."""
    fake_llm.embeddings_body = b'{"data": [{"index": 0, "embedding": ["NaN", "NaN"]}]}'
    agent = world.agent(provider="openai", embedding_model="fake-embed", faq=())
    _add_returns_source(world, agent)
    wait_until(lambda: len(_embedding_calls(fake_llm)) >= 2, "the embedding retried", 30)
    assert _embedded_chunks(agent.id) == 0
    # Answered well, a retry stores them (and leaves no retry behind for the next test).
    fake_llm.embeddings_body = None
    wait_until(lambda: _embedded_chunks(agent.id) > 0, "the chunks embedded on a retry", 60)


def test_a_question_vector_of_nan_ranks_by_text(world, fake_llm):
    """A provider answering NaN (as a string, which ``float()`` took) gave every item a NaN
    score, which no confidence threshold refuses (``NaN < 0.6`` is false) and which went
    out as ``null``. The answer is a provider error, so the question ranks by text."""
    agent = world.agent(
        provider="openai", embedding_model="fake-embed", faq=(), confidence_threshold=0.6
    )
    _add_returns_source(world, agent)
    wait_until(lambda: _embedded_chunks(agent.id) > 0, "the source's chunks embedded")
    fake_llm.answer = "Within 30 days."
    fake_llm.embeddings_body = b'{"data": [{"index": 0, "embedding": ' + (
        b'["NaN", "NaN", "NaN", "NaN", "NaN", "NaN", "NaN", "NaN"]}]}'
    )

    asked = world.ws.call(
        "POST",
        f"/api/ai-agents/{agent.id}/test",
        json={"message": "Are returns accepted within 30 days?"},
    )
    assert asked.status_code == 200, asked.text
    assert asked.json["handoff"]["handoff"] is False, asked.json["handoff"]
    [source] = asked.json["sources"]
    assert isinstance(source["score"], float), source  # NaN went out as null


def test_a_suspended_tenants_embeddings_are_dropped_when_the_first_item_is_gone(
    world, fake_llm, app, broker
):
    """The gate names a batch's tenant by an item still there: one deleted since the batch
    was queued (the first, here) must not let a suspended tenant's items reach the model."""
    import uuid

    from workers import queues
    from workers.actors.ai_knowledge import embed_items

    agent, ids = _suspended_with_qna_pairs(world, app)

    embed_items.send("qna", [str(uuid.uuid4()), *ids])  # its first pair deleted since
    broker.join(queues.KNOWLEDGE, timeout=20_000)

    _assert_dropped_with_a_dead_letter(fake_llm, agent)
