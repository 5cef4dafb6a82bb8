"""Fixtures of the knowledge tests: an AI agent row, the web-page peer, waiting on sources."""

from __future__ import annotations

import os

# NOTE: read when the actors are declared (the broker fixture), so set at import.
os.environ.update(
    KNOWLEDGE_RETRY_MIN_BACKOFF_MS="50",
    KNOWLEDGE_RETRY_MAX_BACKOFF_MS="200",
    KNOWLEDGE_MAX_ATTEMPTS="3",
    KNOWLEDGE_FETCH_TIMEOUT_SECONDS="1.0",
    KNOWLEDGE_FETCH_MAX_BYTES="65536",
    KNOWLEDGE_MAX_FILE_BYTES="2000000",
)

import uuid

import pytest

from shared.ai.knowledge import ingestion
from shared.config import get_settings

get_settings.cache_clear()

from tests.ai_knowledge.agents import add_ai_agent  # noqa: E402
from tests.multipart import form  # noqa: E402
from tests.peers.web_pages import WebPages  # noqa: E402
from tests.waiting import wait_until  # noqa: E402


@pytest.fixture
def ai_agent(workspace):
    return add_ai_agent(workspace)


@pytest.fixture(scope="session")
def web_pages():
    pages = WebPages().start()
    yield pages
    pages.stop()


def sources_path(agent_id: str) -> str:
    return f"/api/ai-agents/{agent_id}/knowledge-sources"


def ingested_text_source(ws, agent_id: str, content: str, title: str = "Doc") -> uuid.UUID:
    """A text source, ingested and committed before this returns.

    It is ingested in this thread, a no-op when the running worker claimed it first; a
    claim only marks it ``processing``, so the source is then awaited until ``ready``.
    """
    resp = ws.call(
        "POST", sources_path(agent_id), json={"kind": "text", "title": title, "content": content}
    )
    assert resp.status_code == 201, resp.text
    source_id = uuid.UUID(resp.json["id"])
    ingestion.ingest(source_id)
    wait_for_status(ws, agent_id, str(source_id), "ready")
    return source_id


def wait_for_status(ws, agent_id: str, source_id: str, *statuses: str, timeout: float = 20.0):
    """Poll the source until its status is one of ``statuses``; return it."""

    def source():
        resp = ws.call("GET", sources_path(agent_id), params={"limit": 200})
        assert resp.status_code == 200, resp.text
        return next(s for s in resp.json["items"] if s["id"] == source_id)

    return wait_until(
        lambda: (found := source())["status"] in statuses and found,
        f"source {source_id} in {statuses}",
        timeout,
        interval=0.05,
    )


def upload(ws, path: str, filename: str, data: bytes, mime: str, *, title: str | None = None):
    """POST a multipart form: an optional ``title`` field, then ``file``."""
    before = {"title": title} if title is not None else None
    body, headers = form(data, filename=filename, content_type=mime, before=before)
    return ws.call("POST", path, body=body, headers=headers)
