"""An operator's requeue of an ``ingest_knowledge_source`` dead letter: its source, failed
since by its own attempts (the scheduler re-drove it), is ingested again."""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import select

from shared.ai.knowledge import ingestion
from shared.config import get_settings
from shared.db import session_scope
from shared.models import DeadLetter, KnowledgeSource
from tests.ai_knowledge.conftest import sources_path, wait_for_status
from tests.waiting import wait_until
from workers.actors.ai_knowledge import ingest_knowledge_source

OPERATOR = {"Authorization": f"Bearer {get_settings().metrics_token}"}
FAQ = b"<html><body><main><h1>Delivery</h1><p>Parcels arrive in two days.</p></main></body></html>"


def _dead_letter_of(source_id: str) -> uuid.UUID | None:
    with session_scope() as session:
        return session.scalar(
            select(DeadLetter.id).where(
                DeadLetter.actor_name == "ingest_knowledge_source",
                DeadLetter.args == [source_id],
            )
        )


def test_requeuing_a_dead_ingestion_ingests_its_failed_source(
    client, worker, workspace, ai_agent, web_pages, monkeypatch
):
    down = {"on"}
    read = ingestion.read_passages

    def flaky_read(claimed):
        if down:
            raise ingestion.IngestFailed("the storage is down", transient=True)
        return read(claimed)

    monkeypatch.setattr(ingestion, "read_passages", flaky_read)
    monkeypatch.setitem(ingest_knowledge_source.options, "max_retries", 0)
    url = web_pages.serve("/faq", body=FAQ)
    resp = workspace.call("POST", sources_path(ai_agent), json={"kind": "url", "url": url})
    assert resp.status_code == 201, resp.text
    source_id = resp.json["id"]
    letter = wait_until(lambda: _dead_letter_of(source_id), "the ingestion's dead letter")
    for _ in range(get_settings().knowledge_max_attempts):  # the scheduler's re-drives
        with contextlib.suppress(ingestion.RetryLater):
            ingestion.ingest(uuid.UUID(source_id))
    wait_for_status(workspace, ai_agent, source_id, "failed")
    down.clear()

    resp = client.simulate_post(f"/api/ops/dead-letters/{letter}/requeue", headers=OPERATOR)

    assert resp.status_code == 200, resp.text
    ready = wait_for_status(workspace, ai_agent, source_id, "ready", "failed")
    assert ready["status"] == "ready", ready
    with session_scope() as session:
        assert session.get(KnowledgeSource, uuid.UUID(source_id)).attempts == 1
