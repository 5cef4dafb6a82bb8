"""Retrieval over real PostgreSQL: full text, trigram fallbacks, QnA preference, scores,
scoping, embeddings (vectors fed directly: the model providers live with the reply path)."""

from __future__ import annotations

import json
import math
import pathlib
import uuid

import pytest

from shared.ai import retrieval
from shared.ai.knowledge import embedding
from shared.db import session_scope
from shared.models import AiAgent, KnowledgeSource, QnaPair
from tests.ai_knowledge.agents import add_ai_agent
from tests.ai_knowledge.conftest import ingested_text_source, sources_path

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
PASSAGES = {
    "returns": "Returns are accepted within thirty days of delivery, with the receipt.",
    "shipping": "Standard shipping takes three to five working days; express ships overnight.",
    "password": "To reset your password, open Settings, choose Security and press Reset.",
    "warranty": "Every device carries a two year warranty covering manufacturing defects.",
    "hours": "The shop opens at nine and closes at six, Monday to Saturday.",
}


def _qna(ws, agent: str, source_id: uuid.UUID, question: str, answer: str) -> str:
    resp = ws.call(
        "POST",
        f"{sources_path(agent)}/{source_id}/qna-pairs",
        json={"question": question, "answer": answer},
    )
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


@pytest.fixture
def knowledge(workspace):
    agent = add_ai_agent(workspace)
    sources = {
        key: ingested_text_source(workspace, agent, title=key, content=text)
        for key, text in PASSAGES.items()
    }
    pair = _qna(
        workspace,
        agent,
        sources["password"],
        "How do I reset my password?",
        "Settings > Security > Reset; a link arrives by email.",
    )
    return workspace, agent, sources, pair


def _retrieve(ws, agent, question, **kwargs):
    with session_scope() as session:
        return retrieval.retrieve(
            session, uuid.UUID(ws.tenant["id"]), uuid.UUID(agent), question, **kwargs
        )


def test_the_passage_holding_the_question_words_ranks_first(knowledge):
    ws, agent, sources, _pair = knowledge
    hits = _retrieve(ws, agent, "How long does express shipping take?")
    assert hits[0].source_id == sources["shipping"] and hits[0].kind == "chunk"
    assert hits[0].score > 0.6
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_a_matching_qna_pair_is_preferred_over_passages(knowledge):
    ws, agent, sources, pair = knowledge
    hits = _retrieve(ws, agent, "how do i reset my password")
    assert hits[0].kind == "qna" and str(hits[0].id) == pair
    assert hits[0].text.startswith("How do I reset my password?\n")
    assert hits[0].score >= 0.95
    assert hits[1].source_id == sources["password"]


def test_a_misspelt_question_still_finds_the_pair_and_passages(knowledge):
    ws, agent, sources, pair = knowledge
    hits = _retrieve(ws, agent, "how do i rest my pasword")
    assert hits and str(hits[0].id) == pair
    one_word = _retrieve(ws, agent, "warranti")
    assert one_word and one_word[0].source_id == sources["warranty"]
    assert 0.1 < one_word[0].score < 0.8  # a fuzzy match is worth less than an exact one


def test_unrelated_or_empty_questions_find_nothing_to_ground_on(knowledge):
    ws, agent, _sources, _pair = knowledge
    assert _retrieve(ws, agent, "") == []
    assert _retrieve(ws, agent, "   \x00 ") == []
    hits = _retrieve(ws, agent, "quantum chromodynamics lattice")
    assert all(h.score < 0.1 for h in hits)  # below the default confidence threshold


def test_stopword_only_questions_and_tsquery_syntax_are_safe(knowledge):
    ws, agent, _sources, _pair = knowledge
    assert isinstance(_retrieve(ws, agent, "what is it?"), list)
    for question in ("a & b | !c <-> d", "'; DROP TABLE knowledge_chunks; --", "(((", ":*"):
        assert isinstance(_retrieve(ws, agent, question), list)


