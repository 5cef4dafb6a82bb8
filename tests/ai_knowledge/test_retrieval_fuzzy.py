"""Misspelt and short questions over real PostgreSQL: corrected against the agent's own
lexicon (which ingestion keeps), found among distractors, never from another tenant."""

from __future__ import annotations

import uuid

from shared.ai import retrieval
from shared.ai.knowledge import ingestion
from shared.db import session_scope
from tests.ai_knowledge.agents import add_ai_agent
from tests.ai_knowledge.conftest import ingested_text_source, sources_path, wait_for_status

DISTRACTORS = [
    "Returns are accepted within thirty days of delivery, with the receipt.",
    "Standard shipping takes three to five working days; express ships overnight.",
    "The shop opens at nine and closes at six, Monday to Saturday.",
    "Gift wrapping is free for loyalty members; choose it at checkout.",
    "Vouchers cannot be exchanged for cash and expire after one year.",
]


def _retrieve(ws, agent: str, question: str) -> list[retrieval.Hit]:
    with session_scope() as session:
        return retrieval.retrieve(session, uuid.UUID(ws.tenant["id"]), uuid.UUID(agent), question)


def _agent_with(ws, *contents: str) -> tuple[str, list[uuid.UUID]]:
    agent = add_ai_agent(ws)
    return agent, [ingested_text_source(ws, agent, text) for text in (*DISTRACTORS, *contents)]


def test_misspelt_questions_find_the_passage_among_distractors(workspace):
    agent, sources = _agent_with(
        workspace,
        "The thermostat sits in the hallway; calibrate it every winter.",
        "Firmware updates install overnight and restart the router.",
    )
    thermostat, firmware = sources[-2:]
    for question, expected in (
        ("how do i calibrtae the thermostta", thermostat),
        ("thermostta", thermostat),
        ("firmwre updaets", firmware),
        ("why does my ruoter restrat overnight?", firmware),
    ):
        hits = _retrieve(workspace, agent, question)
        assert hits and hits[0].source_id == expected, (question, hits)
        assert hits[0].kind == "chunk"
    # Corrected words count for less than the words themselves.
    exact = _retrieve(workspace, agent, "calibrate thermostat")[0]
    fuzzy = _retrieve(workspace, agent, "calibrtae thermostta")[0]
    assert exact.source_id == fuzzy.source_id == thermostat
    assert 0.1 < fuzzy.score < exact.score


def test_short_questions_find_the_passage_holding_their_words(workspace):
    agent, sources = _agent_with(
        workspace,
        "Every device carries a two year warranty covering manufacturing defects.",
        "To reset your password, open Settings, choose Security and press Reset.",
    )
    warranty, password = sources[-2:]
    for question, expected in (
        ("warranty", warranty),
        ("Warranty?", warranty),
        ("password", password),
        ("pasword", password),
        ("reset password", password),
        ("express", sources[1]),
        ("gift wrapping", sources[3]),
    ):
        hits = _retrieve(workspace, agent, question)
        assert hits and hits[0].source_id == expected, (question, hits)


def test_corrections_use_only_the_agents_own_words(workspace, other_workspace):
    """Another tenant's passages hold the word itself; this agent's the nearest other."""
    stranger, _ = _agent_with(other_workspace, "Our thermostat sits in the hallway.")
    sibling = add_ai_agent(workspace)
    ingested_text_source(workspace, sibling, "The sibling's thermostat manual, vault code 4711.")
    agent, sources = _agent_with(workspace, "A thermometer ships with two batteries.")
    thermometer = sources[-1]

    hits = _retrieve(workspace, agent, "thermostta")
    assert hits and hits[0].source_id == thermometer
    assert all("thermostat" not in h.text and "4711" not in h.text for h in hits)
    theirs = _retrieve(other_workspace, stranger, "thermostta")
    assert theirs and "thermostat" in theirs[0].text
    # The right agent id under the wrong tenant: nothing, corrected or not.
    with session_scope() as session:
        assert (
            retrieval.retrieve(
                session, uuid.UUID(other_workspace.tenant["id"]), uuid.UUID(agent), "thermostta"
            )
            == []
        )


def test_ingestion_keeps_the_lexicon_corrections_use(workspace):
    """A word is corrected to only once a passage holds it, and no longer once the
    passages holding it are gone (deleted source): the next closest word is used."""
    agent, _ = _agent_with(workspace)
    assert all("thermo" not in h.text for h in _retrieve(workspace, agent, "thermostta"))

    thermometer = ingested_text_source(workspace, agent, "A thermometer ships with two batteries.")
    thermostat = ingested_text_source(workspace, agent, "The thermostat sits in the hallway.")
    hits = _retrieve(workspace, agent, "thermostta")
    assert hits[0].source_id == thermostat

    resp = workspace.call("DELETE", f"{sources_path(agent)}/{thermostat}")
    assert resp.status_code == 204
    hits = _retrieve(workspace, agent, "thermostta")
    assert hits and hits[0].source_id == thermometer

    resp = workspace.call("POST", f"{sources_path(agent)}/{thermometer}/reprocess")
    assert resp.status_code == 202, resp.text
    ingestion.ingest(thermometer)
    wait_for_status(workspace, agent, str(thermometer), "ready")
    hits = _retrieve(workspace, agent, "thermostta")
    assert hits and hits[0].source_id == thermometer


def test_a_long_message_finds_the_pair_its_question_is_buried_in(workspace):
    """A pasted page is too long to be trigram-similar to any stored question: the pair
    is found through its words, and a short message still matches it whole."""
    agent, sources = _agent_with(workspace)
    resp = workspace.call(
        "POST",
        f"{sources_path(agent)}/{sources[0]}/qna-pairs",
        json={"question": "How do I reset my password?", "answer": "Settings > Security."},
    )
    assert resp.status_code == 201, resp.text
    pair = uuid.UUID(resp.json["id"])
    filler = " ".join(["Order 1234 arrived late and the box was open."] * 30)
    hits = _retrieve(workspace, agent, f"{filler} Also: how do I reset my password? {filler}")
    assert hits and hits[0].id == pair
    short = _retrieve(workspace, agent, "how do i reset my pasword")[0]
    assert short.id == pair and short.score > hits[0].score
