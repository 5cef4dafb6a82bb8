"""Fixtures for the api channel: accounts through the HTTP API, a real callback receiver.

The retry settings match tests/channels_outbound (the actors read them once, when the
broker fixture imports them, whichever directory's conftest ran first). The receiver is
the outgoing-webhook tests' own (tests/webhooks/conftest.py): a threaded HTTP server on
127.0.0.1, which tests/conftest.py lets the SSRF guard reach.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

os.environ.update(
    OUTBOUND_MAX_RETRIES="2",
    OUTBOUND_MIN_BACKOFF_MS="50",
    OUTBOUND_MAX_BACKOFF_MS="200",
)

import pytest

from shared.config import get_settings

get_settings.cache_clear()

from tests.channels_outbound.conftest import messages_of, wait_for_status  # noqa: E402, F401
from tests.peers.environment import environment  # noqa: E402
from tests.webhooks.conftest import path, receiver, ws  # noqa: E402, F401
from tests.workspaces import Workspace  # noqa: E402

ACCOUNTS = "/api/integration-accounts"


@pytest.fixture(scope="package", autouse=True)
def media_root(tmp_path_factory):
    """Uploads of this folder's tests go to a temporary directory (put back after them)."""
    with environment(MEDIA_ROOT=str(tmp_path_factory.mktemp("api-media"))):
        yield


class ApiChannel:
    """One api account of a workspace, and the calls a tenant's system makes to it."""

    def __init__(self, workspace: Workspace, callback_url: str | None, **fields: Any):
        self.ws = workspace
        settings = {"callback_url": callback_url} if callback_url else {}
        body = {"channel": "api", "name": "Shop backend", "settings": settings}
        resp = workspace.call("POST", ACCOUNTS, json=body | fields)
        assert resp.status_code == 201, resp.text
        self.account = resp.json
        self.id = self.account["id"]
        self.secret = self.account["signing_secret"]

    @property
    def base(self) -> str:
        return f"{ACCOUNTS}/{self.id}/api"

    def post(self, body: dict[str, Any], *, token: str | None = None, **kwargs):
        return self.ws.call("POST", f"{self.base}/messages", json=body, token=token, **kwargs)

    def inbound(self, content: str = "Hello", *, source_id: str = "cust-1", **fields) -> dict:
        """Post a message from contact ``source_id``; assert it was created; return it."""
        body = {"contact": {"source_id": source_id, "name": "Carla Customer"}, "content": content}
        resp = self.post(body | fields)
        assert resp.status_code == 201, resp.text
        return resp.json

    def reply(self, conversation_id: str, body: str = "Thanks, on it!") -> dict:
        resp = self.ws.call(
            "POST", f"/api/conversations/{conversation_id}/messages", json={"body": body}
        )
        assert resp.status_code == 201, resp.text
        return resp.json

    def report(self, message_id: str, status: str, **fields):
        return self.ws.call(
            "POST",
            f"{self.base}/messages/{message_id}/status",
            json={"status": status} | fields,
        )


@pytest.fixture
def api(ws, receiver, path) -> ApiChannel:  # noqa: F811
    """An api account of the workspace whose callbacks reach this test's receiver path."""
    return ApiChannel(ws, receiver.url(path))


def message_row(message_id: str) -> dict[str, Any]:
    """The message as the API shows it (by its conversation)."""
    from shared.db import session_scope
    from shared.models import Message

    with session_scope() as session:
        message = session.get(Message, uuid.UUID(message_id))
        assert message is not None
        return {
            "status": message.status,
            "error_code": message.error_code,
            "error_message": message.error_message,
            "provider_message_id": message.provider_message_id,
            "conversation_id": str(message.conversation_id),
        }