def test_partial_matches_score_by_the_share_of_words_found(knowledge):
    ws, agent, sources, _pair = knowledge
    full = _retrieve(ws, agent, "warranty manufacturing defects")[0]
    partial = _retrieve(ws, agent, "warranty battery replacement")[0]
    assert full.source_id == partial.source_id == sources["warranty"]
    assert full.score > 0.8 and 0.2 < partial.score < 0.5


def test_other_agents_and_tenants_knowledge_is_never_returned(knowledge, other_workspace):
    ws, agent, _sources, _pair = knowledge
    sibling = add_ai_agent(ws)
    ingested_text_source(
        ws,
        sibling,
        title="secret",
        content="Sibling agent secret: the vault code is 4711 warranty.",
    )
    stranger = add_ai_agent(other_workspace)
    ingested_text_source(
        other_workspace, stranger, title="x", content="Other tenant warranty text, vault 4711."
    )
    hits = _retrieve(ws, agent, "vault code warranty 4711")
    assert hits and all("4711" not in h.text for h in hits)
    with session_scope() as session:  # the right agent id under the wrong tenant: nothing
        assert (
            retrieval.retrieve(
                session, uuid.UUID(other_workspace.tenant["id"]), uuid.UUID(agent), "warranty"
            )
            == []
        )


def _unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def test_embeddings_rerank_text_hits_and_answer_when_text_finds_nothing(knowledge):
    ws, agent, sources, _pair = knowledge
    with session_scope() as session:
        chunks = {
            key: session.execute(
                retrieval.text("SELECT id FROM knowledge_chunks WHERE source_id = :s"),
                {"s": source_id},
            ).scalar_one()
            for key, source_id in sources.items()
        }
        # Toy 3-d vectors: "returns" and "warranty" point one way, the rest another.
        embedding.store(
            session,
            "chunk",
            {
                chunks["returns"]: [1.0, 0.1, 0.0],
                chunks["warranty"]: [0.9, 0.2, 0.1],
                chunks["shipping"]: [0.0, 1.0, 0.0],
                chunks["hours"]: [0.0, 0.2, 1.0],
                chunks["password"]: [0.0, 0.0, 1.0],
            },
        )
        stored = session.execute(
            retrieval.text("SELECT embedding FROM knowledge_chunks WHERE id = :i"),
            {"i": chunks["returns"]},
        ).scalar_one()
    assert math.isclose(sum(x * x for x in stored), 1.0, rel_tol=1e-5)  # stored unit length

    # Text alone: both passages mention "days"; the vector decides between them.
    question = "how many days"
    by_text = _retrieve(ws, agent, question)
    blended = _retrieve(ws, agent, question, query_embedding=_unit(1.0, 0.0, 0.0))
    assert {h.source_id for h in by_text[:2]} == {sources["returns"], sources["shipping"]}
    assert blended[0].source_id == sources["returns"]
    assert (
        _retrieve(ws, agent, question, query_embedding=_unit(0, 1, 0))[0].source_id
        == (sources["shipping"])
    )
    # No word in common at all: cosine alone, worth at most VECTOR_WEIGHT.
    semantic = _retrieve(ws, agent, "zzz qqq", query_embedding=_unit(0.95, 0.15, 0.05))
    assert [h.source_id for h in semantic[:2]] == [sources["returns"], sources["warranty"]]
    assert semantic[0].score <= retrieval.VECTOR_WEIGHT


