"""A new embedding model re-embeds the agent's knowledge; old vectors are never compared."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from scheduler import jobs
from shared.ai import embedder  # noqa: F401  (installs the providers' embedder factory)
from shared.ai.knowledge import embedding, queue
from shared.db import session_scope
from shared.models import KnowledgeChunk, QnaPair
from tests.ai_reply.conftest import embed_messages_lost
from tests.waiting import wait_until

RETURNS = "Returns are accepted within 30 days of delivery, in the original packaging."
QUESTION = {"message": "Are returns accepted within 30 days?"}


def _vectors(agent_id) -> list:
    with session_scope() as session:
        return list(
            session.scalars(
                select(KnowledgeChunk.embedding).where(KnowledgeChunk.ai_agent_id == agent_id)
            )
        )


def _embedded_by(fake_llm, model: str) -> list[str]:
    with fake_llm.lock:
        calls = [r for r in fake_llm.requests if r.path.endswith("/embeddings")]
    return [text for r in calls if r.body["model"] == model for text in r.body["input"]]


def _replace(world, agent, **fields):
    body = {"name": agent.name, "provider": "openai", "confidence_threshold": 0.6} | fields
    resp = world.ws.call("PUT", f"/api/ai-agents/{agent.id}", json=body)
    assert resp.status_code == 200, resp.text


def _agent_with_knowledge(world, **fields):
    agent = world.agent(
        provider="openai", embedding_model="embed-a", faq=(), confidence_threshold=0.6, **fields
    )
    created = world.ws.call(
        "POST",
        f"/api/ai-agents/{agent.id}/knowledge-sources",
        json={"kind": "text", "title": "Returns", "content": RETURNS},
    )
    assert created.status_code == 201, created.text
    wait_until(lambda: all(_vectors(agent.id)) and _vectors(agent.id), "chunks embedded")
    return agent


def _embed_with(computing, kind: str, item_id) -> None:
    """``embed_items`` of one item run here, its vectors computed by ``computing``."""
    installed = embedding.set_embedder_factory(lambda _agent: computing)
    try:
        with session_scope() as session:
            embedding.embed_items(session, kind, [item_id])
    finally:
        embedding.set_embedder_factory(installed)


def test_a_new_embedding_model_re_embeds_and_never_meets_the_old_vectors(world, fake_llm):
    agent = _agent_with_knowledge(world)
    fake_llm.answer = "Within 30 days."
    # The new model's vectors are the same size as the old one's but point elsewhere:
    # compared with them, the question would look unrelated to its own answer.
    fake_llm.embeddings_body = json.dumps(
        {"data": [{"index": 0, "embedding": [-1.0] * 8}], "usage": {"prompt_tokens": 1}}
    ).encode()

    _replace(world, agent, embedding_model="embed-b")

    after = world.ws.call("POST", f"/api/ai-agents/{agent.id}/test", json=QUESTION)
    assert after.status_code == 200, after.text
    assert after.json["handoff"]["handoff"] is False, after.json["handoff"]
    assert after.json["reply"] == "Within 30 days."
    # The knowledge is embedded again by the new model.
    wait_until(
        lambda: any("30 days" in t for t in _embedded_by(fake_llm, "embed-b")),
        "the chunks sent to the new model",
    )
    wait_until(
        lambda: [[round(x, 4) for x in v or ()] for v in _vectors(agent.id)] == [[-0.3536] * 8],
        "the new model's vectors stored",
    )


def test_switching_to_a_provider_that_embeds_embeds_the_existing_knowledge(world, fake_llm):
    agent = world.agent(embedding_model="embed-a")  # offline: no vectors
    with session_scope() as session:
        pairs = session.scalars(select(QnaPair.id).where(QnaPair.ai_agent_id == agent.id)).all()
    assert pairs

    _replace(world, agent, embedding_model="embed-a")

    def embedded():
        with session_scope() as session:
            return session.scalar(select(QnaPair.embedding).where(QnaPair.id == pairs[0]))

    wait_until(embedded, "the existing QnA pairs embedded")


def test_vectors_of_a_model_replaced_while_they_were_computed_are_not_stored(world, fake_llm):
    """``embed_items`` of the old model finishing after the change must not store its
    vectors over the cleared ones."""
    agent = _agent_with_knowledge(world)
    with session_scope() as session:
        chunk_id = session.scalar(
            select(KnowledgeChunk.id).where(KnowledgeChunk.ai_agent_id == agent.id)
        )

    class SwitchedMidway:
        def embed(self, texts):
            _replace(world, agent, embedding_model="embed-b", provider="offline")
            return [[0.5] * 8 for _ in texts]

    _embed_with(SwitchedMidway(), "chunk", chunk_id)
    assert _vectors(agent.id) == [None]


def _sweep_reembedding() -> int:
    """How many items the re-embedding sweep sent again."""
    with session_scope() as session:
        return jobs.sweep_knowledge_reembedding(session)["sent"]


def _replace_with_embeds_lost(world, agent, **fields) -> None:
    """The change commits, but its ``embed_items`` messages never reach a worker."""
    saved = queue.EMBED.enqueuer
    queue.EMBED.set_enqueuer(None)
    try:
        _replace(world, agent, **fields)
    finally:
        queue.EMBED.set_enqueuer(saved)


def test_a_re_embedding_whose_jobs_were_lost_is_re_driven_by_the_scheduler(world, fake_llm):
    agent = _agent_with_knowledge(world)
    _replace_with_embeds_lost(world, agent, embedding_model="embed-b")
    assert _vectors(agent.id) == [None]
    assert _embedded_by(fake_llm, "embed-b") == []

    wait_until(lambda: _sweep_reembedding() == 1, "the lost re-embedding re-driven")
    assert _sweep_reembedding() == 0  # re-driven a moment ago: the next tick waits
    wait_until(
        lambda: any("30 days" in t for t in _embedded_by(fake_llm, "embed-b")),
        "the chunks sent to the new model",
    )
    wait_until(lambda: all(_vectors(agent.id)), "the new model's vectors stored")
    # Done: the next sweeps find nothing owed and send nothing again.
    wait_until(lambda: _sweep_reembedding() == 0, "the re-embedding settled")
    sent = len(_embedded_by(fake_llm, "embed-b"))
    assert _sweep_reembedding() == 0
    assert len(_embedded_by(fake_llm, "embed-b")) == sent


def test_a_lost_re_embedding_for_a_model_that_no_longer_embeds_is_dropped(world, fake_llm):
    """Switched to a model, then (its jobs lost) to a provider without vectors: nothing is
    owed, so the sweep sends nothing and forgets the agent."""
    agent = _agent_with_knowledge(world)
    _replace_with_embeds_lost(world, agent, embedding_model="embed-b")
    _replace(world, agent, embedding_model="embed-b", provider="offline")
    time.sleep(1.2)  # past the sweep's delay (1 s in this folder)
    assert _sweep_reembedding() == 0
    assert _embedded_by(fake_llm, "embed-b") == []
    assert _vectors(agent.id) == [None]


def test_the_vector_of_a_product_replaced_while_it_was_computed_is_not_stored(world, fake_llm):
    """``embed_items`` of a product's old text finishing after a replace must not store
    that text's vector over the cleared one: retrieval would match the product by a text
    it no longer has, and the sweep would never embed the new one (a vector is there)."""
    from shared.models import AiProduct

    agent = world.agent(provider="openai", embedding_model="embed-a", faq=())
    path = f"/api/ai-agents/{agent.id}/products"
    with embed_messages_lost():  # embed_items is run by hand below
        created = world.ws.call("POST", path, json={"name": "Blue mug"})
        assert created.status_code == 201, created.text
        product_id = created.json["id"]

        class ReplacedMidway:
            def embed(self, texts):
                replaced = world.ws.call("PUT", f"{path}/{product_id}", json={"name": "Red kettle"})
                assert replaced.status_code == 200, replaced.text
                return [[0.5] * 8 for _ in texts]

        _embed_with(ReplacedMidway(), "product", product_id)
    with session_scope() as session:
        assert session.scalar(select(AiProduct.embedding).where(AiProduct.id == product_id)) is None