class _Letters:
    """A stand-in embedding model: counts of a, e, i, o, u (deterministic, no network)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return [[float(t.lower().count(v)) + 0.01 for v in "aeiou"] for t in texts]


def test_embed_items_stores_vectors_for_agents_with_an_embedding_model(worker, workspace, broker):
    model = _Letters()
    installed = embedding.set_embedder_factory(lambda agent: model)
    try:
        plain = add_ai_agent(workspace)
        embedded = add_ai_agent(workspace, embedding_model="letters-5")
        source = ingested_text_source(
            workspace, embedded, title="Doc", content="A short passage about oranges."
        )
        pair = _qna(workspace, embedded, source, "Oranges?", "Yes, fresh ones.")
        _qna(
            workspace,
            plain,
            ingested_text_source(workspace, plain, title="P", content="Plain."),
            "Q?",
            "A.",
        )
        broker.join("knowledge", timeout=20_000)
        with session_scope() as session:
            vector = session.scalar(
                retrieval.text("SELECT embedding FROM qna_pairs WHERE id = :i"), {"i": pair}
            )
            chunk_vectors = session.scalars(
                retrieval.text("SELECT embedding FROM knowledge_chunks WHERE source_id = :s"),
                {"s": source},
            ).all()
            plain_vectors = session.scalars(
                retrieval.text("SELECT embedding FROM qna_pairs WHERE ai_agent_id = :a"),
                {"a": plain},
            ).all()
            assert vector is not None and len(vector) == 5
            assert chunk_vectors and all(v is not None for v in chunk_vectors)
            assert plain_vectors == [None]  # no embedding model: text ranking only
            # Redelivered: the same vectors again, nothing else changes.
            again = embedding.embed_items(session, "qna", [uuid.UUID(pair)])
            assert again == 1
        assert all("Plain." not in text for call in model.calls for text in call)
    finally:
        # NOTE: the providers' factory, not None: later tests of this process embed too.
        embedding.set_embedder_factory(installed)


def test_without_an_embedder_embed_items_does_nothing(workspace):
    agent = add_ai_agent(workspace, embedding_model="not-installed")
    source = ingested_text_source(workspace, agent, title="Doc", content="Text.")
    pair = _qna(workspace, agent, source, "Q?", "A.")
    with session_scope() as session:
        assert embedding.embed_items(session, "qna", [uuid.UUID(pair)]) == 0
        with pytest.raises(ValueError):
            embedding.embed_items(session, "nonsense", [])


def test_hostile_knowledge_is_returned_as_plain_text_to_its_own_agent_only(
    workspace, other_workspace
):
    """The fixtures the reply path reuses: retrieval hands back the text, nothing more."""
    fixture = json.loads((FIXTURES / "hostile_knowledge.json").read_text())
    agent = add_ai_agent(workspace)
    for item in fixture["items"]:
        ingested_text_source(workspace, agent, title=item["title"], content=item["content"])
    for item in fixture["items"]:
        hits = _retrieve(workspace, agent, item["question"])
        assert hits, item["attack"]
        top = hits[0]
        assert isinstance(top, retrieval.Hit) and top.kind in ("chunk", "qna")
        # Verbatim under its title: neither executed, rewritten nor silently dropped.
        assert top.text == f"{item['title']}\n\n{item['content']}", item["attack"]
    stranger = add_ai_agent(other_workspace)
    for question in fixture["hostile_questions"]:
        assert _retrieve(other_workspace, stranger, question) == []


def test_hidden_html_text_is_not_ingested(workspace):
    page = (FIXTURES / "hostile_page.html").read_bytes()
    from shared.ai.knowledge import formats, parsing

    text = "\n".join(parsing.parse(formats.detect(page[:4096]), page))
    assert "same day" in text
    assert "SYSTEM:" not in text and "exfiltrate" not in text and "pirate" not in text


def test_sources_and_pairs_of_the_fixture_agent_exist(knowledge):
    _ws, agent, _sources, _pair = knowledge
    with session_scope() as session:
        assert session.get(AiAgent, uuid.UUID(agent)) is not None
        assert session.query(KnowledgeSource).filter_by(ai_agent_id=uuid.UUID(agent)).count() == 5
        assert session.query(QnaPair).filter_by(ai_agent_id=uuid.UUID(agent)).count() == 1
